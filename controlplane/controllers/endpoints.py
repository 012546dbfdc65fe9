"""What a Service's Endpoints and EndpointSlices should hold: pure computation.

For a Service with a selector, every matching pod with an IP is an endpoint:
in Endpoints as an address (ready) or a notReadyAddress, leaving out
terminating pods; in EndpointSlices with the conditions kube-proxy reads —
ready (Ready and not terminating, or publishNotReadyAddresses), serving
(Ready, or publishNotReadyAddresses), terminating (deletionTimestamp set).
Named targetPorts are resolved per pod through its containers' ports, so
pods resolving them differently land in different subsets / slices.  A slice
endpoint carries its node's zone label as `zone` (hints: topology_hints.py); a pod whose
spec.subdomain is the Service's name gets its spec.hostname as the endpoint's `hostname`
(what cluster DNS answers `web-0.nginx.<ns>.svc` with).  For a
Service without a selector, the Endpoints the user wrote are mirrored into
slices (as the EndpointSliceMirroring controller does).
"""
from __future__ import annotations

from controlplane.controllers.objects import (
    is_ready,
    is_terminal,
    is_terminating,
    map_selector_matches,
)

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple[tuple[str, int, str, str], ...]     # (name, port, protocol, appProtocol)


def resolve_target_port(service_port: dict, pod: dict) -> int | None:
    """podutil.FindPort: a number as is; a name through the pod's container ports."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def pod_ports(service: dict, pod: dict) -> PortKey:
    ports = []
    for sp in (service.get("spec") or {}).get("ports") or []:
        number = resolve_target_port(sp, pod)
        if number is not None:
            ports.append((sp.get("name") or "", number, sp.get("protocol", "TCP"),
                          sp.get("appProtocol") or ""))
    return tuple(ports)


def selected_pods(service: dict, pods: list[dict]) -> list[dict]:
    namespace = service["metadata"]["namespace"]
    selector = (service.get("spec") or {}).get("selector")
    return sorted((p for p in pods if p["metadata"].get("namespace") == namespace
                   and map_selector_matches(selector, p["metadata"].get("labels"))
                   and (p.get("status") or {}).get("podIP") and not is_terminal(p)),
                  key=lambda p: (p["status"]["podIP"], p["metadata"]["name"]))


def _target_ref(pod: dict) -> dict:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta.get("uid", "")}


def pod_hostname(service: dict, pod: dict) -> str:
    """The endpoint's hostname: the pod's spec.hostname when its spec.subdomain names this
    Service (same namespace), as StatefulSet pods under their governing Service have it
    (endpointsliceutil.ShouldSetHostname); else ""."""
    spec = pod.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"] and \
            pod["metadata"].get("namespace") == service["metadata"].get("namespace"):
        return spec["hostname"]
    return ""


def _address(service: dict, pod: dict) -> dict:
    address = {"ip": pod["status"]["podIP"]}
    if pod_hostname(service, pod):
        address["hostname"] = pod_hostname(service, pod)
    address["targetRef"] = _target_ref(pod)
    if pod["spec"].get("nodeName"):
        address["nodeName"] = pod["spec"]["nodeName"]
    return address


def _port_dicts(key: PortKey, with_empty_name: bool) -> list[dict]:
    out = []
    for name, number, protocol, app in key:
        port = {"port": number, "protocol": protocol}
        if name or with_empty_name:
            port["name"] = name
        if app:
            port["appProtocol"] = app
        out.append(port)
    return out


def service_labels(service: dict) -> dict:
    labels = dict(service["metadata"].get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS] = ""
    return labels


def compute_subsets(service: dict, pods: list[dict]) -> list[dict]:
    """Endpoints.subsets for a Service with a selector."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[PortKey, tuple[list, list]] = {}
    for pod in selected_pods(service, pods):
        if is_terminating(pod) and not publish:
            continue
        key = pod_ports(service, pod)
        if has_ports and not key:
            continue
        ready, not_ready = groups.setdefault(key, ([], []))
        (ready if publish or is_ready(pod) else not_ready).append(_address(service, pod))
    subsets = []
    for key in sorted(groups):
        ready, not_ready = groups[key]
        subset = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if key:
            subset["ports"] = _port_dicts(key, with_empty_name=False)
        subsets.append(subset)
    return subsets


