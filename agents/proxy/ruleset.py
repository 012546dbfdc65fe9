"""Pure computation of the node's Service data plane as plain data.

``compute_ruleset(services, slices, node)`` decides, for every service port,
what kube-proxy would do on this node: which entries exist (ClusterIP,
NodePort, externalIPs, LoadBalancer VIPs), which endpoints each traffic
policy uses (the cluster-wide set filtered by topology hints for this
node's name and zone), where traffic is masqueraded, rejected or dropped,
source ranges, session affinity and health-check ports.  The result is a frozen
RuleSet with no iptables or nft syntax in it, so both renderers
(iptables_render and nft_plan/nft_render) read the same decisions.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from agents.proxy.endpoints import (
    Endpoint,
    EndpointCategories,
    PortKey,
    categorize_endpoints,
    endpoints_by_service_port,
)
from agents.proxy.model import (
    HEADLESS_LABEL,
    SERVICE_PROXY_NAME_LABEL,
    EndpointSlice,
    NodeInfo,
    ProxyOptions,
    Service,
    ServicePort,
)

# What traffic to an entry (internal: ClusterIP; external: NodePort,
# externalIPs, LB VIPs) is sent to.
TO_CLUSTER = "cluster"    # the Cluster-policy endpoints (KUBE-SVC-)
TO_LOCAL = "local"        # the node-local endpoints (KUBE-SVL-)
REJECT = "reject"         # no endpoints anywhere
DROP = "drop"             # endpoints exist, but none local under Local policy
NO_ENTRY = "none"         # the port has no external entries


@dataclass(frozen=True, order=True)
class ServicePortName:
    """kube-proxy's ServicePortName plus protocol."""

    namespace: str
    service: str
    port_name: str
    protocol: str

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass(frozen=True)
class ServicePortRules:
    """Everything the data plane does for one (service, port, protocol)."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int | None
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]
    source_ranges: tuple[str, ...]
    health_check_node_port: int | None
    affinity_timeout_s: int | None
    internal_policy_local: bool
    external_policy_local: bool
    endpoints: EndpointCategories
    known_endpoints: int
    internal_action: str
    external_action: str
    firewall: bool
    firewall_allows_node: bool

    @property
    def protocol(self) -> str:
        return self.name.protocol

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.external_ips
                    or self.load_balancer_ips)

    @property
    def has_endpoints(self) -> bool:
        return self.endpoints.has_any

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible)

    @property
    def uses_external_chain(self) -> bool:
        """External entries exist and there is somewhere to send traffic.

        Under eTP Local this holds even with no local endpoints: pod and
        node sources are still short-circuited to the cluster endpoints.
        """
        return self.has_endpoints and self.externally_accessible

    @property
    def shares(self) -> dict[str, float]:
        """Share of new connections per cluster endpoint (uniform 1/n)."""
        eps = self.endpoints.cluster
        return {e.address: 1.0 / len(eps) for e in eps}


@dataclass(frozen=True)
class HealthCheck:
    """A healthCheckNodePort to serve and its local ready endpoint count."""

    node_port: int
    namespace: str
    service: str
    local_endpoints: int


@dataclass(frozen=True)
class RuleSet:
    """The complete Service data plane of one node, as data."""

    node: NodeInfo
    options: ProxyOptions
    service_ports: tuple[ServicePortRules, ...]
    health_checks: tuple[HealthCheck, ...]

    @property
    def total_endpoints(self) -> int:
        return sum(sp.known_endpoints for sp in self.service_ports)


def service_is_proxied(service: Service) -> bool:
    """kube-proxy skips headless, ExternalName and specially labelled ones."""
    return (not service.headless and service.type != "ExternalName"
            and service.label(SERVICE_PROXY_NAME_LABEL) is None
            and service.label(HEADLESS_LABEL) is None)


def _decide(internal_local: bool, has_any: bool, has_local: bool) -> str:
    if not has_any:
        return REJECT
    if internal_local:
        return TO_LOCAL if has_local else DROP
    return TO_CLUSTER


def _port_rules(service: Service, port: ServicePort,
                endpoints: tuple[Endpoint, ...], node: NodeInfo,
                options: ProxyOptions) -> ServicePortRules:
    name = ServicePortName(service.namespace, service.name, port.name,
                           port.protocol)
    node_port = (port.node_port
                 if service.type in ("NodePort", "LoadBalancer") else None)
    lb_ips = service.load_balancer_vips
    accessible = bool(node_port or service.external_ips or lb_ips)
    itp_local = service.internal_policy_local
    etp_local = service.external_policy_local
    categories = categorize_endpoints(
        endpoints, uses_cluster=not itp_local or accessible,
        uses_local=itp_local or (etp_local and accessible),
        node=node.name, zone=node.zone)
    has_any = categories.has_any
    has_local = bool(categories.local)
    ranges = (service.load_balancer_source_ranges
              if service.type == "LoadBalancer" else ())
    allows_node = any(ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
                      for cidr in ranges for ip in node.node_ips)
    health = (service.health_check_node_port
              if service.type == "LoadBalancer" and etp_local else None)
    return ServicePortRules(
        name=name, cluster_ip=service.cluster_ip or "", port=port.port,
        node_port=node_port, external_ips=service.external_ips,
        load_balancer_ips=lb_ips, source_ranges=ranges,
        health_check_node_port=health,
        affinity_timeout_s=(
            service.affinity_timeout_s
            if service.session_affinity == "ClientIP" else None),
        internal_policy_local=itp_local, external_policy_local=etp_local,
        endpoints=categories, known_endpoints=len(endpoints),
        internal_action=_decide(itp_local, has_any, has_local),
        external_action=(_decide(etp_local, has_any, has_local)
                         if accessible else NO_ENTRY),
        firewall=has_any and bool(lb_ips) and bool(ranges),
        firewall_allows_node=allows_node)


def _health_checks(
        ports: Iterable[ServicePortRules]) -> tuple[HealthCheck, ...]:
    found: dict[int, tuple[str, str, set[str]]] = {}
    for sp in ports:
        if sp.health_check_node_port is None:
            continue
        entry = found.setdefault(sp.health_check_node_port,
                                 (sp.name.namespace, sp.name.service, set()))
        entry[2].update(e.ip for e in sp.endpoints.local if e.ready)
    return tuple(HealthCheck(port, ns, svc, len(ips))
                 for port, (ns, svc, ips) in sorted(found.items()))


def compute_ruleset(services: Iterable[Service],
                    slices: Iterable[EndpointSlice], node: NodeInfo,
                    options: ProxyOptions = ProxyOptions(), *,
                    previous: RuleSet | None = None,
                    changed: Collection[tuple[str, str]] | None = None
                    ) -> RuleSet:
    """Compute the node's complete rule set (pure: no I/O, deterministic).

    With ``previous`` (computed for the same node and options) and
    ``changed`` (namespace, name) keys, only the changed services are
    computed again and the others' entries are taken from previous — what
    makes a partial sync at 10k services cheap.  The result equals a full
    computation either way.  Services and slices of unchanged services may
    be left out only when previous fits (same node and options): otherwise
    everything is computed from what is passed.
    """
    keep: list[ServicePortRules] = []
    if previous is not None and changed is not None and \
            previous.node == node and previous.options == options:
        wanted = set(changed)
        keep = [sp for sp in previous.service_ports
                if (sp.name.namespace, sp.name.service) not in wanted]
        services = [s for s in services if (s.namespace, s.name) in wanted]
        slices = [s for s in slices
                  if (s.namespace, s.service_name) in wanted]
    by_port = endpoints_by_service_port(slices, node.name)
    computed: list[ServicePortRules] = []
    for service in services:
        if not service_is_proxied(service):
            continue
        for port in service.ports:
            key = PortKey(service.namespace, service.name, port.name,
                          port.protocol)
            computed.append(_port_rules(service, port, by_port.get(key, ()),
                                        node, options))
    if keep:                          # already sorted: insert the few new
        ports = keep
        for sp in computed:
            bisect.insort(ports, sp, key=_order)
    else:
        ports = sorted(computed, key=_order)
    return RuleSet(node=node, options=options, service_ports=tuple(ports),
                   health_checks=_health_checks(ports))


def _order(sp: ServicePortRules) -> tuple[str, str]:
    return str(sp.name), sp.name.protocol
