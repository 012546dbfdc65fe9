"""Validation of networking.k8s.io/v1 Ingresses and IngressClasses, with Kubernetes' messages.

An ALB controller programs a load balancer from what the API stores, so every
rule the real API server enforces is enforced here, at the same field paths:
hosts (a DNS subdomain, a wildcard only as a whole first label, never an IP
address), paths (a pathType of Exact, Prefix or ImplementationSpecific; an
absolute path without ``//``, ``/./``, ``/../``, ``%2f`` or a ``/.``/``/..``
ending for Exact and Prefix), backends (exactly one of a service or a
resource; a service by DNS-1035 name and exactly one of port name or number),
TLS hosts and secret names, the IngressClass's domain-prefixed controller
(immutable) and its parameters reference. Behaves as
pkg/apis/networking/validation (ValidateIngressCreate, ValidateIngressUpdate,
ValidateIngressStatusUpdate, ValidateIngressClass).

Pure functions over defaulted object dicts returning lists of FieldError.
"""

from __future__ import annotations

import re

from controlplane.api.errors import (
    FieldError,
    GoRaw,
    forbidden,
    invalid,
    not_supported,
    required,
)
from controlplane.api.validation import (
    IP_MSG,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    max_len_error,
    port_name_errors,
    port_num_errors,
    regex_error,
    validate_metadata,
)

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
BAD_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
BAD_SUFFIXES = ("/..", "/.")
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
SCOPES = ("Cluster", "Namespace")
MAX_CONTROLLER = 250
WILDCARD_FMT = r"\*\." + r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                "subdomain, which must consist of lower case alphanumeric characters, '-' or "
                "'.' and end with an alphanumeric character")
HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
NOT_IP = "must be a DNS name, not an IP address"


def is_wildcard_subdomain(value: str) -> list[str]:
    """IsWildcardDNS1123Subdomain: '*.' then a DNS subdomain (the '*' a whole label)."""
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not re.fullmatch(WILDCARD_FMT, value):
        errs.append(regex_error(WILDCARD_MSG, WILDCARD_FMT, "*.example.com"))
    return errs


def host_errors(host: str) -> list[str]:
    """A host of a rule or of a TLS entry: wildcard or exact DNS subdomain."""
    return is_wildcard_subdomain(host) if "*" in host else is_dns1123_subdomain(host)


