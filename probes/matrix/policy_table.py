"""The NetworkPolicy truth table: which cells to probe, what each should show, the table.

`svclab probe matrix --policy` probes every (source pod, destination pod,
port) of some namespaces and compares what got through with what
agents.policy.evaluate says the policies allow.  This module is the pure
part: choosing the pods and ports, planning the cells with their expected
verdicts and the evaluator's reasons, reading a probe's outcome as allowed
or denied, and rendering the result the way cyclonus prints it (rows are
sources, columns destinations, `.` allowed, `X` denied, a `!` after the
observed verdict where it differs from the expected one).  No I/O.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agents.policy.evaluate import evaluate
from agents.policy.model import Cluster, Pod
from base.errors import UsageError

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
PROBED_PROTOCOLS = ("TCP", "UDP")
ALLOWED, DENIED = ".", "X"
WIDE_LABELS = 8          # column titles longer than this: number the columns instead


@dataclass(frozen=True)
class PlannedCell:
    """One connection to make and what the policies say about it."""

    source: Pod
    target: Pod
    port: int
    protocol: str               # TCP | UDP
    allowed: bool
    egress: str                 # the evaluator's reasons, per direction
    ingress: str


@dataclass(frozen=True)
class PolicyCell:
    """A planned cell and what the probe saw."""

    source: str                 # ns/pod
    target: str
    dst: str
    port: int
    protocol: str
    expected: bool              # allowed?
    egress: str
    ingress: str
    outcome: str                # the probe's: open | refused | rejected | dropped
    observed: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.expected == self.observed

    def to_json(self) -> dict:
        return {"source": self.source, "target": self.target, "dst": self.dst,
                "port": self.port, "protocol": self.protocol,
                "expected": verdict_word(self.expected), "observed": verdict_word(self.observed),
                "outcome": self.outcome, "agree": self.ok,
                "reasons": {"egress": self.egress, "ingress": self.ingress},
                "detail": self.detail}


def verdict_word(allowed: bool) -> str:
    return "allowed" if allowed else "denied"


def pod_label(pod: Pod) -> str:
    return f"{pod.namespace}/{pod.name}"


# --- choosing pods and ports ----------------------------------------------------

def parse_port(text: str) -> tuple[int, str]:
    """`80`, `80/TCP`, `53/udp` -> (80, "TCP"); UsageError otherwise."""
    number, _, protocol = text.strip().partition("/")
    protocol = (protocol or "TCP").upper()
    if protocol not in PROBED_PROTOCOLS:
        raise UsageError(f"--port {text!r}: protocol must be TCP or UDP")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise UsageError(f"--port {text!r}: not PORT[/TCP|/UDP] with a port 1-65535")
    return int(number), protocol


def select_pods(pods: Iterable[Pod], namespaces: Sequence[str] | None = None,
                all_namespaces: bool = False) -> list[Pod]:
    """Running pods with an IP of their own in the chosen namespaces, sorted.

    No namespaces and not all_namespaces: every namespace but the system ones."""
    chosen = []
    for pod in pods:
        if not pod.active or pod.phase != "Running":
            continue
        if all_namespaces:
            wanted = True
        elif namespaces:
            wanted = pod.namespace in namespaces
        else:
            wanted = pod.namespace not in SYSTEM_NAMESPACES
        if wanted:
            chosen.append(pod)
    return sorted(chosen, key=lambda p: (p.namespace, p.name))


def ports_of(target: Pod, ports: Sequence[tuple[int, str]] | None) -> list[tuple[int, str]]:
    """The ports to probe on target: the given ones, else its containerPorts (TCP/UDP)."""
    if ports:
        return list(dict.fromkeys(ports))
    found = [(number, proto) for _, number, proto in target.ports if proto in PROBED_PROTOCOLS]
    return sorted(set(found), key=lambda p: (p[1], p[0]))


def plan_policy_cells(cluster: Cluster, sources: Sequence[Pod], targets: Sequence[Pod],
                      ports: Sequence[tuple[int, str]] | None = None) -> list[PlannedCell]:
    """Every (source, target, port) cell with its expected verdict, in a stable order."""
    cells = []
    for source in sources:
        for target in targets:
            for port, protocol in ports_of(target, ports):
                verdict = evaluate(cluster, source, target, port, protocol)
                cells.append(PlannedCell(source, target, port, protocol, verdict.allowed,
                                         verdict.egress, verdict.ingress))
    return cells


def observed_allowed(outcome: str, responder: str | None, dst: str,
                     icmp_code: int | None = None) -> bool:
    """Did the connection reach the destination pod?

    A SYN-ACK or a UDP answer, a RST (the pod's kernel: nothing listens) and
    an ICMP port-unreachable sent by the pod itself all mean the packet got
    there; silence (what a policy DROP gives) or an ICMP error from anywhere
    else means it did not."""
    if outcome in ("open", "refused"):
        return True
    return outcome == "rejected" and icmp_code == 3 and responder == dst


# --- the table ------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyMatrix:
    """Every probed cell; renders as truth tables, one per port."""

    lab: str
    namespaces: tuple[str, ...]
    pods: tuple[str, ...]                  # ns/pod, the rows (sources) in this order
    cells: tuple[PolicyCell, ...]
    seconds: float = 0.0
    targets: tuple[str, ...] = ()          # the columns, when not the same pods

    @property
    def columns(self) -> tuple[str, ...]:
        return self.targets or self.pods

    @property
    def agree(self) -> int:
        return sum(1 for c in self.cells if c.ok)

    @property
    def ok(self) -> bool:
        return self.agree == len(self.cells)

    @property
    def disagreeing(self) -> tuple[PolicyCell, ...]:
        return tuple(c for c in self.cells if not c.ok)

    def summary_line(self) -> str:
        return f"{self.agree} of {len(self.cells)} cells agree"

    def to_json(self) -> dict:
        return {"lab": self.lab, "namespaces": list(self.namespaces), "pods": list(self.pods),
                "targets": list(self.columns),
                "ok": self.ok, "agree": self.agree, "total": len(self.cells),
                "seconds": round(self.seconds, 3),
                "cells": [c.to_json() for c in self.cells]}

    def render(self) -> str:
        lines = []
        for port, protocol in port_groups(self.cells):
            group = [c for c in self.cells if (c.port, c.protocol) == (port, protocol)]
            lines += render_table(f"{port}/{protocol}", self.pods, group, self.columns)
            lines.append("")
        lines.append("legend: . allowed   X denied   - not probed   "
                     "!: observed differs from expected (the cell shows what was observed)")
        lines.append(self.summary_line()
                     + (f" ({len(self.pods)} pods, {self.seconds:.1f} s)" if self.seconds else ""))
        for cell in self.disagreeing:
            lines.append(f"! {cell.source} -> {cell.target} {cell.port}/{cell.protocol}: "
                         f"observed {verdict_word(cell.observed)} ({cell.outcome}), expected "
                         f"{verdict_word(cell.expected)}: egress {cell.egress}; "
                         f"ingress {cell.ingress}")
        return "\n".join(lines) + "\n"


def port_groups(cells: Iterable[PolicyCell]) -> list[tuple[int, str]]:
    return sorted({(c.port, c.protocol) for c in cells}, key=lambda p: (p[1], p[0]))


def cell_mark(cell: PolicyCell | None) -> str:
    if cell is None:
        return "-"
    mark = ALLOWED if cell.observed else DENIED
    return mark if cell.ok else mark + "!"


def render_table(title: str, sources: Sequence[str], cells: Sequence[PolicyCell],
                 targets: Sequence[str] | None = None) -> list[str]:
    """One truth table: rows are sources, columns destinations (default: the sources)."""
    targets = list(sources if targets is None else targets)
    grid = {(c.source, c.target): c for c in cells}
    numbered = max((len(t) for t in targets), default=0) > WIDE_LABELS
    heads = [str(i + 1) for i in range(len(targets))] if numbered else targets
    same = list(sources) == targets
    digits = len(str(len(targets)))
    labels = [f"{i + 1:>{digits}} {s}" if numbered and same else s
              for i, s in enumerate(sources)]
    first = max([len(title), *(len(r) for r in labels)])
    widths = [max(len(h), 2) for h in heads]
    out = [f"{title:<{first}}  " + " ".join(h.ljust(w) for h, w in zip(heads, widths))]
    for source, label in zip(sources, labels):
        marks = [cell_mark(grid.get((source, target))) for target in targets]
        out.append(f"{label:<{first}}  " + " ".join(m.ljust(w) for m, w in zip(marks, widths)))
    if numbered and not same:
        out.append("columns: " + ", ".join(f"{i + 1} {t}" for i, t in enumerate(targets)))
    return [line.rstrip() for line in out]


__all__ = ["PlannedCell", "PolicyCell", "PolicyMatrix", "parse_port", "select_pods",
           "ports_of", "plan_policy_cells", "observed_allowed", "render_table", "cell_mark",
           "pod_label", "verdict_word", "SYSTEM_NAMESPACES"]