def slice_endpoint(service: dict, pod: dict, zones: dict[str, str] | None = None) -> dict:
    """zones: node name -> its topology.kubernetes.io/zone label (nodes without one left
    out); the endpoint's `zone` is its node's."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    serving = publish or is_ready(pod)
    terminating = is_terminating(pod)
    endpoint = {"addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": publish or (serving and not terminating),
                               "serving": serving, "terminating": terminating}}
    if pod_hostname(service, pod):
        endpoint["hostname"] = pod_hostname(service, pod)
    endpoint["targetRef"] = _target_ref(pod)
    node = pod["spec"].get("nodeName")
    if node:
        endpoint["nodeName"] = node
        if (zones or {}).get(node):
            endpoint["zone"] = zones[node]
    return endpoint


def desired_slice_groups(service: dict, pods: list[dict], zones: dict[str, str] | None = None
                         ) -> dict[PortKey, list[dict]]:
    """Endpoints per port set, for a Service with a selector (terminating pods included)."""
    has_ports = bool((service.get("spec") or {}).get("ports"))
    groups: dict[PortKey, list[dict]] = {}
    for pod in selected_pods(service, pods):
        key = pod_ports(service, pod)
        if has_ports and not key:
            continue
        groups.setdefault(key, []).append(slice_endpoint(service, pod, zones))
    return groups


def mirrored_slice_groups(endpoints: dict) -> dict[PortKey, list[dict]]:
    """Endpoints written by a user, as slice endpoints (EndpointSliceMirroring)."""
    groups: dict[PortKey, list[dict]] = {}
    for subset in endpoints.get("subsets") or []:
        key = tuple(sorted((p.get("name") or "", int(p["port"]), p.get("protocol", "TCP"),
                            p.get("appProtocol") or "") for p in subset.get("ports") or []))
        for address, ready in ([(a, True) for a in subset.get("addresses") or []]
                               + [(a, False) for a in subset.get("notReadyAddresses") or []]):
            endpoint = {"addresses": [address["ip"]],
                        "conditions": {"ready": ready, "serving": ready, "terminating": False}}
            if address.get("nodeName"):
                endpoint["nodeName"] = address["nodeName"]
            if address.get("targetRef"):
                endpoint["targetRef"] = address["targetRef"]
            if address.get("hostname"):
                endpoint["hostname"] = address["hostname"]
            groups.setdefault(key, []).append(endpoint)
    return groups


def slice_chunks(groups: dict[PortKey, list[dict]]) -> list[tuple[PortKey, list[dict]]]:
    """(ports, endpoints) per desired slice; one empty placeholder when there is nothing."""
    chunks = []
    for key in sorted(groups):
        endpoints = sorted(groups[key], key=lambda e: e["addresses"][0])
        for start in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
            chunks.append((key, endpoints[start:start + MAX_ENDPOINTS_PER_SLICE]))
    return chunks or [((), [])]


def slice_port_key(slice_obj: dict) -> PortKey:
    return tuple(sorted((p.get("name") or "", int(p.get("port", 0)), p.get("protocol", "TCP"),
                         p.get("appProtocol") or "") for p in slice_obj.get("ports") or []))


def slice_body(service: dict, key: PortKey, endpoints: list[dict], manager: str) -> dict:
    """Everything of a slice but its name and resourceVersion."""
    meta = service["metadata"]
    labels = service_labels(service)
    labels.update({SERVICE_NAME: meta["name"], MANAGED_BY: manager})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": meta["namespace"], "labels": labels,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                              "name": meta["name"], "uid": meta.get("uid", ""),
                                              "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": _port_dicts(key, with_empty_name=True)}


def plan_slices(desired: list[tuple[PortKey, list[dict]]], existing: list[dict]
                ) -> tuple[list[tuple[dict | None, PortKey, list[dict]]], list[dict]]:
    """Pair desired slices with existing ones of the same ports: (existing or None,
    ports, endpoints) for each desired slice, and the existing slices left over."""
    pool: dict[PortKey, list[dict]] = {}
    for obj in sorted(existing, key=lambda s: s["metadata"]["name"]):
        pool.setdefault(slice_port_key(obj), []).append(obj)
    pairs = []
    for key, endpoints in desired:
        reuse = pool.get(key, [])
        pairs.append((reuse.pop(0) if reuse else None, key, endpoints))
    unpaired = [obj for objs in pool.values() for obj in objs]
    # A desired slice without a partner takes over a leftover slice (fewer creates).
    result = []
    for current, key, endpoints in pairs:
        if current is None and unpaired:
            current = unpaired.pop(0)
        result.append((current, key, endpoints))
    return result, unpaired


def slice_differs(current: dict, body: dict) -> bool:
    """Anything of `body` the API does not hold yet (each endpoint's zone and hints too)."""
    meta, want = current.get("metadata") or {}, body["metadata"]
    return (current.get("endpoints") or []) != body["endpoints"] \
        or (current.get("ports") or []) != body["ports"] \
        or (meta.get("labels") or {}) != want["labels"] \
        or (meta.get("ownerReferences") or []) != want["ownerReferences"] \
        or current.get("addressType") != body["addressType"]


def without_hints(endpoints: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "hints"} for e in endpoints]


def unchanged_but_hints(current: dict | None, body: dict) -> bool:
    """The API holds this slice already, hints aside (the controller's "unchanged")."""
    if current is None:
        return False
    return not slice_differs({**current, "endpoints": without_hints(
        current.get("endpoints") or [])}, body)
