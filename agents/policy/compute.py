"""Per-node NetworkPolicy rules as plain data, Calico-style.

compute_node_rules() is pure: from the cluster's pods, namespaces and policies
it derives, for one node, every local workload (its cali iface, IP, whether it
is isolated for ingress/egress and which policy chains apply, in order) and
the policy chains themselves, shared by every local pod a policy selects.
A policy chain is a list of allow rules; each names the policy and the rule
index, and matches the remote address set (pod IPs resolved from selectors,
ipBlock cidr minus except), the protocol and the ports.  Named ports resolve
against the local pod for ingress (the rule then also matches that pod's IP)
and against each peer pod for egress.

Cost: pods are indexed by namespace once, and each selector is resolved once
per (selector, namespace) however many policies repeat it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections import defaultdict
from dataclasses import dataclass

from agents.policy.model import (
    EGRESS,
    INGRESS,
    Cluster,
    Peer,
    Pod,
    Policy,
    PortSpec,
    Rule,
    Selector,
)

ALLOW_MARK = 0x10000
PortRange = tuple[int, int]


@dataclass(frozen=True)
class AllowRule:
    """One allow entry of a policy chain (all fields must match).

    protocol None = any protocol; ports () = any port; remote None = any
    address (the source for ingress, the destination for egress); local None
    = any local pod the chain is used for (else only these pod IPs).
    """

    policy: str
    direction: str
    index: int
    protocol: str | None = None
    ports: tuple[PortRange, ...] = ()
    remote: tuple[str, ...] | None = None
    local: tuple[str, ...] | None = None

    @property
    def comment(self) -> str:
        return f"{self.policy} {self.direction.lower()} rule {self.index}"


@dataclass(frozen=True)
class PolicyChain:
    name: str            # cali-pi-<12 hex> (ingress) or cali-po-<12 hex> (egress)
    policy: str          # namespace/name
    direction: str
    rules: tuple[AllowRule, ...]


@dataclass(frozen=True)
class Workload:
    """A local pod: None for a direction = not isolated (allow all)."""

    namespace: str
    name: str
    iface: str
    ip: str
    ingress: tuple[str, ...] | None     # policy chain names, in order
    egress: tuple[str, ...] | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def from_chain(self) -> str:        # egress of the pod (packets from it)
        return f"cali-fw-{self.iface}"

    @property
    def to_chain(self) -> str:          # ingress of the pod (packets to it)
        return f"cali-tw-{self.iface}"


@dataclass(frozen=True)
class NodeRules:
    node: str
    workloads: tuple[Workload, ...]
    chains: tuple[PolicyChain, ...]

    def counts(self) -> dict[str, int]:
        return {
            "workloads": len(self.workloads),
            "isolated_ingress": sum(w.ingress is not None for w in self.workloads),
            "isolated_egress": sum(w.egress is not None for w in self.workloads),
            "policy_chains": len(self.chains),
            "allow_rules": sum(len(c.rules) for c in self.chains),
        }

    def enforced(self) -> NodeRules:
        """What the renderers write: the chains and the workloads isolated in some
        direction (a pod isolated in neither has no rule of its own)."""
        return NodeRules(self.node, tuple(w for w in self.workloads
                                          if w.ingress is not None or w.egress is not None),
                         self.chains)

    def chain(self, name: str) -> PolicyChain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)


def policy_chain_name(policy: Policy, direction: str) -> str:
    digest = hashlib.sha1(f"{policy.key}|{direction}".encode()).hexdigest()[:12]
    return ("cali-pi-" if direction == INGRESS else "cali-po-") + digest


def _collapse(cidrs: list[str]) -> tuple[str, ...]:
    """The fewest CIDRs covering exactly the union of cidrs (integer
    arithmetic: ipaddress.collapse_addresses is ~20x slower here)."""
    spans = []
    for cidr in cidrs:
        addr, _, plen = cidr.partition("/")
        size = 1 << (32 - int(plen or 32))
        start = int.from_bytes(socket.inet_aton(addr), "big") & ~(size - 1)
        spans.append((start, start + size - 1))
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        while lo <= hi:
            bits = (lo & -lo).bit_length() - 1 if lo else 32
            while lo + (1 << bits) - 1 > hi:
                bits -= 1
            out.append(f"{socket.inet_ntoa(lo.to_bytes(4, 'big'))}/{32 - bits}")
            lo += 1 << bits
    return tuple(out)


def _block_cidrs(cidr: str, excepts: tuple[str, ...]) -> list[str]:
    nets = [ipaddress.ip_network(cidr)]
    for e in excepts:
        ex = ipaddress.ip_network(e)
        nxt = []
        for n in nets:
            if ex.subnet_of(n):
                nxt.extend(n.address_exclude(ex))
            elif not n.subnet_of(ex):
                nxt.append(n)
        nets = nxt
    return [str(n) for n in nets]


class _Index:
    """Active pods by namespace; selector results memoised."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.by_ns: dict[str, list[Pod]] = defaultdict(list)
        for pod in cluster.pods:
            if pod.active:
                self.by_ns[pod.namespace].append(pod)
        self._pods: dict[tuple, tuple[Pod, ...]] = {}
        self._ns: dict[Selector, tuple[str, ...]] = {}
        self._all: tuple[Pod, ...] | None = None

    def namespaces(self, selector: Selector) -> tuple[str, ...]:
        if selector not in self._ns:
            self._ns[selector] = tuple(
                ns for ns in sorted(self.by_ns)
                if selector.matches(self.cluster.namespace_labels(ns)))
        return self._ns[selector]

    def peer_pods(self, policy_ns: str, peer: Peer) -> tuple[Pod, ...]:
        key = (policy_ns if peer.namespace_selector is None else None,
               peer.namespace_selector, peer.pod_selector)
        if key not in self._pods:
            spaces = ((policy_ns,) if peer.namespace_selector is None
                      else self.namespaces(peer.namespace_selector))
            sel = peer.pod_selector
            self._pods[key] = tuple(p for ns in spaces for p in self.by_ns.get(ns, ())
                                    if sel is None or sel.matches(p.label_map))
        return self._pods[key]

    def all_pods(self) -> tuple[Pod, ...]:
        if self._all is None:
            self._all = tuple(p for ns in sorted(self.by_ns) for p in self.by_ns[ns])
        return self._all


