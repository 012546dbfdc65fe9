"""`svclab lb status`: what the lab's ELB serves and how healthy every target is.

Reads the status file the ELB agent keeps (LabPaths(name).root/elb/status.json)
and renders one block per load balancer: hostname, VIP, flavour, listeners,
health-check settings, and a row per target with its state, the last check,
consecutive successes/failures and the last transition.  In a lab with
zones the block also has a row per zone node (its VIP, ENI, whether the DNS
name answers it, the targets it sends to) and a zone column for targets.
"""
from __future__ import annotations

import datetime as dt
import json
import time

from agents.elb.alb.report import render_alb_status
from base.errors import LabError
from labd.elb import elb_dir
from topo.state import LabPaths, read_state

STATUS_FILE = "status.json"


def status_file(lab_name: str):
    return elb_dir(LabPaths(lab_name).root) / STATUS_FILE


def lb_status(lab_name: str) -> list[dict]:
    """One dict per load balancer, as the agent reported it (targets nested)."""
    read_state(LabPaths(lab_name))          # raises LabError if the lab is not running
    path = status_file(lab_name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise LabError(f"lab {lab_name!r} has no ELB status ({path}); the ELB agent "
                       "has not started (see the lab log)") from err
    except ValueError as err:
        raise LabError(f"unreadable ELB status {path}: {err}") from err
    if data.get("configError"):
        raise LabError(f"the ELB agent rejected its config: {data['configError']}")
    if data.get("albConfigError"):
        raise LabError(f"the ELB agent rejected its ALB config: {data['albConfigError']}")
    updated = data.get("updated", 0)
    rows = data.get("loadBalancers", []) + data.get("applicationLoadBalancers", [])
    return [dict(lb, statusAge=round(time.time() - updated, 2)) for lb in rows]


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in rows]


def _zone_lines(lb: dict) -> list[str]:
    """The zone nodes of a load balancer in a lab with zones."""
    names = {t["address"]: t["node"] for t in lb["targets"]}
    table = [("ZONE", "VIP", "ENI", "IN-DNS", "CONNS", "SENDS-TO")]
    for node in lb["zoneNodes"]:
        table.append((node["zone"], node["vip"], node["eni"] or "-",
                      "yes" if node["inDns"] else "no",
                      "-" if node["connections"] is None else str(node["connections"]),
                      ",".join(names.get(a, a) for a in node["inService"]) or "-"))
    lines = [f"  cross-zone load balancing {'on' if lb['crossZone'] else 'off'}; "
             f"DNS answers {', '.join(lb['dns'])}"]
    if not any(node["healthy"] for node in lb["zoneNodes"]):
        lines.append("  no zone has a healthy target: DNS answers every zone (fails open)")
    return lines + _table(table)


def render_lb_status(rows: list[dict]) -> str:
    albs = [lb for lb in rows if lb.get("flavour") == "alb"]
    rows = [lb for lb in rows if lb.get("flavour") != "alb"]
    if not rows and not albs:
        return "No load balancers.\n"
    out = []
    for lb in rows:
        zoned = bool(lb.get("zoned"))
        listeners = ", ".join(f"{l['port']}/{l['protocol']}->{l['nodePort']}"
                              for l in lb["listeners"])
        hc = lb["healthCheck"]
        out.append(f"{lb['key']}  {lb['flavour'].upper()}  {lb['hostname']}")
        vips = "VIPs " + ",".join(n["vip"] for n in lb["zoneNodes"]) if zoned \
            else f"VIP {lb['vip']}"
        out.append(f"  {vips}  listeners {listeners}  "
                   f"sources {','.join(lb['sourceRanges'])}")
        out.append(f"  health check {hc['target']} every {hc['interval']:g} s, timeout "
                   f"{hc['timeout']:g} s, healthy {hc['healthyThreshold']}, unhealthy "
                   f"{hc['unhealthyThreshold']} (a dead target leaves within "
                   f"{hc['detectionTime']:g} s)")
        if zoned:
            out += _zone_lines(lb)
        header = ("NODE", *(("ZONE",) if zoned else ()), "ADDRESS", "STATE", "IN-SERVICE",
                  "OK/FAIL", "LAST-CHECK", "RESULT", "CONNS", "LAST-TRANSITION")
        table = [header]
        for t in lb["targets"]:
            last = t["transitions"][-1] if t["transitions"] else None
            table.append((t["node"], *((t.get("zone") or "-",) if zoned else ()),
                          t["address"], t["state"],
                          "yes" if t["inService"] else "no",
                          f"{t['consecutiveSuccesses']}/{t['consecutiveFailures']}",
                          _when(t["lastCheck"]), t["lastResult"] or "-",
                          "-" if t["connections"] is None else str(t["connections"]),
                          f"{_when(last['at'])} -> {last['state']}" if last else "-"))
        out += _table(table)
        if lb.get("failingOpen"):
            out.append("  every target is unhealthy: the NLB fails open and sends to all")
    return ("\n".join(out) + "\n" if out else "") + render_alb_status(albs)
