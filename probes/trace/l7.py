"""The L7 hop of a trace through an Application Load Balancer: pure.

Before the packets, `svclab trace` says what the ALB decides for the
request: which ALB owns the address connected to, which listener takes the
port, which rule matches the Host header and path (host, path patterns,
priority, the Ingress path it comes from) and what it does: forward to a
target group (its type, algorithm and targets with their health), answer
itself (fixed response, the default rule's 404) or redirect.  The matching
is the ALB's own (agents/elb/alb/match.py), run on the config the ALB
serves (base/alb_api.py's alb.json); the target the ALB then chose is read
from the capture by the caller (`with_chosen`).

`alb_hop` and `target_health` are pure; probes/trace/probe.py reads the
files.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from agents.elb.alb.match import route, split_host
from base.alb_api import FIXED_RESPONSE, FORWARD, AlbConfig

ALB_CONFIG_FILE = "alb.json"        # in the lab's elb/ folder, as the ALB controller writes it
ELB_STATUS_FILE = "status.json"     # the ELB agent's status (applicationLoadBalancers)
NO_LISTENER = "no-listener"         # action when the ALB has no listener on the port

Health = Mapping[tuple[str, str], tuple[str, bool]]     # (group, endpoint) -> state, in service


@dataclass(frozen=True)
class AlbTarget:
    name: str                       # the node, or namespace/pod
    endpoint: str                   # address:port
    state: str | None = None        # healthy | unhealthy | initial (None: no status yet)
    in_service: bool | None = None


@dataclass(frozen=True)
class L7Hop:
    """What the ALB decides for one request."""

    alb: str
    hostname: str
    scheme: str
    vip: str
    port: int
    protocol: str                   # the listener's: HTTP | HTTPS ("" without a listener)
    host: str                       # the Host header's host, as matched
    path: str                       # the path, as matched (no query)
    action: str                     # forward | fixed-response | redirect | no-listener
    priority: int | None = None     # the rule matched (None: the listener's default rule)
    rule_hosts: tuple[str, ...] = ()
    rule_paths: tuple[str, ...] = ()
    rule_source: str = ""           # the Ingress path it comes from
    answer: str = ""                # what the ALB answers itself (fixed response, redirect)
    target_group: str = ""
    group_source: str = ""          # namespace/service:port
    target_type: str = ""
    algorithm: str = ""
    targets: tuple[AlbTarget, ...] = ()
    chosen: str | None = None       # the target the capture shows the ALB connecting to

    def target(self, endpoint: str) -> AlbTarget | None:
        return next((t for t in self.targets if t.endpoint == endpoint), None)

    def with_chosen(self, endpoint: str | None) -> L7Hop:
        return replace(self, chosen=endpoint)

    def rule_text(self) -> str:
        if self.action == NO_LISTENER:
            return f"no listener on port {self.port}"
        if self.priority is None:
            return "no rule matched: the default rule"
        conditions = []
        if self.rule_hosts:
            conditions.append("host " + " or ".join(self.rule_hosts))
        if self.rule_paths:
            conditions.append("path " + " or ".join(self.rule_paths))
        text = f"rule priority {self.priority} ({', '.join(conditions) or 'any request'})"
        return text + (f" from {self.rule_source}" if self.rule_source else "")

    def summary(self) -> str:
        """One line, for the ALB host's decision in the trace."""
        if self.action == FORWARD:
            does = f"forward to target group {self.target_group}"
        elif self.action == NO_LISTENER:
            does = "nothing listens"
        else:
            does = self.answer
        return (f"ALB {self.alb} listener {self.vip}:{self.port}/{self.protocol or '-'}: "
                f"{self.rule_text()} -> {does}")

    def lines(self) -> list[str]:
        """The readable L7 hop, shown before the packets."""
        out = [f"L7: ALB {self.alb} ({self.scheme}, {self.hostname})",
               f"  listener {self.vip}:{self.port}/{self.protocol or '-'}, request Host "
               f"{self.host or '(none)'} path {self.path}",
               f"  {self.rule_text()}"]
        if self.action != FORWARD:
            if self.action != NO_LISTENER:
                out.append(f"  -> the ALB answers itself: {self.answer}")
            return out
        source = f"{self.group_source}, " if self.group_source else ""
        out.append(f"  -> target group {self.target_group} ({source}{self.target_type}, "
                   f"{self.algorithm}):")
        if not self.targets:
            out.append("     no registered targets: the ALB answers 503")
        for t in self.targets:
            state = t.state or "unknown"
            if t.in_service is not None:
                state += ", in service" if t.in_service else ", not in service"
            mark = "  <- chosen (capture)" if t.endpoint == self.chosen else ""
            out.append(f"     {t.name or '-'} {t.endpoint} ({state}){mark}")
        if self.targets and all(t.state == "unhealthy" for t in self.targets):
            out.append("  every target is unhealthy: the ALB fails open and sends to all "
                       "of them (`svclab lb status` shows why)")
        elif self.chosen is None:
            out.append("  the capture shows no connection of the ALB to a target carrying "
                       "this request")
        if self.chosen and self.target(self.chosen) is None:
            out.append(f"  the capture shows the ALB connecting to {self.chosen}, "
                       "not a registered target")
        return out


def alb_hop(config: AlbConfig, vip: str, port: int, host_header: str | None,
            request_target: str, health: Health | None = None) -> L7Hop | None:
    """The ALB's decision for a request to vip:port (None: no ALB has that address)."""
    alb = next((a for a in config.load_balancers if vip in a.vips), None)
    if alb is None:
        return None
    host, path = split_host(host_header), urlsplit(request_target).path or "/"
    base = dict(alb=alb.name, hostname=alb.hostname, scheme=alb.scheme, vip=vip, port=port,
                host=host, path=path)
    listener = next((li for li in alb.listeners if li.port == port), None)
    if listener is None:
        return L7Hop(protocol="", action=NO_LISTENER, **base)
    match = route(listener, host, path)
    rule = match.rule
    found = dict(protocol=listener.protocol, action=match.action.type,
                 priority=rule.priority if rule else None,
                 rule_hosts=rule.hosts if rule else (), rule_paths=rule.paths if rule else (),
                 rule_source=rule.source if rule else "")
    action = match.action
    if action.type == FIXED_RESPONSE:
        return L7Hop(answer=f"fixed response {action.status_code} ({action.content_type})",
                     **base, **found)
    if action.type != FORWARD:
        to = f"{action.protocol}:{action.port or port}"
        return L7Hop(answer=f"redirect {action.status_code} to {to}", **base, **found)
    group = alb.target_group(action.target_group)
    health = health or {}
    targets = tuple(AlbTarget(t.name, t.endpoint, *health.get((group.name, t.endpoint),
                                                              (None, None)))
                    for t in group.targets)
    return L7Hop(target_group=group.name, group_source=group.source,
                 target_type=group.target_type, algorithm=group.algorithm, targets=targets,
                 **base, **found)


def target_health(status: Mapping) -> dict[tuple[str, str], tuple[str, bool]]:
    """(group, endpoint) -> (state, in service) from the ELB agent's status document."""
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    for alb in status.get("applicationLoadBalancers") or []:
        for group in alb.get("targetGroups") or []:
            for target in group.get("targets") or []:
                out[(group["name"], target["endpoint"])] = (target.get("state"),
                                                            bool(target.get("inService")))
    return out


__all__ = ["ALB_CONFIG_FILE", "AlbTarget", "L7Hop", "alb_hop", "target_health"]
