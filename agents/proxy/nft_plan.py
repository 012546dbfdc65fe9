"""kube-proxy's nftables layout for a RuleSet, as data (no nft text yet).

``plan_ruleset`` turns the pure RuleSet into an NftPlan: the fixed part of
table `ip kube-proxy` (kube-proxy's base chains on the netfilter hooks, the
`services` dispatch through the `service-ips` / `service-nodeports` verdict
maps, the `no-endpoint-*` maps, `firewall-ips`, the `cluster-ips` set and
the masquerade chains) plus, per (namespace, service), its map elements,
chains (`service-`, `local-`, `external-`, `firewall-`, `endpoint-`) and
affinity sets, named with kube-proxy's hashAndTruncate.  It follows
pkg/proxy/nftables/proxier.go syncProxyRules decision by decision; the
nft_render module turns plans into transactions.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from agents.proxy.endpoints import Endpoint
from agents.proxy.ruleset import REJECT, TO_CLUSTER, TO_LOCAL, RuleSet, ServicePortRules

FAMILY, TABLE = "ip", "kube-proxy"
T = f"{FAMILY} {TABLE}"

SERVICES = "services"
SERVICE_IPS, SERVICE_NODEPORTS = "service-ips", "service-nodeports"
NODEPORT_IPS, CLUSTER_IPS = "nodeport-ips", "cluster-ips"
NO_EP_SERVICES, NO_EP_NODEPORTS = "no-endpoint-services", "no-endpoint-nodeports"
FIREWALL_IPS = "firewall-ips"
ENDPOINTS_CHECK_SVC = "service-endpoints-check"
ENDPOINTS_CHECK_NP = "nodeport-endpoints-check"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_CHECK = "firewall-check"
REJECT_CHAIN = "reject-chain"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"

# name, type, hook, priority — kube-proxy's nftablesBaseChains.
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("nat-prerouting", "nat", "prerouting", -100),
)
ADDR_PROTO_PORT = "ipv4_addr . inet_proto . inet_service : verdict"
PROTO_PORT = "inet_proto . inet_service : verdict"
# kind, name, spec — sets and maps of the fixed part (flushed on a full sync).
CONTAINERS = (
    ("set", CLUSTER_IPS, 'type ipv4_addr ; comment "Active ClusterIPs" ;'),
    ("set", NODEPORT_IPS,
     'type ipv4_addr ; comment "IPs that accept NodePort traffic" ;'),
    ("map", FIREWALL_IPS, f'type {ADDR_PROTO_PORT} ; comment "destinations '
     'that are subject to LoadBalancerSourceRanges" ;'),
    ("map", NO_EP_NODEPORTS, f'type {PROTO_PORT} ; comment "vmap to drop or '
     'reject packets to service nodeports with no endpoints" ;'),
    ("map", NO_EP_SERVICES, f'type {ADDR_PROTO_PORT} ; comment "vmap to drop '
     'or reject packets to services with no endpoints" ;'),
    ("map", SERVICE_IPS, f'type {ADDR_PROTO_PORT} ; comment "ClusterIP, '
     'ExternalIP and LoadBalancer IP traffic" ;'),
    ("map", SERVICE_NODEPORTS,
     f'type {PROTO_PORT} ; comment "NodePort traffic" ;'),
)
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"   # RFC 4648 base32
_B32_PAIRS = [a + b for a in _B32 for b in _B32]     # 10 bits -> 2 chars
CHAIN_NAME_BASE_MAX = 240          # knftables NameLengthMax - prefix max (16)
ServiceKey = tuple[str, str]


# ----------------------------------------------------------------- names ---

@functools.lru_cache(maxsize=1 << 17)
def hash_and_truncate(name: str) -> str:
    """kube-proxy's hashAndTruncate: "<8 chars of base32(sha256)>-name".

    Eight base32 characters are exactly the digest's first 5 bytes (40
    bits, 5 to a character), encoded here from an int two characters at a
    time: Python's base32 is slow.  Names repeat from sync to sync, hence the cache.
    """
    bits = int.from_bytes(hashlib.sha256(name.encode()).digest()[:5], "big")
    name = (_B32_PAIRS[bits >> 30] + _B32_PAIRS[bits >> 20 & 1023]
            + _B32_PAIRS[bits >> 10 & 1023] + _B32_PAIRS[bits & 1023]
            + "-" + name)
    if len(name) > CHAIN_NAME_BASE_MAX:
        name = name[:CHAIN_NAME_BASE_MAX - 3] + "..."
    return name


def service_chain_base(sp: ServicePortRules) -> str:
    n = sp.name
    return hash_and_truncate(
        f"{n.namespace}/{n.service}/{n.protocol.lower()}/{n.port_name}")


def endpoint_chain_base(sp: ServicePortRules, ep: Endpoint) -> str:
    n = sp.name
    return hash_and_truncate(
        f"{n.namespace}/{n.service}/{n.protocol.lower()}/{n.port_name}"
        f"__{ep.ip}/{ep.port}")


def is_service_chain(name: str) -> bool:
    """Per-service chains always contain '/' (the stock ones never do)."""
    return "/" in name


def is_affinity_set(name: str) -> bool:
    return name.startswith("affinity-")


# ------------------------------------------------------------------ plan ---

@dataclass(frozen=True, order=True)
class Element:
    """One element of a set (value None) or verdict map."""

    container: str
    key: str
    value: str | None = None
    comment: str | None = None

    def item(self) -> str:
        """The element as written inside `{ }`: key [comment] [: verdict]."""
        note = f' comment "{self.comment}"' if self.comment else ""
        value = f" : {self.value}" if self.value is not None else ""
        return f"{self.key}{note}{value}"


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...]
    spec: str | None = None              # "{ type ... hook ... ; }" for base

    def declare(self) -> str:
        return f"add chain {T} {self.name}" + (
            f" {{ {self.spec} }}" if self.spec else "")

    def block(self) -> str:
        """Its rules as one `add chain T name { rule ; ... ; }`.

        nft needs only its table cache for this, where `add rule` makes it
        read every chain of the table first (~100 ms at 40k chains).
        """
        if not self.rules:
            return f"add chain {T} {self.name}"
        return f"add chain {T} {self.name} {{ {' ; '.join(self.rules)} ; }}"


@dataclass(frozen=True)
class AffinitySet:
    name: str
    timeout_s: int

    def declare(self) -> str:
        return (f"add set {T} {self.name} {{ type ipv4_addr ; "
                f"flags dynamic,timeout ; timeout {self.timeout_s}s ; }}")


@dataclass(frozen=True)
class ServiceObjects:
    """Everything the table holds for one (namespace, service).

    ``chains`` come targets first (endpoint, firewall, local, service,
    external), so they can be written in order.
    """

    elements: tuple[Element, ...] = ()
    chains: tuple[Chain, ...] = ()
    affinity_sets: tuple[AffinitySet, ...] = ()

    @property
    def names(self) -> set[str]:
        """Its chains' and affinity sets' names."""
        return {c.name for c in self.chains} | {
            s.name for s in self.affinity_sets}


@dataclass(frozen=True)
class NftPlan:
    """The whole table as data: fixed part plus per-service objects."""

    chains: tuple[Chain, ...]
    containers: tuple[tuple[str, str, str], ...]
    elements: tuple[Element, ...]
    services: Mapping[ServiceKey, ServiceObjects] = field(
        default_factory=dict, compare=False)

    large: bool = False

    @property
    def base(self) -> tuple:
        """The fixed part; a partial sync is possible only if it is equal."""
        return (self.chains, self.containers, self.elements, self.large)


@dataclass(frozen=True)
class TableState:
    """Names (and affinity timeouts) of what exists in our table now."""

    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()

    @property
    def exists(self) -> bool:
        return bool(self.chains or self.sets)


EMPTY_TABLE = TableState()


def _base_chains(rs: RuleSet) -> tuple[Chain, ...]:
    opts, node = rs.options, rs.node
    mark = hex(opts.masquerade_mark)
    new = "ct state new"
    if node.node_ips:
        nodeport_match = f"ip daddr @{NODEPORT_IPS}"
    else:  # no known node IP: every local address except 127/8
        nodeport_match = "fib daddr type local ip daddr != 127.0.0.0/8"
    rules: dict[str, list[str]] = {name: [] for name, *_ in BASE_CHAINS}
    rules["filter-prerouting-pre-dnat"] = [f"{new} jump {FIREWALL_CHECK}"]
    rules["filter-output-pre-dnat"] = [f"{new} jump {FIREWALL_CHECK}"]
    rules["filter-forward"] = (
        [] if opts.conntrack_tcp_liberal else ["ct state invalid drop"]) + [
        f"{new} jump {ENDPOINTS_CHECK_SVC}", f"{new} jump {CLUSTER_IPS_CHECK}"]
    rules["filter-input"] = [f"{new} jump {ENDPOINTS_CHECK_NP}",
                             f"{new} jump {ENDPOINTS_CHECK_SVC}"]
    rules["filter-output"] = [f"{new} jump {ENDPOINTS_CHECK_SVC}",
                              f"{new} jump {CLUSTER_IPS_CHECK}"]
    rules["nat-output"] = [f"jump {SERVICES}"]
    rules["nat-postrouting"] = [f"jump {MASQUERADING}"]
    rules["nat-prerouting"] = [f"jump {SERVICES}"]
    chains = [Chain(name, tuple(rules[name]),
                    f"type {kind} hook {hook} priority {prio} ;")
              for name, kind, hook, prio in BASE_CHAINS]
    cluster_check = [f'ip daddr @{CLUSTER_IPS} reject comment "Reject traffic '
                     'to invalid ports of ClusterIPs"']
    if node.service_cidr:
        cluster_check.append(f"ip daddr {{ {node.service_cidr} }} drop comment"
                             ' "Drop traffic to unallocated ClusterIPs"')
    masq = "masquerade fully-random" if opts.random_fully else "masquerade"
    regular = {
        CLUSTER_IPS_CHECK: cluster_check,
        FIREWALL_CHECK: [
            f"ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"],
        MARK_MASQ: [f"mark set mark or {mark}"],
        MASQUERADING: [f"mark and {mark} == 0 return",
                       f"mark set mark xor {mark}", masq],
        ENDPOINTS_CHECK_NP: [f"{nodeport_match} meta l4proto . th dport "
                             f"vmap @{NO_EP_NODEPORTS}"],
        REJECT_CHAIN: ["reject"],
        SERVICES: [f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                   f"{nodeport_match} meta l4proto . th dport "
                   f"vmap @{SERVICE_NODEPORTS}"],
        ENDPOINTS_CHECK_SVC: [
            f"ip daddr . meta l4proto . th dport vmap @{NO_EP_SERVICES}"],
    }
    chains += [Chain(name, tuple(r)) for name, r in sorted(regular.items())]
    return tuple(chains)


def _verdict(action: str) -> str:
    return f"goto {REJECT_CHAIN}" if action == REJECT else "drop"


def _port_objects(sp: ServicePortRules, rs: RuleSet, large: bool,
                  elements: list, chains: list, sets: list) -> None:
    """kube-proxy's per-service-port part of syncProxyRules."""
    base = service_chain_base(sp)
    cluster_chain, local_chain = "service-" + base, "local-" + base
    external_chain, fw_chain = "external-" + base, "firewall-" + base
    proto, port, name = sp.protocol.lower(), sp.port, str(sp.name)
    eps, cidr = sp.endpoints, rs.node.cluster_cidr

    def ep_chain(ep: Endpoint) -> str:
        return "endpoint-" + endpoint_chain_base(sp, ep)

    def ep_set(ep: Endpoint) -> str:
        return "affinity-" + endpoint_chain_base(sp, ep)

    def policy_chain(action: str) -> str:
        return local_chain if action == TO_LOCAL else cluster_chain

    has_ext = sp.external_action in (TO_CLUSTER, TO_LOCAL)
    elements.append(Element(CLUSTER_IPS, sp.cluster_ip))
    key = f"{sp.cluster_ip} . {proto} . {port}"
    if sp.internal_action in (TO_CLUSTER, TO_LOCAL):
        elements.append(Element(SERVICE_IPS, key,
                                f"goto {policy_chain(sp.internal_action)}"))
    else:
        elements.append(Element(NO_EP_SERVICES, key,
                                _verdict(sp.internal_action), name))
    for ip in sp.external_ips + sp.load_balancer_ips:
        key = f"{ip} . {proto} . {port}"
        if sp.has_endpoints:
            elements.append(Element(SERVICE_IPS, key,
                                    f"goto {external_chain}"))
        if not has_ext:
            elements.append(Element(NO_EP_SERVICES, key,
                                    _verdict(sp.external_action), name))
    # kube-proxy's nftables mode firewalls LB IPs even with no endpoints.
    if sp.load_balancer_ips and sp.source_ranges:
        allowed = list(sp.source_ranges)
        if sp.firewall_allows_node:
            allowed += sp.load_balancer_ips
        chains.append(Chain(fw_chain, (
            f"ip saddr != {{ {', '.join(allowed)} }} drop",)))
        elements.extend(Element(FIREWALL_IPS, f"{ip} . {proto} . {port}",
                                f"goto {fw_chain}", name)
                        for ip in sp.load_balancer_ips)
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if sp.has_endpoints:
            elements.append(Element(SERVICE_NODEPORTS, key,
                                    f"goto {external_chain}"))
        if not has_ext:
            elements.append(Element(NO_EP_NODEPORTS, key,
                                    _verdict(sp.external_action), name))

    policy_rules: dict[str, list[str]] = {}
    if sp.internal_action in (TO_CLUSTER, TO_LOCAL):
        internal = policy_rules.setdefault(policy_chain(sp.internal_action), [])
        if rs.options.masquerade_all:
            internal.append(f"ip daddr {sp.cluster_ip} jump {MARK_MASQ}")
        elif cidr is not None:
            internal.append(f"ip daddr {sp.cluster_ip} ip saddr != {cidr} "
                            f"jump {MARK_MASQ}")
    if sp.uses_external_chain:
        ext: list[str] = []
        if not sp.external_policy_local:
            ext.append(f"jump {MARK_MASQ}")
        else:
            if cidr is not None:
                ext.append(f"ip saddr {cidr} goto {cluster_chain} "
                           'comment "short-circuit pod traffic"')
            ext.append(f"fib saddr type local jump {MARK_MASQ} "
                       'comment "masquerade local traffic"')
            ext.append(f"fib saddr type local goto {cluster_chain} "
                       'comment "short-circuit local traffic"')
        if has_ext:
            ext.append(f"goto {policy_chain(sp.external_action)}")
        chains.append(Chain(external_chain, tuple(ext)))
    affinity = sp.affinity_timeout_s
    for chain, members, used in (
            (cluster_chain, eps.cluster, sp.uses_cluster_endpoints),
            (local_chain, eps.local, sp.uses_local_endpoints)):
        if not (members and used):
            continue
        rules = policy_rules.setdefault(chain, [])
        if affinity is not None:
            rules += [f"ip saddr @{ep_set(ep)} goto {ep_chain(ep)}"
                      for ep in members]
        rules += _spread(members, ep_chain, large)
    chains += [Chain(c, tuple(r)) for c, r in policy_rules.items()]
    for ep in eps.reachable:
        rules = [f"ip saddr {ep.ip} jump {MARK_MASQ}"]
        if affinity is not None:
            sets.append(AffinitySet(ep_set(ep), affinity))
            rules.append(f"update @{ep_set(ep)} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {ep.address}")
        chains.append(Chain(ep_chain(ep), tuple(rules)))


