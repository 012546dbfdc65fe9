"""The cluster DNS zone: every record the Kubernetes DNS spec derives from API objects.

`build_zone` is a pure function from Services, EndpointSlices (or Endpoints)
and Pods to a frozen `Zone`; the server only ever reads a Zone, and updates are
a swap of the whole Zone (see ZoneHolder), so a query never sees half an update.
Names are stored lowercased with a trailing dot; lookups lowercase the query.
"""
from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agents.dns.k8s_objects import (
    EndpointInfo,
    ServiceInfo,
    parse_endpoints,
    parse_pod_ips,
    parse_service,
)

DEFAULT_DOMAIN = "cluster.local"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_TTL = 30
REVERSE_V4 = "in-addr.arpa."
POD_MODES = ("insecure", "verified", "disabled")
DEFAULT_FALLTHROUGH = ("in-addr.arpa.", "ip6.arpa.")      # kubeadm's Corefile


@dataclass(frozen=True, order=True)
class Record:
    """One resource record's type and data; the owner name is the zone's mapping key.

    A/AAAA: target is the address. CNAME/PTR/NS: target is a name. SRV: all fields.
    """

    rtype: str
    target: str
    port: int = 0
    priority: int = 0
    weight: int = 0


class Authority(enum.Enum):
    """Who answers a name: the cluster zone, the service reverse zone, or upstream."""

    CLUSTER = "cluster"
    REVERSE = "reverse"
    UPSTREAM = "upstream"


@dataclass(frozen=True)
class Lookup:
    exists: bool
    records: tuple[Record, ...] = ()


@dataclass(frozen=True, eq=False)
class Zone:
    domain: str                                  # "cluster.local." (lowercase, trailing dot)
    records: Mapping[str, tuple[Record, ...]]
    names: frozenset[str]                        # owner names plus empty non-terminals
    service_network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ttl: int = DEFAULT_TTL
    serial: int = 1
    pod_mode: str = "insecure"
    pod_ips: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    reverse: bool = True                         # in-addr.arpa is one of the plugin's zones
    fallthrough: tuple[str, ...] = DEFAULT_FALLTHROUGH

    def classify(self, name: str) -> Authority:
        """`name` must be lowercase with a trailing dot."""
        if in_domain(name, self.domain):
            return Authority.CLUSTER
        if self.reverse and name.endswith("." + REVERSE_V4):
            address = reverse_name_to_ip(name)
            in_network = (address is not None and self.service_network is not None
                          and address in self.service_network)
            if name in self.records or in_network or not self.falls_through(name):
                return Authority.REVERSE
        return Authority.UPSTREAM

    def falls_through(self, name: str) -> bool:
        """Does a name this zone does not have go on to the next plugin (forward)?
        The kubernetes plugin's `fallthrough [ZONES...]`."""
        return any(in_domain(name, zone) for zone in self.fallthrough)

    def lookup(self, name: str) -> Lookup:
        """Records owned by `name` (lowercase, trailing dot); exists=False means NXDOMAIN."""
        records = self.records.get(name)
        if records is not None:
            return Lookup(True, records)
        if name in self.names:
            return Lookup(True)
        return self._pod_lookup(name)

    def _pod_lookup(self, name: str) -> Lookup:
        """`a-b-c-d.<ns>.pod.<domain>` A records, derived from the name (`pods insecure`)."""
        suffix = ".pod." + self.domain
        if self.pod_mode == "disabled" or not name.endswith(suffix):
            return Lookup(False)
        labels = name[:-len(suffix)].split(".")
        if len(labels) == 1:                           # <ns>.pod.<domain>: empty non-terminal
            return Lookup(self.pod_mode == "insecure"
                          or any(namespace == labels[0] for namespace, _ in self.pod_ips))
        address = dashed_name_to_ip(labels[0]) if len(labels) == 2 else None
        if address is None:
            return Lookup(False)
        if self.pod_mode == "verified" and (labels[1], address) not in self.pod_ips:
            return Lookup(False)
        return Lookup(True, (Record("A", address),))


def _is_octet(text: str) -> bool:
    """A decimal 0-255 without leading zeros (as Go's net.ParseIP, hence CoreDNS, accepts)."""
    return (text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 255
            and (text == "0" or not text.startswith("0")))


def dashed_name_to_ip(label: str) -> str | None:
    """`10-244-1-5` -> `10.244.1.5`; None when the label is not a dashed IPv4 address."""
    parts = label.split("-")
    if len(parts) != 4 or not all(_is_octet(p) for p in parts):
        return None
    return ".".join(parts)


def reverse_name_to_ip(name: str) -> ipaddress.IPv4Address | None:
    """`5.0.96.10.in-addr.arpa.` -> 10.96.0.5; None for partial or invalid names."""
    labels = name[:-len("." + REVERSE_V4)].split(".")
    if len(labels) != 4 or not all(_is_octet(p) for p in labels):
        return None
    return ipaddress.IPv4Address(".".join(reversed(labels)))


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer.lower() + "."


def _normalize_domain(domain: str) -> str:
    return domain.strip().strip(".").lower() + "."


def in_domain(name: str, domain: str) -> bool:
    """Is `name` the domain or below it?  Both lowercase, trailing dot; "." is the root."""
    return domain == "." or name == domain or name.endswith("." + domain)


class _RecordSet:
    """Mutable builder for a Zone's records (only used inside build_zone)."""

    def __init__(self):
        self.by_name: dict[str, set[Record]] = {}

    def add(self, name: str, record: Record) -> None:
        self.by_name.setdefault(name, set()).add(record)


