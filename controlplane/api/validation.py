"""Validation of object metadata and Services, with Kubernetes' own messages.

Pure functions returning lists of :class:`FieldError`; an empty list means
valid. Texts follow k8s.io/apimachinery/pkg/util/validation and
pkg/apis/core/validation so kubectl prints what a real cluster prints.
"""

from __future__ import annotations

import ipaddress
import json
import re

from controlplane.api.errors import (
    FieldError,
    GoRaw,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            text += " or "
        text += f"'{ex}', "
    return text + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not re.fullmatch(DNS1123_LABEL_FMT, value):
        errs.append(regex_error("a lowercase RFC 1123 label must consist of lower case "
                                "alphanumeric characters or '-', and must start and end with an "
                                "alphanumeric character",
                                DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not re.fullmatch(DNS1123_SUBDOMAIN_FMT, value):
        errs.append(regex_error("a lowercase RFC 1123 subdomain must consist of lower case "
                                "alphanumeric characters, '-' or '.', and must start and end with "
                                "an alphanumeric character", DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not re.fullmatch(DNS1035_LABEL_FMT, value):
        errs.append(regex_error("a DNS-1035 label must consist of lower case alphanumeric "
                                "characters or '-', start with an alphabetic character, and end "
                                "with an alphanumeric character",
                                DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return [regex_error("a qualified name must consist of alphanumeric characters, "
                            "'-', '_' or '.', and must start and end with an alphanumeric "
                            "character",
                            QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not re.fullmatch(QUALIFIED_NAME_FMT, name):
        errs.append("name part " + regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character", QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not re.fullmatch(LABEL_VALUE_FMT, value):
        errs.append(regex_error("a valid label must be an empty string or consist of alphanumeric "
                                "characters, '-', '_' or '.', and must start and end with an "
                                "alphanumeric character", LABEL_VALUE_FMT, "MyValue", "my_value",
                                "12345"))
    return errs


def validate_labels(labels, path: str) -> list[FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid(labels, path, "must be a map of string keys to string values")]
    errs = []
    for key in sorted(labels):
        errs += [invalid(key, path, m) for m in is_qualified_name(key)]
        value = labels[key]
        if not isinstance(value, str):
            errs.append(invalid(value, path, "must be a string"))
        else:
            errs += [invalid(value, path, m) for m in is_label_value(value)]
    return errs


def port_num_errors(port) -> list[str]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def port_name_errors(name: str) -> list[str]:
    errs = []
    if len(name) > 15:
        errs.append(max_len_error(15))
    if not re.fullmatch("[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens (--)")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen (-)")
    return errs


def validate_port_num_or_name(value, path: str) -> list[FieldError]:
    if isinstance(value, str):
        if value.isdigit():
            value = int(value)
        else:
            return [invalid(value, path, m) for m in port_name_errors(value)]
    return [invalid(value, path, m) for m in port_num_errors(value)]


def is_ip(value) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

NAME_RULES = {"label": is_dns1123_label, "subdomain": is_dns1123_subdomain,
              "dns1035": is_dns1035_label}


def validate_metadata(obj: dict, name_rule: str, namespaced: bool) -> list[FieldError]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata", "")]
    errs = []
    name = meta.get("name", "")
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        errs.append(invalid(name, "metadata.name", "must be a string"))
    else:
        errs += [invalid(name, "metadata.name", m) for m in NAME_RULES[name_rule](name)]
    if namespaced:
        ns = meta.get("namespace", "")
        if not ns:
            errs.append(required("metadata.namespace", ""))
        else:
            errs += [invalid(ns, "metadata.namespace", m) for m in is_dns1123_label(ns)]
    elif meta.get("namespace"):
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict):
            errs.append(invalid(annotations, "metadata.annotations", "must be a map"))
        else:
            for key in sorted(annotations):
                errs += [invalid(key, "metadata.annotations", m)
                         for m in is_qualified_name(key.lower())]
    return errs


SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TRAFFIC_POLICIES = ("Cluster", "Local")
# Kubernetes 1.34 (PreferSameTrafficDistribution on); listed in the API's order, not sorted.
TRAFFIC_DISTRIBUTIONS = ("PreferClose", "PreferSameZone", "PreferSameNode")


def externally_accessible(spec: dict) -> bool:
    return spec.get("type") in ("LoadBalancer", "NodePort") or (
        spec.get("type") == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _go_service_port(port: dict) -> GoRaw:
    return GoRaw('core.ServicePort{Name:"", Protocol:"%s", AppProtocol:(*string)(nil), Port:%s, '
                 'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'
                 % (port.get("protocol", ""), port.get("port")))


def _validate_service_ports(spec: dict, headless: bool) -> list[FieldError]:
    errs = []
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        return [invalid(ports, "spec.ports", "must be a list")]
    if not ports and not headless and spec.get("type") != "ExternalName":
        errs.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            errs.append(invalid(port, path, "must be an object"))
            continue
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            errs.append(required(f"{path}.name"))
        elif name:
            errs += [invalid(name, f"{path}.name", m) for m in is_dns1123_label(name)]
            if name in names:
                errs.append(duplicate(name, f"{path}.name"))
            names.add(name)
        errs += [invalid(port.get("port"), f"{path}.port", m)
                 for m in port_num_errors(port.get("port"))]
        proto = port.get("protocol", "")
        if not proto:
            errs.append(required(f"{path}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(proto, f"{path}.protocol", PROTOCOLS))
        errs += validate_port_num_or_name(port.get("targetPort"), f"{path}.targetPort")
        node_port = port.get("nodePort", 0)
        if node_port and spec.get("type") == "ClusterIP":
            errs.append(forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'"))
        elif node_port and not isinstance(node_port, int):
            errs.append(invalid(node_port, f"{path}.nodePort", "must be an integer"))
    seen_node_ports, seen_ports = set(), set()
    for i, port in enumerate(p for p in ports if isinstance(p, dict)):
        key = (port.get("protocol"), port.get("nodePort"))
        if port.get("nodePort"):
            if key in seen_node_ports:
                errs.append(duplicate(port.get("nodePort"), f"spec.ports[{i}].nodePort"))
            seen_node_ports.add(key)
        key = (port.get("protocol"), port.get("port"))
        if key in seen_ports:
            errs.append(duplicate(_go_service_port(port), f"spec.ports[{i}]"))
        seen_ports.add(key)
    return errs


def validate_service(svc: dict) -> list[FieldError]:
    """ValidateService on a defaulted Service (before allocation)."""
    errs = validate_metadata(svc, "dns1035", True)
    spec = svc.get("spec")
    if not isinstance(spec, dict):
        return errs + [required("spec")]
    stype = spec.get("type", "")
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    headless = bool(cluster_ips) and cluster_ips[0] == "None"
    if stype not in SERVICE_TYPES:
        errs.append(not_supported(stype, "spec.type", SERVICE_TYPES))
    if stype == "LoadBalancer":
        for i, port in enumerate(spec.get("ports") or []):
            if isinstance(port, dict) and port.get("port") == 10250:
                errs.append(invalid(10250, f"spec.ports[{i}]",
                                    "may not expose port 10250 externally "
                                    "since it is used by kubelet"))
    if stype in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("None", "spec.clusterIPs[0]",
                            f"may not be set to 'None' for {stype} services"))
    if stype == "ExternalName":
        if cluster_ips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs += [invalid(cname, "spec.externalName", m) for m in is_dns1123_subdomain(cname)]
        else:
            errs.append(required("spec.externalName"))
    errs += _validate_service_ports(spec, headless)
    for i, ip in enumerate(cluster_ips):
        if ip == "None" and i == 0:
            continue
        if not is_ip(ip):
            errs.append(invalid(ip, f"spec.clusterIPs[{i}]", IP_MSG))
    if spec.get("clusterIP") and cluster_ips and spec["clusterIP"] != cluster_ips[0]:
        errs.append(invalid(spec["clusterIP"], "spec.clusterIPs",
                            "element [0] must match clusterIP"))
    affinity = spec.get("sessionAffinity", "")
    if affinity not in ("ClientIP", "None"):
        errs.append(not_supported(affinity, "spec.sessionAffinity", ("ClientIP", "None")))
    elif affinity == "ClientIP":
        timeout = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
                   .get("timeoutSeconds"))
        if not isinstance(timeout, int) or not 0 < timeout <= 86400:
            errs.append(invalid(timeout, "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                "must be greater than 0 and less than 86400"))
    elif spec.get("sessionAffinityConfig"):
        errs.append(forbidden("spec.sessionAffinityConfig",
                              "must not be set when session affinity is None"))
    errs += validate_labels(spec.get("selector"), "spec.selector")
    for i, ip in enumerate(spec.get("externalIPs") or []):
        if not is_ip(ip):
            errs.append(invalid(ip, f"spec.externalIPs[{i}]", IP_MSG))
    if spec.get("loadBalancerSourceRanges") and stype != "LoadBalancer":
        errs.append(forbidden("spec.loadBalancerSourceRanges",
                              "may only be used when `type` is 'LoadBalancer'"))
    for i, cidr in enumerate(spec.get("loadBalancerSourceRanges") or []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errs.append(invalid(cidr, f"spec.loadBalancerSourceRanges[{i}]",
                                "must be a CIDR (e.g. 10.0.0.0/8)"))
    if "allocateLoadBalancerNodePorts" in spec and stype != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts",
                              "may only be used when `type` is 'LoadBalancer'"))
    etp = spec.get("externalTrafficPolicy", "")
    if not externally_accessible(spec):
        if etp:
            errs.append(invalid(etp, "spec.externalTrafficPolicy",
                                "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(not_supported(etp, "spec.externalTrafficPolicy", TRAFFIC_POLICIES))
    hc = spec.get("healthCheckNodePort", 0)
    if hc and not needs_health_check(spec):
        errs.append(invalid(hc, "spec.healthCheckNodePort",
                            "may only be set when `type` is 'LoadBalancer' and "
                            "`externalTrafficPolicy` is 'Local'"))
    itp = spec.get("internalTrafficPolicy")
    if itp is None and stype in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(required("spec.internalTrafficPolicy"))
    elif itp is not None and itp not in TRAFFIC_POLICIES:
        errs.append(not_supported(itp, "spec.internalTrafficPolicy", TRAFFIC_POLICIES))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        listed = ", ".join(json.dumps(d) for d in TRAFFIC_DISTRIBUTIONS)
        errs.append(FieldError("NotSupported", "spec.trafficDistribution", distribution,
                               f"supported values: {listed}"))
    return errs


def validate_service_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateServiceUpdate: a ClusterIP may not change unless ExternalName is involved."""
    errs = []
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" in (new_spec.get("type"), old_spec.get("type")):
        return errs
    old_ips = old_spec.get("clusterIPs") or []
    new_ips = (new_spec.get("clusterIPs")
               or ([new_spec["clusterIP"]] if new_spec.get("clusterIP") else []))
    if old_ips and new_ips and old_ips[0] != new_ips[0]:
        errs.append(invalid(list(new_ips), "spec.clusterIPs[0]", "may not change once set"))
    return errs