def _large(rs: RuleSet) -> bool:
    """Large cluster: the set-free endpoint dispatch (see _spread).  Stops
    counting at the limit (30k services: a sum of 90k endpoints otherwise)."""
    limit, total = rs.options.large_cluster_endpoints, 0
    for sp in rs.service_ports:
        total += sp.known_endpoints
        if total > limit:
            return True
    return False


def _ports_of(rs: RuleSet, only: frozenset[ServiceKey]
              ) -> Iterator[ServicePortRules]:
    """The service ports of the ``only`` services, found by bisection:
    a RuleSet's ports are sorted by str(name), "ns/svc" (one unnamed port)
    or "ns/svc:port" (a service name has no ':')."""
    ports = rs.service_ports
    for namespace, service in sorted(only):
        base = f"{namespace}/{service}"
        for first, same in ((base, base.__eq__),
                            (base + ":", lambda n, p=base + ":": n.startswith(p))):
            at = bisect.bisect_left(ports, first, key=lambda sp: str(sp.name))
            while at < len(ports) and same(str(ports[at].name)):
                yield ports[at]
                at += 1


def _spread(members, ep_chain, large: bool) -> list[str]:
    """Uniform choice among members (endpoints), 1/n each.

    kube-proxy writes one `numgen random mod N vmap { i : goto ... }`.  Each
    such inline vmap is an anonymous set, and the kernel's anonymous-set
    name allocation scans every set of the table, so a full sync of 10k
    services costs O(n^2) kernel time (~1 min here).  For large clusters
    (more endpoints than options.large_cluster_endpoints, as the iptables
    renderer's large mode) the same distribution is written without sets,
    iptables-style: endpoint i is taken with probability 1/(n-i).
    """
    n = len(members)
    if not large:
        targets = " , ".join(f"{i} : goto {ep_chain(ep)}"
                             for i, ep in enumerate(members))
        return [f"numgen random mod {n} vmap {{ {targets} }}"]
    return [f"numgen random mod {n - i} 0 goto {ep_chain(ep)}"
            if i < n - 1 else f"goto {ep_chain(ep)}"
            for i, ep in enumerate(members)]


