"""Validation of Pods, Deployments, ReplicaSets, Namespaces, Nodes, Endpoints, EndpointSlices.

(Events are validated in ``events.py``, next to their two shapes.)

Pure functions returning lists of :class:`FieldError`, texts as in
pkg/apis/core/validation and pkg/apis/apps/validation.
"""

from __future__ import annotations

from controlplane.api.errors import FieldError, GoRaw, duplicate, invalid, not_supported, required
from controlplane.api.selectors import label_selector_requirements, matches_labels
from controlplane.api.validation import (
    IP_MSG,
    PROTOCOLS,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    port_name_errors,
    port_num_errors,
    validate_labels,
    validate_metadata,
)
from controlplane.api.validation_discovery import validate_endpoint_topology
from controlplane.api.validation_selector import validate_label_selector
from controlplane.api.validation_volumes import (
    validate_env,
    validate_env_from,
    validate_volume_mounts,
    validate_volumes,
)

RESTART_POLICIES = ("Always", "Never", "OnFailure")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
MAX_DNS_NAMESERVERS = 3          # a resolver reads three (glibc's MAXNS)
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048


def _nonnegative(value, path: str) -> list[FieldError]:
    if value is not None and (not isinstance(value, int) or value < 0):
        return [invalid(value, path, "must be greater than or equal to 0")]
    return []


def _validate_container(c, path: str, names: set[str], volumes: set[str]) -> list[FieldError]:
    if not isinstance(c, dict):
        return [invalid(c, path, "must be an object")]
    errs = []
    name = c.get("name", "")
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += [invalid(name, f"{path}.name", m) for m in is_dns1123_label(name)]
        if name in names:
            errs.append(duplicate(name, f"{path}.name"))
        names.add(name)
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        errs.append(not_supported(policy, f"{path}.imagePullPolicy", PULL_POLICIES))
    port_names: set[str] = set()
    for i, port in enumerate(c.get("ports") or []):
        ppath = f"{path}.ports[{i}]"
        if not isinstance(port, dict):
            errs.append(invalid(port, ppath, "must be an object"))
            continue
        if port.get("name"):
            errs += [invalid(port["name"], f"{ppath}.name", m)
                     for m in port_name_errors(port["name"])]
            if port["name"] in port_names:
                errs.append(duplicate(port["name"], f"{ppath}.name"))
            port_names.add(port["name"])
        errs += [invalid(port.get("containerPort", 0), f"{ppath}.containerPort", m)
                 for m in port_num_errors(port.get("containerPort", 0))]
        if port.get("hostPort"):
            errs += [invalid(port["hostPort"], f"{ppath}.hostPort", m)
                     for m in port_num_errors(port["hostPort"])]
        proto = port.get("protocol", "")
        if not proto:
            errs.append(required(f"{ppath}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(proto, f"{ppath}.protocol", PROTOCOLS))
    errs += validate_env(c.get("env"), f"{path}.env")
    errs += validate_env_from(c.get("envFrom"), f"{path}.envFrom")
    errs += validate_volume_mounts(c.get("volumeMounts"), volumes, f"{path}.volumeMounts")
    return errs


def validate_pod_spec(spec, path: str, restart_policies=RESTART_POLICIES) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path)]
    volumes, errs = validate_volumes(spec.get("volumes"), f"{path}.volumes")
    containers = spec.get("containers") or []
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    for i, c in enumerate(containers):
        errs += _validate_container(c, f"{path}.containers[{i}]", names, volumes)
    for i, c in enumerate(spec.get("initContainers") or []):
        errs += _validate_container(c, f"{path}.initContainers[{i}]", names, volumes)
    policy = spec.get("restartPolicy", "")
    if policy not in restart_policies:
        errs.append(not_supported(policy, f"{path}.restartPolicy", restart_policies))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in DNS_POLICIES:
        errs.append(not_supported(dns, f"{path}.dnsPolicy", DNS_POLICIES))
    errs += _validate_dns_config(spec.get("dnsConfig"), dns, f"{path}.dnsConfig")
    errs += _nonnegative(spec.get("terminationGracePeriodSeconds"),
                         f"{path}.terminationGracePeriodSeconds")
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    return errs


