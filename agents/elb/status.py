"""What the ELB reports: per load balancer its name, VIP, listeners and every
target's health, as a JSON document the agent writes and `svclab lb status`
reads.  Also the pure rule of which targets get traffic."""
from __future__ import annotations

from dataclasses import asdict

from agents.elb.health import HEALTHY, UNHEALTHY, TargetHealth
from base.elb_api import NLB, LoadBalancer

STATUS_VERSION = 1


def targets_in_service(lb: LoadBalancer, health: dict[str, TargetHealth]) -> tuple[str, ...]:
    """Addresses that receive new flows: the healthy targets.

    An NLB whose targets are all unhealthy fails open (AWS: "if all targets
    fail health checks, the load balancer routes to all of them"); a Classic
    ELB sends nothing then.  Targets still in their initial checks get nothing.
    """
    healthy = tuple(sorted(t.address for t in lb.targets
                           if health.get(t.address) and health[t.address].state == HEALTHY))
    if healthy or lb.flavour != NLB or not lb.targets:
        return healthy
    if all(health.get(t.address) and health[t.address].state == UNHEALTHY
           for t in lb.targets):
        return tuple(sorted(t.address for t in lb.targets))
    return ()


def lb_status(lb: LoadBalancer, health: dict[str, TargetHealth], in_service: tuple[str, ...],
              sent: dict[str, int], failed: dict[str, int]) -> dict:
    hc = lb.health_check
    targets = []
    for target in lb.targets:
        known = health.get(target.address) or TargetHealth(target.node, target.address)
        targets.append({
            "node": target.node, "address": target.address, "state": known.state,
            "inService": target.address in in_service,
            "lastCheck": known.last_check, "lastResult": known.last_result,
            "consecutiveSuccesses": known.successes, "consecutiveFailures": known.failures,
            "checks": known.checks,
            "transitions": [asdict(t) for t in known.transitions],
            # the Classic proxy counts connections; NLB flows are DNATed by the kernel
            "connections": sent.get(target.address, 0) if lb.flavour != NLB else None,
            "failedConnections": failed.get(target.address, 0) if lb.flavour != NLB else None})
    return {"key": lb.key, "uid": lb.uid, "hostname": lb.hostname, "vip": lb.vip,
            "flavour": lb.flavour,
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
