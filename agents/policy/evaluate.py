"""The expected NetworkPolicy verdict for one connection, straight from the spec.

This module is the truth table: it reads the policies as the Kubernetes
reference describes them and does not share code with compute.py, so the
rendered rules (walked by a tracer) and this evaluator check each other.

Semantics (as the NetworkPolicy reference and the upstream e2e model state):
- a pod is isolated for ingress (egress) once a policy of its namespace selects
  it with that policy type; it then accepts only what some selecting policy's
  rule allows; rules of all selecting policies add up (a union);
- a connection needs the source's egress AND the destination's ingress;
- podSelector-only peer = pods of the policy's namespace; namespaceSelector-only
  = every pod of the matching namespaces; both in one peer = AND; ipBlock =
  addresses in cidr minus except (pod IPs included);
- no peers = everyone; no ports = every port and protocol; a named port
  resolves against the destination pod's containerPorts (never on a bare IP);
- traffic between a pod and its own node, and a pod to itself, is allowed;
  a bare IP is never isolated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agents.policy.model import EGRESS, INGRESS, Cluster, Peer, Pod, Policy, PortSpec, Rule

Endpoint = Pod | str


@dataclass(frozen=True)
class Verdict:
    """allowed = egress of the source AND ingress of the destination; the
    reasons say why each side decided ("not isolated", "allowed by ns/p
    ingress rule 0", "denied: isolated by ns/p, no rule allows")."""

    allowed: bool
    egress: str
    ingress: str


def _ip(end: Endpoint) -> str | None:
    return end if isinstance(end, str) else end.ip


def _resolve(cluster: Cluster, end: Endpoint) -> Endpoint:
    """A bare IP that is an active pod's IP is that pod."""
    if isinstance(end, str):
        for pod in cluster.pods:
            if pod.active and pod.ip == end:
                return pod
    return end


def _peer_matches(cluster: Cluster, policy: Policy, peer: Peer, other: Endpoint) -> bool:
    if peer.ip_block is not None:
        ip = _ip(other)
        return bool(ip) and peer.ip_block.contains(ip)
    if isinstance(other, str) or not other.active:
        return False
    if peer.namespace_selector is None:
        if other.namespace != policy.namespace:
            return False
    elif not peer.namespace_selector.matches(cluster.namespace_labels(other.namespace)):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(other.label_map)


def _port_matches(spec: PortSpec, dst: Endpoint, port: int, protocol: str) -> bool:
    if spec.protocol != protocol:
        return False
    if isinstance(spec.port, str):
        if isinstance(dst, str):
            return False
        return dst.named_port(spec.port, protocol) == port
    return spec.matches_number(port, protocol)


def _rule_allows(cluster: Cluster, policy: Policy, rule: Rule, other: Endpoint,
                 dst: Endpoint, port: int, protocol: str) -> bool:
    if rule.peers and not any(_peer_matches(cluster, policy, p, other) for p in rule.peers):
        return False
    return not rule.ports or any(_port_matches(s, dst, port, protocol) for s in rule.ports)


def selecting_policies(cluster: Cluster, pod: Pod, direction: str) -> list[Policy]:
    """Policies of the pod's namespace that select it for this direction."""
    if not pod.active:
        return []
    found = [p for p in cluster.policies
             if p.namespace == pod.namespace and direction in p.policy_types
             and p.pod_selector.matches(pod.label_map)]
    return sorted(found, key=lambda p: p.name)


def _side(cluster: Cluster, pod: Pod, other: Endpoint, dst: Endpoint, port: int,
          protocol: str, direction: str) -> tuple[bool, str]:
    policies = selecting_policies(cluster, pod, direction)
    if not policies:
        return True, "not isolated"
    for policy in policies:
        for index, rule in enumerate(policy.rules(direction)):
            if _rule_allows(cluster, policy, rule, other, dst, port, protocol):
                return True, f"allowed by {policy.key} {direction.lower()} rule {index}"
    names = ", ".join(p.key for p in policies)
    return False, f"denied: isolated by {names}, no rule allows"


def evaluate(cluster: Cluster, src: Endpoint, dst: Endpoint, port: int,
             protocol: str = "TCP") -> Verdict:
    """May src open a connection to dst:port/protocol under the cluster's policies?"""
    src = _resolve(cluster, src)
    dst = _resolve(cluster, dst)
    if isinstance(src, Pod) and isinstance(dst, Pod) and src.key == dst.key:
        return Verdict(True, "loopback", "loopback")
    if isinstance(src, Pod) and isinstance(dst, str) and dst == cluster.node_ip(src.node):
        egress = (True, "to its own node")
    elif isinstance(src, Pod):
        egress = _side(cluster, src, dst, dst, port, protocol, EGRESS)
    else:
        egress = (True, "not a pod")
    if isinstance(dst, Pod) and isinstance(src, str) and src == cluster.node_ip(dst.node):
        ingress = (True, "from its own node")
    elif isinstance(dst, Pod):
        ingress = _side(cluster, dst, src, dst, port, protocol, INGRESS)
    else:
        ingress = (True, "not a pod")
    return Verdict(egress[0] and ingress[0], egress[1], ingress[1])


def expected_matrix(cluster: Cluster, sources: Iterable[Endpoint], targets: Iterable[Endpoint],
                    port: int, protocol: str = "TCP") -> dict[tuple[Endpoint, Endpoint], Verdict]:
    """The verdict of every (source, target) pair, as a probe matrix would show it."""
    targets = tuple(targets)
    return {(s, t): evaluate(cluster, s, t, port, protocol) for s in sources for t in targets}