def _validate_dns_config(config, policy, path: str) -> list[FieldError]:
    """spec.dnsConfig as the API server checks it: what a resolver can use."""
    if policy == "None":
        if not isinstance(config, dict):
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [required(f"{path}.nameservers",
                             "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if not isinstance(config, dict):
        return []
    errs = []
    servers = config.get("nameservers") or []
    if len(servers) > MAX_DNS_NAMESERVERS:
        errs.append(invalid(servers, f"{path}.nameservers",
                            f"must not have more than {MAX_DNS_NAMESERVERS} nameservers"))
    errs += [invalid(server, f"{path}.nameservers[{i}]", IP_MSG)
             for i, server in enumerate(servers) if not is_ip(server)]
    searches = config.get("searches") or []
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        errs.append(invalid(searches, f"{path}.searches",
                            f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths"))
    if len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        errs.append(invalid(searches, f"{path}.searches",
                            f"must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters "
                            "(including spaces) in the search list"))
    for i, search in enumerate(searches):
        name = search.removesuffix(".")            # a trailing dot is fine
        errs += [invalid(name, f"{path}.searches[{i}]", msg)
                 for msg in is_dns1123_subdomain(name)]
    errs += [required(f"{path}.options[{i}]", "Option.Name must not be empty")
             for i, option in enumerate(config.get("options") or [])
             if not (option or {}).get("name")]
    return errs


def validate_pod(pod: dict) -> list[FieldError]:
    errs = validate_metadata(pod, "subdomain", True)
    return errs + validate_pod_spec(pod.get("spec"), "spec")


def _go_selector(selector: dict) -> GoRaw:
    labels = selector.get("matchLabels") or {}
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    ml = f"map[string]string{{{inner}}}" if labels else "map[string]string(nil)"
    return GoRaw(f"v1.LabelSelector{{MatchLabels:{ml}, "
                 "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}")


def _validate_replicated(obj: dict, kind: str) -> list[FieldError]:
    errs = validate_metadata(obj, "subdomain", True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errs + [required("spec")]
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    selector = spec.get("selector")
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
        reqs = label_selector_requirements(selector)
        if not reqs:
            errs.append(invalid(_go_selector(selector), "spec.selector",
                                f"empty selector is invalid for {kind}"))
        elif not matches_labels(reqs, template_labels):
            errs.append(invalid(template_labels, "spec.template.metadata.labels",
                                "`selector` does not match template `labels`"))
    errs += validate_labels(template_labels, "spec.template.metadata.labels")
    errs += validate_pod_spec(template.get("spec"), "spec.template.spec", ("Always",))
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    return errs


def validate_deployment(dep: dict) -> list[FieldError]:
    errs = _validate_replicated(dep, "deployment")
    spec = dep.get("spec") if isinstance(dep.get("spec"), dict) else {}
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type", "")
    if stype not in ("Recreate", "RollingUpdate"):
        errs.append(not_supported(stype, "spec.strategy.type", ("Recreate", "RollingUpdate")))
    elif stype == "Recreate" and strategy.get("rollingUpdate"):
        errs.append(FieldError("Forbidden", "spec.strategy.rollingUpdate", None,
                               "may not be specified when strategy `type` is 'Recreate'"))
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    pds = spec.get("progressDeadlineSeconds")
    if pds is not None and (not isinstance(pds, int) or pds <= (spec.get("minReadySeconds") or 0)):
        errs.append(invalid(pds, "spec.progressDeadlineSeconds",
                            "must be greater than minReadySeconds"))
    return errs


def validate_replicaset(rs: dict) -> list[FieldError]:
    return _validate_replicated(rs, "replicaset")


def validate_selector_update(new: dict, old: dict) -> list[FieldError]:
    new_sel = (new.get("spec") or {}).get("selector")
    old_sel = (old.get("spec") or {}).get("selector")
    if new_sel != old_sel:
        return [invalid(_go_selector(new_sel or {}), "spec.selector", "field is immutable")]
    return []


def validate_namespace(ns: dict) -> list[FieldError]:
    return validate_metadata(ns, "label", False)


def validate_node(node: dict) -> list[FieldError]:
    errs = validate_metadata(node, "subdomain", False)
    for i, addr in enumerate(((node.get("status") or {}).get("addresses")) or []):
        if not isinstance(addr, dict) or not addr.get("type"):
            errs.append(required(f"status.addresses[{i}].type"))
    return errs


def validate_endpoints(ep: dict) -> list[FieldError]:
    errs = validate_metadata(ep, "subdomain", True)
    for i, subset in enumerate(ep.get("subsets") or []):
        spath = f"subsets[{i}]"
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate((subset or {}).get(key) or []):
                ip = (addr or {}).get("ip", "")
                if not is_ip(ip):
                    errs.append(invalid(ip, f"{spath}.{key}[{j}].ip", IP_MSG))
        for j, port in enumerate((subset or {}).get("ports") or []):
            errs += [invalid(port.get("port"), f"{spath}.ports[{j}].port", m)
                     for m in port_num_errors((port or {}).get("port"))]
            if port.get("protocol") not in PROTOCOLS:
                errs.append(not_supported(port.get("protocol"), f"{spath}.ports[{j}].protocol",
                                          PROTOCOLS))
    return errs


def validate_endpointslice(es: dict) -> list[FieldError]:
    errs = validate_metadata(es, "subdomain", True)
    family = es.get("addressType", "")
    if family not in ("FQDN", "IPv4", "IPv6"):
        errs.append(not_supported(family, "addressType", ("FQDN", "IPv4", "IPv6")))
    for i, ep in enumerate(es.get("endpoints") or []):
        addrs = (ep or {}).get("addresses") or []
        if not addrs:
            errs.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        for j, addr in enumerate(addrs):
            if family in ("IPv4", "IPv6") and not is_ip(addr):
                errs.append(invalid(addr, f"endpoints[{i}].addresses[{j}]", IP_MSG))
        if isinstance(ep, dict):
            errs += validate_endpoint_topology(ep, f"endpoints[{i}]")
    for i, port in enumerate(es.get("ports") or []):
        if (port or {}).get("port") is not None:
            errs += [invalid(port["port"], f"ports[{i}].port", m)
                     for m in port_num_errors(port["port"])]
    return errs
