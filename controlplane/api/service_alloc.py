"""Service ClusterIP / NodePort / healthCheckNodePort bookkeeping across create and update.

Mirrors pkg/registry/core/service/storage: type-dependent fields are dropped
on type changes, previously allocated values are carried over, new ones are
allocated, old ones released. Everything works on an immutable
:class:`ServiceAllocations` value and returns a new one, so a rejected
request leaves the live state untouched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from base.jsoncopy import json_copy
from controlplane.api.allocators import (
    AllocationError,
    IPRange,
    PortRange,
    allocate_ip,
    allocate_port,
)
from controlplane.api.errors import FieldError, invalid
from controlplane.api.validation import externally_accessible, needs_health_check


@dataclass(frozen=True)
class ServiceAllocations:
    cluster_ips: frozenset[str] = frozenset()
    node_ports: frozenset[int] = frozenset()


def needs_cluster_ip(spec: dict) -> bool:
    return spec.get("type") != "ExternalName"


def needs_node_ports(spec: dict) -> bool:
    return spec.get("type") == "NodePort" or (
        spec.get("type") == "LoadBalancer"
        and spec.get("allocateLoadBalancerNodePorts", True) is not False)


def normalize_cluster_ips(new: dict, old: dict | None) -> dict:
    """Keep spec.clusterIP and spec.clusterIPs[0] consistent (normalizeClusterIPs)."""
    new = json_copy(new)
    spec = new.setdefault("spec", {})
    ip, ips = spec.get("clusterIP", ""), list(spec.get("clusterIPs") or [])
    old_spec = (old or {}).get("spec") or {}
    if (old is not None and ip != old_spec.get("clusterIP", "")
            and ips == list(old_spec.get("clusterIPs") or [])):
        ips = [ip] + ips[1:] if ip else []
    if ip and not ips:
        ips = [ip]
    if ips and not ip:
        ip = ips[0]
    if ip:
        spec["clusterIP"] = ip
    if ips:
        spec["clusterIPs"] = ips
    return new


def drop_type_dependent_fields(new: dict, old: dict | None) -> dict:
    """Clear clusterIP / nodePorts / healthCheckNodePort the new type no longer needs
    (only when the user left them as they were), and carry allocated values over."""
    new = json_copy(new)
    spec = new["spec"]
    if old is None:
        return new
    old_spec = old.get("spec") or {}
    if not needs_cluster_ip(spec) and spec.get("clusterIP") == old_spec.get("clusterIP"):
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(key, None)
    elif needs_cluster_ip(spec) and needs_cluster_ip(old_spec) and not spec.get("clusterIP"):
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in old_spec:
                spec[key] = json_copy(old_spec[key])
    old_ports = {p.get("name", ""): p.get("nodePort", 0) for p in old_spec.get("ports") or []}
    if not needs_node_ports(spec):
        for port in spec.get("ports") or []:
            if port.get("nodePort") and port.get("nodePort") == old_ports.get(port.get("name", "")):
                port.pop("nodePort")
    elif needs_node_ports(old_spec):
        used = {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")}
        for port in spec.get("ports") or []:
            carried = old_ports.get(port.get("name", ""), 0)
            if not port.get("nodePort") and carried and carried not in used:
                port["nodePort"] = carried
    for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
        if spec.get("type") != "LoadBalancer" and key in spec and spec[key] == old_spec.get(key):
            spec.pop(key)
    if (not externally_accessible(spec)
            and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")):
        spec.pop("externalTrafficPolicy", None)
    if not needs_health_check(spec):
        if (spec.get("healthCheckNodePort")
                and spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort")):
            spec.pop("healthCheckNodePort")
    elif not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
    return new


def _owned(svc: dict | None) -> tuple[set[str], set[int]]:
    if svc is None:
        return set(), set()
    spec = svc.get("spec") or {}
    ips = {ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"}
    ports = {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")}
    if spec.get("healthCheckNodePort"):
        ports.add(spec["healthCheckNodePort"])
    return ips, ports


def allocate_service(new: dict, old: dict | None, state: ServiceAllocations, ip_range: IPRange,
                     port_range: PortRange, rand: random.Random
                     ) -> tuple[dict, ServiceAllocations, list[FieldError]]:
    """Allocate what ``new`` needs beyond what ``old`` holds; release what it dropped.

    Returns the completed object, the new state, and field errors (state
    unchanged when there are errors).
    """
    new = json_copy(new)
    spec = new["spec"]
    old_ips, old_ports = _owned(old)
    cluster_ips, node_ports = set(state.cluster_ips) - old_ips, set(state.node_ports) - old_ports
    ips_f, ports_f = frozenset(cluster_ips), frozenset(node_ports)
    try:
        if needs_cluster_ip(spec):
            requested = spec.get("clusterIP") or None
            if requested != "None":
                try:
                    ip, ips_f = allocate_ip(ip_range, ips_f, requested, rand)
                except AllocationError as exc:
                    shown = list(spec.get("clusterIPs") or ([requested] if requested else []))
                    raise _Reject(invalid(shown, "spec.clusterIPs",
                                          f"failed to allocate IP {requested}: {exc}")) from exc
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        for i, port in enumerate(spec.get("ports") or []):
            if port.get("nodePort") or needs_node_ports(spec):
                try:
                    port["nodePort"], ports_f = allocate_port(port_range, ports_f,
                                                              port.get("nodePort") or None, rand)
                except AllocationError as exc:
                    raise _Reject(invalid(port.get("nodePort"), f"spec.ports[{i}].nodePort",
                                          str(exc))) from exc
        if needs_health_check(spec):
            requested = spec.get("healthCheckNodePort") or None
            try:
                spec["healthCheckNodePort"], ports_f = allocate_port(port_range, ports_f,
                                                                     requested, rand)
            except AllocationError as exc:
                raise _Reject(invalid(requested, "spec.healthCheckNodePort",
                                      f"failed to allocate requested HealthCheck NodePort "
                                      f"{requested}: {exc}")) from exc
    except _Reject as rej:
        return new, state, [rej.error]
    return new, replace(state, cluster_ips=ips_f, node_ports=ports_f), []


def release_service(svc: dict, state: ServiceAllocations) -> ServiceAllocations:
    ips, ports = _owned(svc)
    return replace(state, cluster_ips=state.cluster_ips - ips, node_ports=state.node_ports - ports)


class _Reject(Exception):
    def __init__(self, error: FieldError) -> None:
        super().__init__(str(error))
        self.error = error
