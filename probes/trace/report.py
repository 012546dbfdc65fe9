"""What `svclab trace` reports: the Trace record, its JSON and its readable form.

A Trace holds, per leg of the traced connection, the request packet's and
the reply packet's sightings in capture order (probes/trace/flow.py), and
per host that decided something a Decision: the chains kube-proxy's rules
walked (and the conntrack entry that confirms it), the topology rule that
chose the endpoints ("zone hints: 2 of 5 endpoints for us-east-1a"), the
NetworkPolicy rule that allowed the packet or the pod chain that dropped
it, the igw's 1:1 NAT rule, the ELB listener.  `steps()` folds the
sightings into the seed's numbered story: "1) client -> 198.51.100.11:31326
2) igw: DNAT to ...".  Through an ALB the L7 hop (probes/trace/l7.py: the
rule matched, the target group, the target chosen) comes first, and the
answer says which X-Forwarded-For the pod got.  Pure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from probes.trace.flow import Leg, Sighting
from probes.trace.l7 import L7Hop


@dataclass(frozen=True)
class Decision:
    """Why a host did what the capture shows to a leg's request packet."""

    host: str
    leg: int
    what: str                       # kube-proxy (iptables) | igw 1:1 NAT | elb listener ...
    summary: str                    # chains and effect, one line
    chains: tuple[str, ...] = ()
    verdict: str | None = None
    dnat: str | None = None
    masquerade: bool | None = None
    probability: float | None = None
    matches_capture: bool = True
    rule: str | None = None
    conntrack: str | None = None
    policy: tuple[str, ...] = ()    # NetworkPolicy: the rule that allowed, the chain that dropped
    topology: str | None = None     # the topology rule that chose the endpoints (kube-proxy)


