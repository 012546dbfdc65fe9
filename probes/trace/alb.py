"""The ALB's part of a trace: read what it serves, and say what it did.

`read_l7_hop` reads the lab's ALB config and the ELB agent's target health
and asks probes/trace/l7.py what the ALB decides for the traced request;
`alb_chosen` finds the target the ALB connected to in the followed legs
(the first leg that starts on the elb host: the ALB proxies, so its
connection to the target is a leg of its own); `alb_decision` is the
elb host's line in each leg's story.
"""
from __future__ import annotations

import json

from base.alb_api import FORWARD, AlbConfigError, read_alb_config
from base.errors import LabError
from probes.targets import HttpTarget
from probes.trace.flow import Leg
from probes.trace.l7 import ALB_CONFIG_FILE, ELB_STATUS_FILE, L7Hop, alb_hop, target_health
from probes.trace.report import Decision
from topo.state import LabPaths, LabState


def read_l7_hop(lab: str, dst: str, port: int, http: HttpTarget | None) -> L7Hop | None:
    """What the ALB at dst (if one is there) decides for the traced request."""
    folder = LabPaths(lab).root / "elb"
    try:
        config = read_alb_config(folder / ALB_CONFIG_FILE)
    except AlbConfigError as err:
        raise LabError(f"trace: the lab's ALB config is unreadable: {err}") from err
    if not any(dst in alb.vips for alb in config.load_balancers):
        return None
    try:
        health = target_health(json.loads((folder / ELB_STATUS_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        health = {}         # no status yet: the hop is shown without target health
    host, path = (http.host, http.path) if http else (dst, "/")
    return alb_hop(config, dst, port, host, path, health)


def alb_chosen(legs: list[Leg], state: LabState, label: dict[str, str]) -> str | None:
    """The target the ALB connected to: the first leg that starts on the elb host."""
    elb = {label.get(r.host, r.name) for r in state.hosts.values() if r.kind == "loadbalancer"}
    for leg in legs[1:]:
        if leg.request and leg.request[0].host in elb:
            return str(leg.request[0].dst)
    return None


def alb_decision(l7: L7Hop, host: str, leg: int, seen) -> Decision | None:
    """The ALB's part of a leg: the request arriving at its listener (leg 1), or
    its own connection to the target it chose (the next leg)."""
    first = seen[0]
    if first.dst.addr == l7.vip and first.dst.port == l7.port:
        summary = l7.summary()
        if l7.action == FORWARD:
            summary += " (proxy: a new connection from the ALB's ENI to a target follows)"
        return Decision(host=host, leg=leg, what="alb", summary=summary)
    target = l7.target(str(first.dst))
    if target is None:
        return None
    serving = sum(1 for t in l7.targets if t.in_service)
    return Decision(host=host, leg=leg, what="alb",
                    summary=f"target {target.name or '-'} {target.endpoint} of "
                            f"{l7.target_group} ({l7.algorithm} over {serving} in service), "
                            f"from the ENI {first.src}")