def _srv_weight(count: int) -> int:
    return max(1, 100 // max(1, count))


def _add_cluster_ip_service(records: _RecordSet, svc: ServiceInfo, fqdn: str) -> None:
    for ip in svc.cluster_ips:
        records.add(fqdn, Record("AAAA" if ":" in ip else "A", ip))
        records.add(reverse_name(ip), Record("PTR", fqdn))
    for port in svc.ports:
        if port.name:
            srv_name = f"_{port.name}._{port.protocol.lower()}.{fqdn}"
            records.add(srv_name, Record("SRV", fqdn, port.port, 0, 100))


def _endpoint_label(endpoint: EndpointInfo) -> str:
    if endpoint.hostname:
        return endpoint.hostname.lower()
    return endpoint.ip.replace(".", "-").replace(":", "-")


def _add_headless_service(records: _RecordSet, svc: ServiceInfo, fqdn: str,
                          endpoints: tuple[EndpointInfo, ...]) -> None:
    published = [e for e in endpoints if e.ready or svc.publish_not_ready]
    srv_targets: dict[str, list[tuple[str, int]]] = {}
    for endpoint in published:
        rtype = "AAAA" if ":" in endpoint.ip else "A"
        target = f"{_endpoint_label(endpoint)}.{fqdn}"
        records.add(fqdn, Record(rtype, endpoint.ip))
        records.add(target, Record(rtype, endpoint.ip))
        records.add(reverse_name(endpoint.ip), Record("PTR", target))
        for port in endpoint.ports:
            if port.name:
                srv_name = f"_{port.name}._{port.protocol.lower()}.{fqdn}"
                srv_targets.setdefault(srv_name, []).append((target, port.port))
    for srv_name, targets in srv_targets.items():
        unique = sorted(set(targets))
        for target, port in unique:
            records.add(srv_name, Record("SRV", target, port, 0, _srv_weight(len(unique))))


def _empty_non_terminals(owner_names, domain: str) -> frozenset[str]:
    """Every ancestor of an owned name inside the cluster domain (they exist, with no data)."""
    found = {domain}
    for name in owner_names:
        if name == domain or not in_domain(name, domain):
            continue
        labels = name[:-len(domain)].rstrip(".").split(".")
        for start in range(1, len(labels)):
            found.add(".".join(labels[start:]) + ("." + domain if domain != "." else "."))
    return frozenset(found)


def build_zone(services=(), slices=(), pods=(), domain: str = DEFAULT_DOMAIN, *,
               service_cidr: str = DEFAULT_SERVICE_CIDR, ttl: int = DEFAULT_TTL,
               pod_mode: str = "insecure", serial: int = 1, reverse: bool = True,
               fallthrough: tuple[str, ...] = DEFAULT_FALLTHROUGH) -> Zone:
    """Build the frozen zone from API dicts: Services v1, EndpointSlices/Endpoints, Pods v1.

    Raises ZoneError naming the object when one cannot be understood.
    """
    if pod_mode not in POD_MODES:
        raise ValueError(f"pod_mode must be one of {POD_MODES}, got {pod_mode!r}")
    domain = _normalize_domain(domain)
    endpoints = parse_endpoints(slices)
    records = _RecordSet()
    for svc in sorted((parse_service(obj) for obj in services or ()),
                      key=lambda s: (s.namespace, s.name)):
        fqdn = f"{svc.name}.{svc.namespace.lower()}.svc.{domain}"
        if svc.type == "ExternalName":
            if svc.external_name:
                records.add(fqdn, Record("CNAME", svc.external_name + "."))
        elif svc.headless:
            _add_headless_service(records, svc, fqdn, endpoints.get((svc.namespace, svc.name), ()))
        else:
            _add_cluster_ip_service(records, svc, fqdn)
    frozen = {name: tuple(sorted(found, key=_record_order))
              for name, found in records.by_name.items()}
    names = frozenset(frozen) | _empty_non_terminals(frozen, domain) | {"svc." + domain}
    if pod_mode != "disabled":
        names |= {"pod." + domain}
    return Zone(domain=domain, records=MappingProxyType(frozen), names=names,
                service_network=ipaddress.ip_network(service_cidr), ttl=ttl, serial=serial,
                pod_mode=pod_mode,
                pod_ips=parse_pod_ips(pods) if pod_mode == "verified" else frozenset(),
                reverse=reverse, fallthrough=tuple(_normalize_domain(z) for z in fallthrough))


def build_static_zone(domain: str, records, *, ttl: int = DEFAULT_TTL, serial: int = 1) -> Zone:
    """A zone of fixed records, e.g. the emulated outside world the VPC resolver answers for.

    `records` maps owner names (under `domain`) to iterables of Record.
    """
    domain = _normalize_domain(domain)
    frozen = {}
    for name, found in records.items():
        owner = _normalize_domain(name)
        if not in_domain(owner, domain):
            raise ValueError(f"{name} is not inside {domain}")
        frozen[owner] = tuple(sorted(set(found), key=_record_order))
    names = frozenset(frozen) | _empty_non_terminals(frozen, domain)
    return Zone(domain=domain, records=MappingProxyType(frozen), names=names,
                service_network=None, ttl=ttl, serial=serial, pod_mode="disabled")


def _record_order(record: Record):
    if record.rtype in ("A", "AAAA"):
        return (record.rtype, ipaddress.ip_address(record.target).packed, record.port)
    return (record.rtype, record.target.encode(), record.port)
