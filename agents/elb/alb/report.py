"""Pure: the ALBs of the ELB agent's status file as text, for `svclab lb status`.

One block per ALB: its name, scheme, DNS name and owner; its addresses,
listeners and response counts; per target group its health-check settings
and a row per target (state, in service, consecutive results, last check,
requests sent and failed, last transition).  The status document is what
AlbService.status() writes under `applicationLoadBalancers`.
"""
from __future__ import annotations

import datetime as dt


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["    " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in rows]


def render_alb_status(albs: list[dict]) -> str:
    out = []
    for alb in albs:
        owner = f"  ({alb['owner']})" if alb.get("owner") else ""
        out.append(f"{alb['name']}  ALB {alb['scheme']}  {alb['hostname']}{owner}")
        listeners = ", ".join(f"{l['port']}/{l['protocol']} ({l['rules']} rules)"
                              for l in alb["listeners"])
        codes = ", ".join(f"{code}: {n}" for code, n in alb["responses"].items())
        out.append(f"  VIPs {','.join(alb['vips'])}  listeners {listeners}  "
                   f"requests {alb['requests']}" + (f" ({codes})" if codes else ""))
        for listener in alb["listeners"]:
            for vip, why in listener["errors"].items():
                out.append(f"  listener {listener['port']}/{listener['protocol']} on {vip} "
                           f"is not serving: {why}")
        for group in alb["targetGroups"]:
            out += _group_lines(group)
    return "\n".join(out) + ("\n" if out else "")


def _group_lines(group: dict) -> list[str]:
    hc = group["healthCheck"]
    source = f"{group['source']}, " if group.get("source") else ""
    lines = [f"  target group {group['name']} ({source}{group['targetType']}, "
             f"{group['algorithm']})",
             f"    health check {hc['target']} every {hc['interval']:g} s, timeout "
             f"{hc['timeout']:g} s, healthy {hc['healthyThreshold']}, unhealthy "
             f"{hc['unhealthyThreshold']}, codes {hc['matcher']} (a dead target leaves "
             f"within {hc['detectionTime']:g} s)"]
    if not group["targets"]:
        return lines + ["    no registered targets: requests get 503"]
    table = [("TARGET", "ADDRESS", "STATE", "IN-SERVICE", "OK/FAIL", "LAST-CHECK", "RESULT",
              "REQUESTS", "FAILED", "LAST-TRANSITION")]
    for t in group["targets"]:
        last = t["transitions"][-1] if t["transitions"] else None
        table.append((t["name"] or "-", t["endpoint"], t["state"],
                      "yes" if t["inService"] else "no",
                      f"{t['consecutiveSuccesses']}/{t['consecutiveFailures']}",
                      _when(t["lastCheck"]), t["lastResult"] or "-", str(t["requests"]),
                      str(t["failedRequests"]),
                      f"{_when(last['at'])} -> {last['state']}" if last else "-"))
    lines += _table(table)
    if group["failingOpen"]:
        lines.append("    every target is unhealthy: the ALB fails open and sends to all")
    return lines
