"""The proxy's input model: Services, EndpointSlices and this node's facts.

kube-proxy reads Services (v1) and EndpointSlices (discovery.k8s.io/v1) from
the API; these frozen dataclasses hold exactly the fields that decide the
data plane, parsed from the JSON dicts the API server returns.  Everything
downstream (endpoint categorisation, rule computation, renderers) works on
these objects only, so it stays pure and testable without an API server.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.proxy.errors import ModelError
from agents.proxy.topology import ZONE_LABEL

DEFAULT_AFFINITY_TIMEOUT_S = 10800
MAX_AFFINITY_TIMEOUT_S = 86400
PROTOCOLS = ("TCP", "UDP", "SCTP")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SOURCE_RANGES_ANNOTATION = \
    "service.beta.kubernetes.io/load-balancer-source-ranges"


Labels = tuple[tuple[str, str], ...]


def _labels(meta: Mapping[str, Any]) -> Labels:
    return tuple(sorted((str(k), str(v))
                        for k, v in (meta.get("labels") or {}).items()))


def _label(labels: Labels, key: str) -> str | None:
    for k, v in labels:
        if k == key:
            return v
    return None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def is_ipv4(text: str) -> bool:
    """True when text is a plain IPv4 address, as ipaddress.IPv4Address
    reads one (no leading zeros); a regex, as ipaddress parses in Python
    and a 10k-service sync checks 30k addresses."""
    return isinstance(text, str) and _IPV4.fullmatch(text) is not None


def _ipv4_cidr(text: str, what: str) -> str:
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ModelError(f"{what}: {text!r} is not a CIDR") from exc
    return str(net)


@dataclass(frozen=True)
class ServicePort:
    """One entry of spec.ports (name is '' when the port is unnamed)."""

    name: str
    protocol: str
    port: int
    target_port: int | str | None
    node_port: int | None


@dataclass(frozen=True)
class LoadBalancerIngress:
    """One entry of status.loadBalancer.ingress."""

    ip: str | None
    hostname: str | None
    ip_mode: str | None

    @property
    def is_vip(self) -> bool:
        """kube-proxy installs rules only for an ip, ipMode VIP or unset."""
        return bool(self.ip) and self.ip_mode in (None, "", "VIP")


@dataclass(frozen=True)
class Service:
    """A v1 Service reduced to what the data plane depends on."""

    namespace: str
    name: str
    type: str
    cluster_ip: str | None
    ports: tuple[ServicePort, ...]
    labels: Labels = ()
    external_ips: tuple[str, ...] = ()
    external_name: str | None = None
    session_affinity: str = "None"
    affinity_timeout_s: int = DEFAULT_AFFINITY_TIMEOUT_S
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    load_balancer_source_ranges: tuple[str, ...] = ()
    ingress: tuple[LoadBalancerIngress, ...] = ()
    publish_not_ready_addresses: bool = False

    @property
    def headless(self) -> bool:
        return self.cluster_ip is None

    def label(self, key: str) -> str | None:
        return _label(self.labels, key)

    @property
    def externally_accessible(self) -> bool:
        """Same test as kube-proxy's apiservice.ExternallyAccessible."""
        return (self.type in ("NodePort", "LoadBalancer")
                or (self.type == "ClusterIP" and bool(self.external_ips)))

    @property
    def external_policy_local(self) -> bool:
        return (self.externally_accessible
                and self.external_traffic_policy == "Local")

    @property
    def internal_policy_local(self) -> bool:
        return self.internal_traffic_policy == "Local"

    @property
    def load_balancer_vips(self) -> tuple[str, ...]:
        """IPv4 ingress IPs that get rules (not hostname-only, not Proxy)."""
        if self.type != "LoadBalancer":
            return ()
        return tuple(i.ip for i in self.ingress
                     if i.is_vip and i.ip and is_ipv4(i.ip))


@dataclass(frozen=True)
class EndpointSlicePort:
    """One entry of an EndpointSlice's ports (the resolved target port)."""

    name: str
    port: int | None
    protocol: str