# A service's chains only jump to chains of a lower rank (and to the fixed
# ones), so writing them in this order never names a chain not yet written.
_RANK = {"endpoint": 0, "firewall": 1, "local": 2, "service": 3, "external": 4}


def targets_first(name: str) -> tuple[int, str]:
    return _RANK[name.split("-", 1)[0]], name


def service_objects(ports: Iterable[ServicePortRules], rs: RuleSet,
                    large: bool = False) -> ServiceObjects:
    """The objects of one service (all its ports), deduplicated, sorted."""
    elements: list[Element] = []
    chains: list[Chain] = []
    sets: list[AffinitySet] = []
    for sp in ports:
        _port_objects(sp, rs, large, elements, chains, sets)
    unique_chains = {c.name: c for c in chains}
    return ServiceObjects(
        elements=tuple(sorted(set(elements))),
        chains=tuple(unique_chains[n] for n in sorted(unique_chains,
                                                      key=targets_first)),
        affinity_sets=tuple(sorted(set(sets), key=lambda s: s.name)))


def plan_services(rs: RuleSet, only: frozenset[ServiceKey] | None = None,
                  large: bool | None = None
                  ) -> Iterator[tuple[ServiceKey, ServiceObjects]]:
    """Per (namespace, service), sorted, its objects; one at a time, so a
    full sync can start writing chains before the last one is planned."""
    by_service: dict[ServiceKey, list[ServicePortRules]] = {}
    for sp in rs.service_ports if only is None else _ports_of(rs, only):
        key = (sp.name.namespace, sp.name.service)
        if only is None or key in only:
            by_service.setdefault(key, []).append(sp)
    if large is None:
        large = _large(rs)
    for key, ports in sorted(by_service.items()):
        yield key, service_objects(ports, rs, large)


def plan_ruleset(rs: RuleSet,
                 only: frozenset[ServiceKey] | None = None) -> NftPlan:
    """The table for rs; with only, per-service objects of those services."""
    elements = tuple(Element(NODEPORT_IPS, ip)
                     for ip in sorted(set(rs.node.node_ips)))
    large = _large(rs)
    return NftPlan(_base_chains(rs), CONTAINERS, elements,
                   dict(plan_services(rs, only, large)), large)
