"""What the proxy needs to know about one ALB while it serves: its current
config, its targets' health, which targets take requests, the balancers and
the counters the status reports.

One AlbRuntime per ALB, owned by the AlbService (service.py), replaced
config and all on every reconcile except the health, balancers and counters,
which carry over.  The proxy (proxy.py) reads it on every request, so a new
rule or target applies to the next request on an open connection.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from agents.elb.alb.accesslog import elb_id, target_group_arn
from agents.elb.alb.balance import Balancer, in_service
from agents.elb.health import TargetHealth
from base.alb_api import Alb, Listener, Target, TargetGroup


@dataclass
class AlbRuntime:
    alb: Alb
    vpc_ip: str | None = None
    health: dict[tuple[str, str], TargetHealth] = field(default_factory=dict)  # (tg, ep)
    balancers: dict[tuple[str, str], Balancer] = field(default_factory=dict)   # (vip, tg)
    requests: collections.Counter = field(default_factory=collections.Counter)  # (tg, ep)
    failures: collections.Counter = field(default_factory=collections.Counter)  # (tg, ep)
    codes: collections.Counter = field(default_factory=collections.Counter)    # ELB code
    _serving: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)
    _targets: dict[tuple[str, str], Target] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.configure(self.alb)

    def configure(self, alb: Alb) -> None:
        """Take a new config of the same ALB; health and counters of targets
        that stay are kept."""
        self.alb = alb
        self.elb = elb_id(alb.name)
        self.arns = {tg.name: target_group_arn(alb.name, alb.hostname, tg.name)
                     for tg in alb.target_groups}
        self.groups = {tg.name: tg for tg in alb.target_groups}
        self.listeners = {l.port: l for l in alb.listeners}
        self._targets = {(tg.name, t.endpoint): t for tg in alb.target_groups
                         for t in tg.targets}
        self.health = {k: v for k, v in self.health.items() if k in self._targets}
        self.balancers = {k: b for k, b in self.balancers.items()
                          if k[1] in self.groups and b.algorithm == self.groups[k[1]].algorithm}
        self.sources = {node.vip: node.eni or self.vpc_ip for node in alb.nodes}
        self._serving.clear()

    def listener(self, port: int) -> Listener | None:
        return self.listeners.get(port)

    def group(self, name: str) -> TargetGroup:
        return self.groups[name]

    def target(self, group: str, endpoint: str) -> Target:
        return self._targets[(group, endpoint)]

    def serving(self, group: str) -> tuple[tuple[str, ...], bool]:
        """(endpoints taking requests, failing open?) for a target group."""
        known = self._serving.get(group)
        if known is None:
            tg = self.groups[group]
            states = {t.endpoint: self.health[(group, t.endpoint)].state
                      for t in tg.targets if (group, t.endpoint) in self.health}
            known = self._serving[group] = in_service(tg.targets, states)
        return known

    def set_health(self, group: str, endpoint: str, health: TargetHealth) -> bool:
        """Record a check's outcome; True when the target's state changed."""
        before = self.health.get((group, endpoint))
        self.health[(group, endpoint)] = health
        changed = before is None or before.state != health.state
        if changed:
            self._serving.pop(group, None)
        return changed

    def balancer(self, vip: str, group: str) -> Balancer:
        found = self.balancers.get((vip, group))
        if found is None:
            found = self.balancers[(vip, group)] = Balancer(self.groups[group].algorithm)
        return found

    def source(self, vip: str) -> str | None:
        """The address the ALB node at this VIP connects to targets from."""
        return self.sources.get(vip, self.vpc_ip)

    def check_source(self, target: Target) -> str | None:
        """A target is health-checked from the ENI in its own zone."""
        for node in self.alb.zone_nodes:
            if node.zone == target.zone and node.eni:
                return node.eni
        return self.vpc_ip
