"""What the ELB reports: per load balancer its name, VIP(s), listeners, its
zone nodes and every target's health, as a JSON document the agent writes,
the cloud controller reads (DNS failover) and `svclab lb status` renders.
Also the pure rules of which targets get traffic from which node."""
from __future__ import annotations

from dataclasses import asdict

from agents.elb.health import HEALTHY, UNHEALTHY, TargetHealth
from base.elb_api import NLB, LoadBalancer, ZoneNode, dns_answer

STATUS_VERSION = 1
Health = dict[str, TargetHealth]


def _healthy(health: Health, address: str) -> bool:
    known = health.get(address)
    return known is not None and known.state == HEALTHY


def node_in_service(lb: LoadBalancer, node: ZoneNode, health: Health) -> tuple[str, ...]:
    """Addresses this node sends new flows to: its healthy targets (its own
    zone's, or every zone's with cross-zone load balancing).

    When every target of an NLB is unhealthy it fails open (AWS: "if all
    targets fail health checks, the load balancer routes to all of them"):
    each node then sends to all the targets it may send to.  A Classic ELB
    sends nothing then.  Targets still in their initial checks get nothing.
    """
    scope = lb.targets_for(node)
    healthy = tuple(sorted(t.address for t in scope if _healthy(health, t.address)))
    if healthy or lb.flavour != NLB or not lb.targets:
        return healthy
    if all(health.get(t.address) and health[t.address].state == UNHEALTHY
           for t in lb.targets):
        return tuple(sorted(t.address for t in scope))
    return ()


def nodes_in_service(lb: LoadBalancer, health: Health) -> dict[str, tuple[str, ...]]:
    """VIP -> the addresses that node sends to."""
    return {node.vip: node_in_service(lb, node, health) for node in lb.nodes}


def targets_in_service(lb: LoadBalancer, health: Health) -> tuple[str, ...]:
    """Every address some node of the load balancer sends to."""
    return tuple(sorted({a for addresses in nodes_in_service(lb, health).values()
                         for a in addresses}))


def healthy_nodes(lb: LoadBalancer, health: Health) -> frozenset[str]:
    """VIPs of the nodes with at least one healthy target to send to (in DNS)."""
    return frozenset(node.vip for node in lb.nodes
                     if any(_healthy(health, t.address) for t in lb.targets_for(node)))


def lb_status(lb: LoadBalancer, health: Health, in_service: tuple[str, ...],
              sent: dict[str, int], failed: dict[str, int],
              node_sent: dict[str, dict[str, int]] | None = None,
              serving: dict[str, tuple[str, ...]] | None = None,
              nlb_counted: bool = False) -> dict:
    """The status document of one load balancer.  serving: VIP -> the
    addresses that node sends to (computed from health when not given);
    sent, node_sent: connections per target (and per node VIP) that the
    Classic listeners made, or (nlb_counted) the NLB's DNAT rules counted."""
    counted = lb.flavour != NLB or nlb_counted
    hc = lb.health_check
    targets = []
    for target in lb.targets:
        known = health.get(target.address) or TargetHealth(target.node, target.address)
        targets.append({
            "node": target.node, "address": target.address, "zone": target.zone,
            "state": known.state,
            "inService": target.address in in_service,
            "lastCheck": known.last_check, "lastResult": known.last_result,
            "consecutiveSuccesses": known.successes, "consecutiveFailures": known.failures,
            "checks": known.checks,
            "transitions": [asdict(t) for t in known.transitions],
            # the Classic proxy counts connections; NLB flows the DNAT rules' counters
            "connections": sent.get(target.address, 0) if counted else None,
            "failedConnections": failed.get(target.address, 0) if lb.flavour != NLB else None})
    healthy = healthy_nodes(lb, health)
    in_dns = dns_answer(lb, healthy)
    node_sent = node_sent or {}
    serving = serving if serving is not None else nodes_in_service(lb, health)
    nodes = [{"zone": node.zone, "vip": node.vip, "eni": node.eni,
              "healthy": node.vip in healthy, "inDns": node.vip in in_dns,
              "inService": list(serving.get(node.vip, ())),
              "connections": sum(node_sent.get(node.vip, {}).values()) if counted else None,
              "sent": node_sent.get(node.vip, {}) if counted else None}
             for node in lb.nodes]
    return {"key": lb.key, "uid": lb.uid, "hostname": lb.hostname, "vip": lb.vip,
            "flavour": lb.flavour, "crossZone": lb.cross_zone,
            "zoned": bool(lb.zone_nodes), "zoneNodes": nodes, "dns": list(in_dns),
            "listeners": [{"port": l.port, "protocol": l.protocol, "nodePort": l.node_port}
                          for l in lb.listeners],
            "healthCheck": {"target": f"{hc.protocol}:{hc.port}"
                                      + (hc.path if hc.protocol == "HTTP" else ""),
                            "interval": hc.interval, "timeout": hc.timeout,
                            "healthyThreshold": hc.healthy_threshold,
                            "unhealthyThreshold": hc.unhealthy_threshold,
                            "detectionTime": hc.detection_time},
            "sourceRanges": list(lb.source_ranges),
            "inService": list(in_service),
            "failingOpen": bool(in_service) and all(
                health.get(a) is not None and health[a].state == UNHEALTHY for a in in_service),
            "noTargetConnections": failed.get("-", 0),
            "targets": targets}
