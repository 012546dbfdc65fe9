"""`make demo`: the lab foundation in one run.

Brings up the default lab (the seed's three EC2-style nodes and a client),
starts one pod per node running the workload server, prints the hosts and
their addresses, probes a reachability matrix with scapy (expected vs
observed), and tears the lab down.  Exit status 1 if any cell surprises.
"""
from __future__ import annotations

import argparse
import sys
import time

from probes.reach import Probe
from probes.runner import probe_from
from svclab import labctl
from svclab.cli import _status_table
from topo.cleanup import clean_lab
from topo.control import ControlClient

WAIT_SECONDS = 15.0


def workload(name: str, ip: str) -> list[str]:
    return [sys.executable, "-m", "agents.workload", "--pod-name", name, "--pod-ip", ip,
            "--port", "80/TCP"]


def expected(source_kind: str, target_kind: str) -> str:
    """What AWS + Calico networking should do for a (source, target) pair."""
    if target_kind == "pod":
        return "dropped" if source_kind == "client" else "open"
    return "open"          # public IPs and the internet answer everyone


def run(name: str) -> int:
    started = time.monotonic()
    result = labctl.up(name)
    print(f"lab {name!r} ready in {result.seconds:.2f} s")
    try:
        state, spec = labctl.status(name)
        control = ControlClient(name)
        pods = {}
        for node in spec.nodes:
            ip = str(node.pod_block.network_address + 10)
            pod = f"web-{node.name.rsplit('-', 1)[-1]}"
            control.add_pod(pod, node.name, ip=ip, command=workload(pod, ip))
            pods[pod] = ip
        state, spec = labctl.status(name)
        print(_status_table(state, spec))
        targets = [("pod", f"{pod} {ip}:80", Probe(ip, 80)) for pod, ip in pods.items()]
        targets += [("public", f"{n.name} public {n.public_ip}", Probe(str(n.public_ip), 0, "icmp"))
                    for n in spec.nodes]
        targets += [("internet", f"{c.name} {c.address}", Probe(str(c.address), 0, "icmp"))
                    for c in spec.clients]
        sources = [("pod", p) for p in pods] + [("node", n.name) for n in spec.nodes] + \
                  [("client", c.name) for c in spec.clients]
        _wait_for_pods(name, spec.nodes[0].name, pods)
        surprises = _matrix(name, sources, targets)
    finally:
        seconds = labctl.down(name)
        clean_lab(name)
        print(f"lab {name!r} stopped in {seconds:.2f} s; whole demo "
              f"{time.monotonic() - started:.1f} s")
    return 1 if surprises else 0


def _wait_for_pods(lab: str, source: str, pods: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    pending = dict(pods)
    while pending:
        results = probe_from(lab, source, [Probe(ip, 80) for ip in pending.values()],
                             timeout=0.3)
        pending = {p: ip for (p, ip), r in zip(pending.items(), results) if r.outcome != "open"}
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"pods not serving after {WAIT_SECONDS} s: {sorted(pending)}")


def _matrix(lab: str, sources, targets) -> int:
    print("\nreachability (observed, ! marks a surprise; expected in brackets)")
    header = ["FROM \\ TO"] + [label for _, label, _ in targets]
    rows, surprises = [header], 0
    for source_kind, source in sources:
        probes = [p for _, label, p in targets]
        results = probe_from(lab, source, probes, timeout=1.0)
        row = [f"{source} ({source_kind})"]
        for (target_kind, label, probe), result in zip(targets, results):
            if source == label.split()[0]:
                row.append("-")
                continue
            want = expected(source_kind, target_kind)
            ok = result.outcome == want
            surprises += not ok
            row.append(result.outcome if ok else f"!{result.outcome} [{want}]")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"\n{surprises} surprising cell(s) of {(len(rows) - 1) * len(targets)}")
    return surprises


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="demo")
    args = parser.parse_args()
    return run(args.name)


if __name__ == "__main__":
    sys.exit(main())