def _numeric_groups(specs: list[PortSpec]) -> list[tuple[str, tuple[PortRange, ...]]]:
    """Numeric port specs grouped by protocol; () = every port of it."""
    by_proto: dict[str, list[PortRange] | None] = {}
    for s in specs:
        if s.port is None:
            by_proto[s.protocol] = None
        elif by_proto.get(s.protocol, []) is not None:
            high = s.end_port if s.end_port is not None else s.port
            by_proto.setdefault(s.protocol, []).append((s.port, high))
    out = []
    for proto in sorted(by_proto):
        ranges = by_proto[proto]
        out.append((proto, () if ranges is None else _merge(ranges)))
    return out


def _merge(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def _chain_rules(index: _Index, policy: Policy, direction: str,
                 local_pods: list[Pod]) -> tuple[AllowRule, ...]:
    out: list[AllowRule] = []
    for i, rule in enumerate(policy.rules(direction)):
        base = AllowRule(policy.key, direction, i)
        peer_pods: list[Pod] = []
        cidrs: list[str] = []
        for peer in rule.peers:
            if peer.ip_block is not None:
                cidrs.extend(_block_cidrs(peer.ip_block.cidr, peer.ip_block.excepts))
            else:
                peer_pods.extend(index.peer_pods(policy.namespace, peer))
        remote = (None if not rule.peers
                  else _collapse(cidrs + [f"{p.ip}/32" for p in peer_pods]))
        if remote == ():
            continue                           # peers that match nobody allow nothing
        if not rule.ports:
            out.append(AllowRule(policy.key, direction, i, remote=remote))
            continue
        numeric = [s for s in rule.ports if not isinstance(s.port, str)]
        for proto, ranges in _numeric_groups(numeric):
            out.append(AllowRule(policy.key, direction, i, proto, ranges, remote))
        named = [s for s in rule.ports if isinstance(s.port, str)]
        if named and direction == INGRESS:
            out.extend(_named_ingress(base, named, remote, local_pods))
        elif named:
            out.extend(_named_egress(base, named, _named_targets(index, rule, peer_pods)))
    return tuple(out)


def _named_targets(index: _Index, rule: Rule, peer_pods: list[Pod]) -> list[Pod]:
    """The pods an egress named port may resolve on: the selected peers and
    the pods inside an ipBlock peer (a bare IP has no named ports)."""
    if not rule.peers:
        return list(index.all_pods())
    blocks = [p.ip_block for p in rule.peers if p.ip_block is not None]
    inside = [p for p in index.all_pods() if any(b.contains(str(p.ip)) for b in blocks)]
    return list({p.key: p for p in peer_pods + inside}.values())


def _named_ingress(base: AllowRule, specs: list[PortSpec], remote: tuple[str, ...] | None,
                   local_pods: list[Pod]) -> list[AllowRule]:
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for pod in local_pods:
        for s in specs:
            number = pod.named_port(str(s.port), s.protocol)
            if number is not None:
                groups[(s.protocol, number)].append(pod.ip)
    return [AllowRule(base.policy, base.direction, base.index, proto, ((n, n),), remote,
                      tuple(sorted(set(ips))))
            for (proto, n), ips in sorted(groups.items())]


def _named_egress(base: AllowRule, specs: list[PortSpec], targets: list[Pod]) -> list[AllowRule]:
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for pod in targets:
        for s in specs:
            number = pod.named_port(str(s.port), s.protocol)
            if number is not None:
                groups[(s.protocol, number)].append(f"{pod.ip}/32")
    return [AllowRule(base.policy, base.direction, base.index, proto, ((n, n),),
                      _collapse(ips))
            for (proto, n), ips in sorted(groups.items())]


def compute_node_rules(cluster: Cluster, node: str) -> NodeRules:
    """Every local workload's isolation and the policy chains they use."""
    index = _Index(cluster)
    local = sorted((p for p in cluster.pods if p.active and p.node == node),
                   key=lambda p: p.key)
    policies_by_ns: dict[str, list[Policy]] = defaultdict(list)
    for pol in sorted(cluster.policies, key=lambda p: p.key):
        policies_by_ns[pol.namespace].append(pol)
    selected: dict[tuple[str, str], list[Pod]] = defaultdict(list)  # (policy key, dir) -> pods
    per_pod: dict[str, dict[str, list[Policy]]] = {}
    for pod in local:
        labels = pod.label_map
        chosen = [p for p in policies_by_ns.get(pod.namespace, ())
                  if p.pod_selector.matches(labels)]
        per_pod[pod.key] = {d: [p for p in chosen if d in p.policy_types]
                            for d in (INGRESS, EGRESS)}
        for d in (INGRESS, EGRESS):
            for p in per_pod[pod.key][d]:
                selected[(p.key, d)].append(pod)
    chains: dict[tuple[str, str], PolicyChain] = {}
    for pol in (p for ps in policies_by_ns.values() for p in ps):
        for d in (INGRESS, EGRESS):
            if (pol.key, d) in selected:
                chains[(pol.key, d)] = PolicyChain(
                    policy_chain_name(pol, d), pol.key, d,
                    _chain_rules(index, pol, d, selected[(pol.key, d)]))
    workloads = []
    for pod in local:
        names = {d: tuple(chains[(p.key, d)].name for p in per_pod[pod.key][d]) or None
                 for d in (INGRESS, EGRESS)}
        workloads.append(Workload(pod.namespace, pod.name, pod.iface, str(pod.ip),
                                  names[INGRESS], names[EGRESS]))
    return NodeRules(node, tuple(workloads), tuple(chains.values()))
