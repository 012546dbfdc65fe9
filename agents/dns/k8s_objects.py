"""Kubernetes API objects (JSON dicts) reduced to what DNS needs.

The zone builder should not care whether endpoints arrived as
discovery.k8s.io/v1 EndpointSlices or as v1 Endpoints, nor about the hundred
fields DNS never reads. These functions turn API dicts into small frozen
records and fail loudly (ZoneError) on objects DNS cannot make sense of.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from agents.dns.errors import ZoneError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([-a-z0-9_]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True, order=True)
class PortInfo:
    """A port as DNS sees it: SRV records exist only for named ones."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    type: str                       # ClusterIP, NodePort, LoadBalancer, ExternalName
    cluster_ips: tuple[str, ...]    # empty for headless, ExternalName or not yet allocated
    headless: bool
    external_name: str | None
    ports: tuple[PortInfo, ...]
    publish_not_ready: bool


@dataclass(frozen=True, order=True)
class EndpointInfo:
    ip: str
    hostname: str | None
    ready: bool
    ports: tuple[PortInfo, ...]


def _identity(obj: dict, kind: str) -> tuple[str, str]:
    if not isinstance(obj, dict):
        raise ZoneError(kind, "?", f"expected a JSON object, got {type(obj).__name__}")
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not name or not isinstance(name, str):
        raise ZoneError(kind, "?", "metadata.name is missing")
    return metadata.get("namespace") or "default", name


def _checked_label(text, kind: str, where: str, field: str) -> str:
    """A DNS-1123 label (lowercased), as Kubernetes requires of names and hostnames."""
    if not isinstance(text, str) or not _DNS_LABEL.match(text.lower()):
        raise ZoneError(kind, where, f"{field} {text!r} is not a DNS label")
    return text.lower()


def _checked_hostname(text, kind: str, where: str) -> str:
    """An externalName: dot-separated labels of 1-63 bytes, at most 253 bytes."""
    name = text.strip().rstrip(".").lower() if isinstance(text, str) else ""
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise ZoneError(kind, where, f"externalName {text!r} is not a DNS name")
    return name


def _checked_ip(text, kind: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except (TypeError, ValueError) as error:
        raise ZoneError(kind, where, f"bad IP address {text!r}") from error


def _ports(entries, kind: str, where: str) -> tuple[PortInfo, ...]:
    ports = []
    for entry in entries or ():
        number = entry.get("port")
        if number is None:          # an EndpointSlice port without number means "all ports"
            continue
        if not isinstance(number, int) or not 0 < number < 65536:
            raise ZoneError(kind, where, f"bad port {number!r}")
        ports.append(PortInfo(entry.get("name") or "", number, entry.get("protocol") or "TCP"))
    return tuple(sorted(ports))


def parse_service(obj: dict) -> ServiceInfo:
    namespace, name = _identity(obj, "Service")
    where = f"{namespace}/{name}"
    namespace = _checked_label(namespace, "Service", where, "namespace")
    name = _checked_label(name, "Service", where, "name")
    spec = obj.get("spec") or {}
    service_type = spec.get("type") or "ClusterIP"
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None" and service_type != "ExternalName"
    ips: tuple[str, ...] = ()
    if service_type != "ExternalName" and not headless:
        listed = spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else [])
        ips = tuple(_checked_ip(ip, "Service", where) for ip in listed if ip and ip != "None")
    external_name = None
    if service_type == "ExternalName" and spec.get("externalName"):
        external_name = _checked_hostname(spec["externalName"], "Service", where)
    return ServiceInfo(namespace=namespace, name=name, type=service_type,
                       cluster_ips=ips, headless=headless, external_name=external_name,
                       ports=_ports(spec.get("ports"), "Service", where),
                       publish_not_ready=bool(spec.get("publishNotReadyAddresses")))


def _is_slice(obj: dict) -> bool:
    return (obj.get("kind") == "EndpointSlice"
            or str(obj.get("apiVersion", "")).startswith("discovery.k8s.io"))


def _slice_endpoints(obj: dict) -> tuple[tuple[str, str] | None, list[EndpointInfo]]:
    namespace, name = _identity(obj, "EndpointSlice")
    where = f"{namespace}/{name}"
    service = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or obj.get("addressType", "IPv4") == "FQDN":
        return None, []
    ports = _ports(obj.get("ports"), "EndpointSlice", where)
    endpoints = []
    for entry in obj.get("endpoints") or ():
        conditions = entry.get("conditions") or {}
        ready = conditions.get("ready") is not False      # nil means ready (API docs)
        hostname = entry.get("hostname")
        if hostname:
            hostname = _checked_label(hostname, "EndpointSlice", where, "hostname")
        for address in entry.get("addresses") or ():
            endpoints.append(EndpointInfo(_checked_ip(address, "EndpointSlice", where),
                                          hostname, ready, ports))
    return (namespace.lower(), service.lower()), endpoints


def _endpoints_v1(obj: dict) -> tuple[tuple[str, str], list[EndpointInfo]]:
    namespace, name = _identity(obj, "Endpoints")
    where = f"{namespace}/{name}"
    endpoints = []
    for subset in obj.get("subsets") or ():
        ports = _ports(subset.get("ports"), "Endpoints", where)
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(key) or ():
                hostname = address.get("hostname")
                if hostname:
                    hostname = _checked_label(hostname, "Endpoints", where, "hostname")
                endpoints.append(EndpointInfo(_checked_ip(address.get("ip"), "Endpoints", where),
                                              hostname, ready, ports))
    return (namespace.lower(), name.lower()), endpoints


def parse_endpoints(objects) -> dict[tuple[str, str], tuple[EndpointInfo, ...]]:
    """Endpoints per (namespace, service); EndpointSlices win over v1 Endpoints."""
    from_slices: dict[tuple[str, str], list[EndpointInfo]] = {}
    from_v1: dict[tuple[str, str], list[EndpointInfo]] = {}
    for obj in objects or ():
        if isinstance(obj, dict) and _is_slice(obj):
            key, endpoints = _slice_endpoints(obj)
            if key is not None:
                from_slices.setdefault(key, []).extend(endpoints)
        else:
            key, endpoints = _endpoints_v1(obj)
            from_v1.setdefault(key, []).extend(endpoints)
    merged = {**from_v1, **from_slices}
    return {key: _dedupe(endpoints) for key, endpoints in merged.items()}


def _dedupe(endpoints: list[EndpointInfo]) -> tuple[EndpointInfo, ...]:
    """One entry per (IP, hostname): ready if any copy is ready, ports united."""
    by_key: dict[tuple, EndpointInfo] = {}
    for endpoint in endpoints:
        key = (endpoint.ip, endpoint.hostname)
        seen = by_key.get(key)
        if seen is not None:
            endpoint = EndpointInfo(endpoint.ip, endpoint.hostname, seen.ready or endpoint.ready,
                                    tuple(sorted(set(seen.ports) | set(endpoint.ports))))
        by_key[key] = endpoint
    return tuple(sorted(by_key.values(),
                        key=lambda e: (ipaddress.ip_address(e.ip), e.hostname or "")))


def parse_pod_ips(objects) -> frozenset[tuple[str, str]]:
    """(namespace, podIP) of every pod with an IP, for `pods verified` mode."""
    found = set()
    for obj in objects or ():
        namespace, name = _identity(obj, "Pod")
        status = obj.get("status") or {}
        listed = [entry.get("ip") for entry in status.get("podIPs") or ()] or [status.get("podIP")]
        for ip in listed:
            if ip:
                found.add((namespace, _checked_ip(ip, "Pod", f"{namespace}/{name}")))
    return frozenset(found)