def path_segment_errors(name: str) -> list[str]:
    """IsPathSegmentName: a name that can stand in a URL path segment."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def _string(value, path: str) -> list[FieldError]:
    return [] if isinstance(value, str) else [invalid(value, path, "must be a string")]


# ---- backends --------------------------------------------------------------------------

def _resource_ref(ref, path: str) -> list[FieldError]:
    """A TypedLocalObjectReference backend (apiGroup, kind, name)."""
    if not isinstance(ref, dict):
        return [invalid(ref, path, "must be an object")]
    errs = []
    group = ref.get("apiGroup")
    if isinstance(group, str):
        errs += [invalid(group, f"{path}.apiGroup", m) for m in is_dns1123_subdomain(group)]
    for key in ("kind", "name"):
        value = ref.get(key, "")
        if not value:
            errs.append(required(f"{path}.{key}"))
        elif not isinstance(value, str):
            errs += _string(value, f"{path}.{key}")
        else:
            errs += [invalid(value, f"{path}.{key}", m) for m in path_segment_errors(value)]
    return errs


def _service_port(port, path: str, backend_path: str) -> list[FieldError]:
    if not isinstance(port, dict):
        return [required(backend_path, "port name or number is required")]
    name, number = port.get("name", ""), port.get("number", 0)
    if name and number:
        return [invalid("", backend_path, "cannot set both port name & port number")]
    if name:
        if not isinstance(name, str):
            return _string(name, f"{path}.name")
        return [invalid(name, f"{path}.name", m) for m in port_name_errors(name)]
    if number:
        return [invalid(number, f"{path}.number", m) for m in port_num_errors(number)]
    return [required(backend_path, "port name or number is required")]


def validate_backend(backend, path: str) -> list[FieldError]:
    """An IngressBackend: exactly one of a service (name and port) or a resource."""
    if not isinstance(backend, dict):
        return [invalid(backend, path, "must be an object")]
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid("", path, "cannot set both resource and service backends")]
    if resource is not None:
        return _resource_ref(resource, f"{path}.resource")
    if service is None:
        return [invalid("", path, "resource or service backend is required")]
    if not isinstance(service, dict):
        return [invalid(service, f"{path}.service", "must be an object")]
    errs = []
    name = service.get("name", "")
    if not name:
        errs.append(required(f"{path}.service.name"))
    elif not isinstance(name, str):
        errs += _string(name, f"{path}.service.name")
    else:
        errs += [invalid(name, f"{path}.service.name", m) for m in is_dns1035_label(name)]
    return errs + _service_port(service.get("port"), f"{path}.service.port", path)


# ---- rules -----------------------------------------------------------------------------

def validate_http_path(item, path: str) -> list[FieldError]:
    """An HTTPIngressPath: a pathType, a path it allows, and a backend."""
    if not isinstance(item, dict):
        return [invalid(item, path, "must be an object")]
    path_type = item.get("pathType")
    if path_type is None:
        return [required(f"{path}.pathType", "pathType must be specified")]
    value = item.get("path", "")
    errs = []
    if not isinstance(value, str):
        errs += _string(value, f"{path}.path")
    elif path_type in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(invalid(value, f"{path}.path", "must be an absolute path"))
        errs += [invalid(value, f"{path}.path", f"must not contain '{seq}'")
                 for seq in BAD_SEQUENCES if seq in value]
        errs += [invalid(value, f"{path}.path", f"cannot end with '{end}'")
                 for end in BAD_SUFFIXES if value.endswith(end)]
    elif path_type == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(invalid(value, f"{path}.path", "must be an absolute path"))
    else:
        errs.append(not_supported(path_type, f"{path}.pathType", PATH_TYPES))
    return errs + validate_backend(item.get("backend"), f"{path}.backend")


def _validate_rule(rule, path: str) -> list[FieldError]:
    if not isinstance(rule, dict):
        return [invalid(rule, path, "must be an object")]
    errs = []
    host = rule.get("host", "")
    if host and not isinstance(host, str):
        errs += _string(host, f"{path}.host")
    elif host:
        if is_ip(host):
            errs.append(invalid(host, f"{path}.host", NOT_IP))
        errs += [invalid(host, f"{path}.host", m) for m in host_errors(host)]
    http = rule.get("http")
    if http is None:
        return errs
    if not isinstance(http, dict):
        return errs + [invalid(http, f"{path}.http", "must be an object")]
    paths = http.get("paths") or []
    if not isinstance(paths, list):
        return errs + [invalid(paths, f"{path}.http.paths", "must be a list")]
    if not paths:
        errs.append(required(f"{path}.http.paths"))
    for i, item in enumerate(paths):
        errs += validate_http_path(item, f"{path}.http.paths[{i}]")
    return errs


def _validate_tls(entries) -> list[FieldError]:
    if not isinstance(entries, list):
        return [invalid(entries, "spec.tls", "must be a list")]
    errs = []
    for i, entry in enumerate(entries):
        path = f"spec.tls[{i}]"
        if not isinstance(entry, dict):
            errs.append(invalid(entry, path, "must be an object"))
            continue
        hosts = entry.get("hosts") or []
        for j, host in enumerate(hosts if isinstance(hosts, list) else [hosts]):
            if not isinstance(host, str):
                errs += _string(host, f"{path}.hosts[{j}]")
                continue
            errs += [invalid(host, f"{path}.hosts[{j}]", m) for m in host_errors(host)]
        secret = entry.get("secretName", "")
        if secret and not isinstance(secret, str):
            errs += _string(secret, f"{path}.secretName")
        elif secret:
            errs += [invalid(secret, f"{path}.secretName", m)
                     for m in is_dns1123_subdomain(secret)]
    return errs


def _go_rules(spec: dict) -> GoRaw:
    """How Go prints an unset or empty []IngressRule in the 'either ... or' error."""
    return GoRaw("[]networking.IngressRule{}" if "rules" in spec
                 else "[]networking.IngressRule(nil)")


def validate_ingress_spec(spec) -> list[FieldError]:
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return [invalid(spec, "spec", "must be an object")]
    errs = []
    rules = spec.get("rules")
    if not rules and spec.get("defaultBackend") is None:
        errs.append(invalid(_go_rules(spec), "spec",
                            "either `defaultBackend` or `rules` must be specified"))
    if spec.get("defaultBackend") is not None:
        errs += validate_backend(spec["defaultBackend"], "spec.defaultBackend")
    if rules and not isinstance(rules, list):
        errs.append(invalid(rules, "spec.rules", "must be a list"))
    elif rules:
        for i, rule in enumerate(rules):
            errs += _validate_rule(rule, f"spec.rules[{i}]")
    if spec.get("tls"):
        errs += _validate_tls(spec["tls"])
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        if not isinstance(class_name, str):
            errs += _string(class_name, "spec.ingressClassName")
        else:
            errs += [invalid(class_name, "spec.ingressClassName", m)
                     for m in is_dns1123_subdomain(class_name)]
    return errs


def validate_ingress_status(status) -> list[FieldError]:
    """ValidateIngressLoadBalancerStatus: IPs that are IPs, host names that are DNS names."""
    if not isinstance(status, dict):
        return [] if status is None else [invalid(status, "status", "must be an object")]
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if not isinstance(ingress, list):
        return [invalid(ingress, "status.loadBalancer.ingress", "must be a list")]
    errs = []
    for i, point in enumerate(ingress):
        path = f"status.loadBalancer.ingress[{i}]"
        if not isinstance(point, dict):
            errs.append(invalid(point, path, "must be an object"))
            continue
        ip, hostname = point.get("ip", ""), point.get("hostname", "")
        if ip and not is_ip(ip):
            errs.append(invalid(ip, f"{path}.ip", IP_MSG))
        if hostname:
            errs += [invalid(hostname, f"{path}.hostname", m)
                     for m in is_dns1123_subdomain(str(hostname))]
            if is_ip(hostname):
                errs.append(invalid(hostname, f"{path}.hostname", NOT_IP))
    return errs


def validate_ingress(ing: dict) -> list[FieldError]:
    """What ValidateIngressCreate and ValidateIngressUpdate share (the object itself)."""
    errs = validate_metadata(ing, "subdomain", True)
    return errs + validate_ingress_spec(ing.get("spec"))


def validate_ingress_create(ing: dict) -> list[FieldError]:
    """The create-only rule: the deprecated class annotation must agree with the field."""
    annotations = (ing.get("metadata") or {}).get("annotations") or {}
    class_name = (ing.get("spec") or {}).get("ingressClassName")
    value = annotations.get(CLASS_ANNOTATION) if isinstance(annotations, dict) else None
    if value is not None and class_name is not None and value != class_name:
        return [invalid(value, f"annotations.{CLASS_ANNOTATION}",
                        "must match `ingressClassName` when both are specified")]
    return []


def validate_ingress_update(new: dict, old: dict) -> list[FieldError]:
    """No spec field is immutable; the status (written through ingresses/status) is
    checked here, as ValidateIngressStatusUpdate does."""
    return validate_ingress_status(new.get("status"))


# ---- IngressClass ----------------------------------------------------------------------

def domain_prefixed_path_errors(value: str, path: str) -> list[FieldError]:
    """IsDomainPrefixedPath: 'example.com/anything-path-like'."""
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [invalid(value, path, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid(host, path, m) for m in is_dns1123_subdomain(host)]
    if not re.fullmatch(HTTP_PATH_FMT, rest):
        errs.append(invalid(rest, path, regex_error("Invalid path", HTTP_PATH_FMT)))
    return errs


def _parameters(params, path: str) -> list[FieldError]:
    if params is None:
        return []
    if not isinstance(params, dict):
        return [invalid(params, path, "must be an object")]
    errs = _resource_ref({k: v for k, v in params.items() if k in ("apiGroup", "kind", "name")},
                         path)
    scope = params.get("scope")
    if scope is None:
        return errs + [required(f"{path}.scope")]
    if scope not in SCOPES:
        return errs + [not_supported(scope, f"{path}.scope", SCOPES)]
    namespace = params.get("namespace")
    if scope == "Namespace":
        if namespace is None:
            errs.append(required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        else:
            errs += [invalid(namespace, f"{path}.namespace", m)
                     for m in is_dns1123_label(str(namespace))]
    elif namespace is not None:
        errs.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return errs


def validate_ingressclass(ic: dict) -> list[FieldError]:
    errs = validate_metadata(ic, "subdomain", False)
    spec = ic.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return errs + [invalid(spec, "spec", "must be an object")]
    controller = spec.get("controller", "")
    if not controller:
        errs.append(required("spec.controller"))
    elif not isinstance(controller, str):
        errs += _string(controller, "spec.controller")
    else:
        if len(controller) > MAX_CONTROLLER:
            errs.append(FieldError("TooLong", "spec.controller", None,
                                   f"may not be more than {MAX_CONTROLLER} bytes"))
        errs += domain_prefixed_path_errors(controller, "spec.controller")
    return errs + _parameters(spec.get("parameters"), "spec.parameters")


def validate_ingressclass_update(new: dict, old: dict) -> list[FieldError]:
    """spec.controller never changes."""
    before = (old.get("spec") or {}).get("controller")
    after = (new.get("spec") or {}).get("controller")
    if after != before:
        return [invalid(after, "spec.controller", "field is immutable")]
    return []