@dataclass(frozen=True)
class Trace:
    lab: str
    source: str
    target: str                     # what the user asked for
    proto: str
    dst: str                        # the address:port the source connected to
    local: str                      # the source socket's address:port
    outcome: str                    # open | refused | rejected | dropped | error
    answer: dict | None             # the workload server's JSON (TCP) or reply text (UDP)
    legs: tuple[Leg, ...]
    decisions: tuple[Decision, ...] = ()
    captured_on: tuple[str, ...] = ()
    pcaps: str | None = None
    notes: tuple[str, ...] = field(default=())
    l7: L7Hop | None = None         # what the ALB decided (target an ALB)
    url: str | None = None          # an HTTP target: the URL asked ...
    host_header: str | None = None  # ... and the Host header sent

    def decision(self, leg: int, host: str) -> Decision | None:
        for decision in self.decisions:
            if decision.leg == leg and decision.host == host:
                return decision
        return None

    def to_json(self) -> dict:
        data = asdict(self)
        data["steps"] = [line for leg in self.legs for line in self.steps(leg)]
        return data

    # -- the readable story ----------------------------------------------------

    def steps(self, leg: Leg) -> list[str]:
        lines = []
        for number, (host, group) in enumerate(_groups(leg.request), start=1):
            lines.append(f"{number}) {self._request_step(leg, host, group, number == 1)}")
        base = len(lines)
        for number, (host, group) in enumerate(_groups(leg.reply), start=base + 1):
            lines.append(f"{number}) reply {self._reply_step(host, group, number == base + 1)}")
        return lines

    def _request_step(self, leg: Leg, host: str, group: list[Sighting], first: bool) -> str:
        decision = self.decision(leg.index, host)
        changes = [c for s in group for c in s.changes]
        ins = [s.interface for s in group if s.direction == "in"]
        outs = [s.interface for s in group if s.direction == "out"]
        head = group[0]
        if first and host == self.source and leg.index == 0:
            text = f"{host} -> {self.dst}" + (
                f" (sent as {head.src} -> {head.dst} after local NAT)" if changes else
                f" (from {head.src})")
        elif changes:
            text = f"{host}: {_effect(changes, decision)}"
        elif first and outs and not ins:        # a proxy's own connection (ELB, ALB)
            text = f"{host}: opens {head.src} -> {head.dst} out of {','.join(outs)}"
        elif outs:
            text = f"{host}: forwards {','.join(ins) or '?'} -> {','.join(outs)}"
        elif decision is not None and decision.verdict in ("DROP", "REJECT"):
            text = f"{host}: {decision.verdict} of {head.src} -> {head.dst} (in on {','.join(ins)})"
        else:
            text = f"{host}: receives {head.src} -> {head.dst} on {','.join(ins)}"
        if decision is not None and decision.summary:
            text += f"  [{decision.what}: {decision.summary}]"
            if decision.topology:
                text += f"  topology: {decision.topology}"
            if decision.conntrack:
                text += f"  conntrack: {decision.conntrack}"
        return text

    def _reply_step(self, host: str, group: list[Sighting], first: bool) -> str:
        changes = [c for s in group for c in s.changes]
        head, last = group[0], group[-1]
        if first:
            return f"{host}: {head.kind} {head.src} -> {head.dst}"
        if changes:
            return f"{host}: conntrack reverses the NAT ({'; '.join(changes)})"
        if any(s.direction == "out" for s in group):
            return f"{host}: forwards"
        return f"{host}: receives {last.src} -> {last.dst}"

    def describe(self) -> str:
        lines = [f"trace {self.source} -> {self.target} ({self.dst}/{self.proto}"
                 + (f", Host {self.host_header}" if self.host_header else "")
                 + f"): {self.outcome}{self._answer_text()}"]
        if self.l7 is not None:
            lines += self.l7.lines()
            if self.legs:
                lines.append("L3/L4:")
        if not self.legs:
            lines.append("  no packet of this connection was captured")
        for leg in self.legs:
            if len(self.legs) > 1:
                lines.append(f"connection {leg.index + 1} of {len(self.legs)}:")
            lines += [f"  {line}" for line in self.steps(leg)]
        for leg in self.legs:
            for title, path in (("request", leg.request), ("reply", leg.reply)):
                if not path:
                    continue
                lines.append(f"{title} packet ({path[0].kind}) as captured, leg {leg.index + 1}:")
                lines += [f"  {_sighting_line(i, s)}" for i, s in enumerate(path, start=1)]
        for decision in self.decisions:
            if not decision.matches_capture:
                lines.append(f"note: {decision.host}: the rules walked do not fully match "
                             f"the capture ({decision.summary})")
        lines += [f"note: {n}" for n in self.notes]
        if self.pcaps:
            lines.append(f"pcaps: {self.pcaps}")
        return "\n".join(lines) + "\n"

    def _answer_text(self) -> str:
        if not self.answer:
            return ""
        if isinstance(self.answer, dict) and "pod" in self.answer:
            forwarded = self.answer.get("forwardedFor")
            return (f", answered by {self.answer['pod']} ({self.answer.get('podIP')}), "
                    f"which saw the client as {self.answer.get('client')}"
                    + (f" and X-Forwarded-For {forwarded}" if forwarded else ""))
        raw = self.answer.get("raw", "") if isinstance(self.answer, dict) else ""
        if raw.startswith("HTTP/"):         # an answer that is not a pod's JSON (ALB 404 ...)
            head = raw.split("\r\n\r\n", 1)[0].split("\r\n")
            server = next((line.split(":", 1)[1].strip() for line in head[1:]
                           if line.lower().startswith("server:")), None)
            return f", answered {head[0]}" + (f" by {server}" if server else "")
        return f", reply {self.answer!r}"


def _groups(path) -> list[tuple[str, list[Sighting]]]:
    groups: list[tuple[str, list[Sighting]]] = []
    for sighting in path:
        if groups and groups[-1][0] == sighting.host:
            groups[-1][1].append(sighting)
        else:
            groups.append((sighting.host, [sighting]))
    return groups


def _effect(changes: list[str], decision: Decision | None) -> str:
    parts = []
    for change in changes:
        side, _, rest = change.partition(" ")
        to = rest.split(" -> ")[-1]
        if side == "dst":
            parts.append(f"DNAT to {to}")
        elif decision is not None and decision.masquerade:
            parts.append(f"masquerade (SNAT) to {to}")
        else:
            parts.append(f"SNAT to {to}")
    return ", ".join(parts)


def _sighting_line(number: int, s: Sighting) -> str:
    where = f"{s.host} {s.interface} {s.direction}"
    text = f"{number:>2}  {where:<36} {str(s.src):>21} -> {str(s.dst):<21}"
    if s.changes:
        text += "  " + "; ".join(s.changes)
    return text


__all__ = ["Decision", "Trace"]