@dataclass(frozen=True)
class SliceEndpoint:
    """One entry of an EndpointSlice's endpoints.

    zone is the endpoint's own zone (its node's label; kube-proxy does not
    filter on it); zone_hints / node_hints are hints.forZones[*].name and
    hints.forNodes[*].name, the zones and nodes whose proxies should use
    this endpoint (agents.proxy.topology).
    """

    addresses: tuple[str, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointSlice:
    """A discovery.k8s.io/v1 EndpointSlice."""

    namespace: str
    name: str
    service_name: str | None
    address_type: str
    ports: tuple[EndpointSlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]
    labels: Labels = ()

    def label(self, key: str) -> str | None:
        return _label(self.labels, key)


@dataclass(frozen=True)
class NodeInfo:
    """Facts about the node the agent runs on.

    node_ips are the node's own addresses (NodePorts are served on every
    local address, i.e. addrtype LOCAL); cluster_cidr is the pod CIDR used to
    tell pod traffic from off-cluster traffic; service_cidr is kept for the
    nftables renderer (which drops traffic to unallocated service IPs);
    zone is the Node's topology.kubernetes.io/zone label (None without
    one), which zone hints are matched against.
    """

    name: str
    node_ips: tuple[str, ...] = ()
    cluster_cidr: str | None = "192.168.0.0/16"
    service_cidr: str | None = "10.96.0.0/12"
    zone: str | None = None

    def __post_init__(self) -> None:
        for ip in self.node_ips:
            if not is_ipv4(ip):
                raise ModelError(f"node {self.name}: {ip!r} is not IPv4")
        for cidr in (self.cluster_cidr, self.service_cidr):
            if cidr is not None:
                _ipv4_cidr(cidr, f"node {self.name}")


@dataclass(frozen=True)
class ProxyOptions:
    """kube-proxy configuration knobs that change the rendered rules."""

    masquerade_mark: int = 0x4000
    masquerade_all: bool = False
    localhost_nodeports: bool = False
    random_fully: bool = True
    conntrack_tcp_liberal: bool = False
    large_cluster_endpoints: int = 1000


# --------------------------------------------------------------- parsing ---

def _meta(d: Mapping[str, Any], kind: str) -> tuple[str, str, Mapping]:
    if not isinstance(d, Mapping):
        raise ModelError(
            f"{kind}: expected a JSON object, got {type(d).__name__}")
    meta = d.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ModelError(f"{kind}: metadata.name is missing")
    return str(meta.get("namespace") or "default"), str(name), meta


def _int(value: Any, what: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{what}: expected an integer, got {value!r}")
    return value


def _protocol(value: Any, what: str) -> str:
    proto = str(value or "TCP").upper()
    if proto not in PROTOCOLS:
        raise ModelError(f"{what}: unknown protocol {value!r}")
    return proto


def _service_port(p: Mapping[str, Any], where: str) -> ServicePort:
    port = _int(p.get("port"), f"{where}.port", allow_none=False)
    if not 0 < port < 65536:
        raise ModelError(f"{where}.port: {port} out of range")
    node_port = _int(p.get("nodePort"), f"{where}.nodePort") or None
    target = p.get("targetPort")
    if target is not None and not isinstance(target, (int, str)):
        raise ModelError(f"{where}.targetPort: {target!r}")
    return ServicePort(name=str(p.get("name") or ""),
                       protocol=_protocol(p.get("protocol"), where),
                       port=port, target_port=target, node_port=node_port)


def _primary_ipv4(spec: Mapping[str, Any]) -> str | None:
    candidates = [spec.get("clusterIP")] + list(spec.get("clusterIPs") or [])
    if any(c == "None" for c in candidates):
        return None
    for c in candidates:
        if c and is_ipv4(str(c)):
            return str(c)
    return None


def service_from_k8s(d: Mapping[str, Any]) -> Service:
    """Parse a v1 Service JSON object as the API server returns it."""
    namespace, name, meta = _meta(d, "Service")
    where = f"Service {namespace}/{name}"
    spec = d.get("spec") or {}
    status = d.get("status") or {}
    stype = str(spec.get("type") or "ClusterIP")
    ports = tuple(_service_port(p, f"{where} spec.ports[{i}]")
                  for i, p in enumerate(spec.get("ports") or []))
    client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    timeout = (_int(client_ip.get("timeoutSeconds"), f"{where} timeoutSeconds")
               or DEFAULT_AFFINITY_TIMEOUT_S)
    if not 0 < timeout <= MAX_AFFINITY_TIMEOUT_S:
        raise ModelError(f"{where}: timeoutSeconds {timeout} out of range")
    ranges = list(spec.get("loadBalancerSourceRanges") or [])
    if not ranges:
        annotations = meta.get("annotations") or {}
        annotation = annotations.get(SOURCE_RANGES_ANNOTATION)
        ranges = [r for r in str(annotation or "").split(",") if r.strip()]
    ingress = tuple(
        LoadBalancerIngress(ip=i.get("ip") or None,
                            hostname=i.get("hostname") or None,
                            ip_mode=i.get("ipMode") or None)
        for i in ((status.get("loadBalancer") or {}).get("ingress") or []))
    return Service(
        namespace=namespace, name=name, type=stype,
        cluster_ip=_primary_ipv4(spec), ports=ports, labels=_labels(meta),
        external_ips=tuple(str(ip) for ip in spec.get("externalIPs") or []
                           if is_ipv4(str(ip))),
        external_name=spec.get("externalName") or None,
        session_affinity=str(spec.get("sessionAffinity") or "None"),
        affinity_timeout_s=timeout,
        external_traffic_policy=str(
            spec.get("externalTrafficPolicy") or "Cluster"),
        internal_traffic_policy=str(
            spec.get("internalTrafficPolicy") or "Cluster"),
        health_check_node_port=_int(spec.get("healthCheckNodePort"),
                                    f"{where} healthCheckNodePort") or None,
        load_balancer_source_ranges=tuple(
            _ipv4_cidr(r, f"{where} loadBalancerSourceRanges")
            for r in ranges),
        ingress=ingress,
        publish_not_ready_addresses=bool(spec.get("publishNotReadyAddresses")),
    )


def node_zone(node: Mapping[str, Any]) -> str | None:
    """A v1 Node's topology.kubernetes.io/zone label (None: none, or empty)."""
    return ((node.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL) or None


def _hint_names(hints: Any, key: str, where: str) -> tuple[str, ...]:
    """hints.forZones / hints.forNodes -> the names, in order, once each."""
    entries = hints.get(key) or []
    if not isinstance(entries, list):
        raise ModelError(f"{where}.hints.{key}: expected a list, got {entries!r}")
    names: dict[str, None] = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ModelError(f"{where}.hints.{key}[{i}].name: expected a name, got {entry!r}")
        names[name] = None
    return tuple(names)


def _slice_endpoint(e: Mapping[str, Any], where: str = "EndpointSlice",
                    index: int = 0) -> SliceEndpoint:
    cond = e.get("conditions") or {}
    ready = cond.get("ready")
    ready = True if ready is None else bool(ready)
    serving = cond.get("serving")
    serving = ready if serving is None else bool(serving)
    hints = e.get("hints") or {}
    if hints:
        where = f"{where} endpoints[{index}]"
        if not isinstance(hints, Mapping):
            raise ModelError(f"{where}.hints: expected an object, got {hints!r}")
    return SliceEndpoint(addresses=tuple(str(a)
                                         for a in e.get("addresses") or []),
                         ready=ready, serving=serving,
                         terminating=bool(cond.get("terminating")),
                         node_name=e.get("nodeName") or None,
                         zone=e.get("zone") or None,
                         zone_hints=_hint_names(hints, "forZones", where) if hints else (),
                         node_hints=_hint_names(hints, "forNodes", where) if hints else ())


def endpoint_slice_from_k8s(d: Mapping[str, Any]) -> EndpointSlice:
    """Parse a discovery.k8s.io/v1 EndpointSlice JSON object."""
    namespace, name, meta = _meta(d, "EndpointSlice")
    where = f"EndpointSlice {namespace}/{name}"
    labels = _labels(meta)
    ports = tuple(
        EndpointSlicePort(name=str(p.get("name") or ""),
                          port=_int(p.get("port"), f"{where} ports[{i}].port"),
                          protocol=_protocol(p.get("protocol"), where))
        for i, p in enumerate(d.get("ports") or []))
    return EndpointSlice(
        namespace=namespace, name=name,
        service_name=_label(labels, SERVICE_NAME_LABEL),
        address_type=str(d.get("addressType") or "IPv4"),
        ports=ports,
        endpoints=tuple(_slice_endpoint(e, where, i)
                        for i, e in enumerate(d.get("endpoints") or [])),
        labels=labels)
