#!/usr/bin/env python3
"""Benchmark: `probe spread` throughput -- 10,000 new connections from one pod.

Brings up a lab of its own, starts 5 workload pods over the 3 nodes and a
prober pod, then opens 10,000 TCP connections (GET / to the workload server)
from the prober: to one pod, and to the 5 pods in turn (client-side round
robin, the comparison for a Service with 5 endpoints once the proxy agent
exists).  Also 10,000 UDP datagrams over the 5 pods.  Prints connections/s,
wall time, latency p50/p99 and failures per run; the target is 10,000
connections in <= 10 s.  Needs root.  Not a test: it prints, it does not assert.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labd.control import ControlClient  # noqa: E402
from probes.reach import Probe  # noqa: E402
from probes.runner import probe_from  # noqa: E402
from probes.spread.probe import spread  # noqa: E402
from topo.cleanup import clean_lab  # noqa: E402

NODES = ["ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"]
PODS = {"web-0": (NODES[0], "192.168.0.50"), "web-1": (NODES[1], "192.168.1.50"),
        "web-2": (NODES[2], "192.168.2.50"), "web-3": (NODES[1], "192.168.1.51"),
        "web-4": (NODES[2], "192.168.2.51")}
PROBER = ("prober", NODES[0], "192.168.0.60")
TARGET_SECONDS = 10.0


def svclab(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "svclab.cli", *args], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"svclab {' '.join(args)} failed:\n{proc.stderr}")


def workload(name: str, ip: str) -> list[str]:
    return [sys.executable, "-m", "agents.workload", "--pod-name", name, "--pod-ip", ip,
            "--port", "80/TCP", "--port", "5353/UDP"]


def wait_ready(lab: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for _, ip in PODS.values():
        while probe_from(lab, PROBER[0], [Probe(ip, 80)], timeout=0.5)[0].outcome != "open":
            if time.monotonic() > deadline:
                raise SystemExit(f"workload at {ip}:80 did not open within {timeout} s")
            time.sleep(0.1)


def run_case(lab: str, label: str, targets, port: int, proto: str, count: int,
             concurrency: int, runs: int) -> None:
    rates, walls, p50s, p99s, failures = [], [], [], [], {}
    for _ in range(runs):
        started = time.monotonic()
        result = spread(lab, PROBER[0], None, targets, port, proto, count=count, timeout=5.0,
                        concurrency=concurrency)
        walls.append(time.monotonic() - started)
        rates.append(result.rate)
        p50s.append(result.latency_p50_ms or 0.0)
        p99s.append(result.latency_p99_ms or 0.0)
        for kind, n in result.failures.items():
            failures[kind] = failures.get(kind, 0) + n
        time.sleep(1.0)
    verdict = "ok" if statistics.median(walls) <= TARGET_SECONDS else "SLOW"
    print(f"{label:34} {statistics.median(rates):>8.0f} {statistics.median(walls):>7.2f}s "
          f"{statistics.median(p50s):>7.2f} {statistics.median(p99s):>7.2f} "
          f"{sum(failures.values()):>8} {verdict:>6}"
          + (f"  {failures}" if failures else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lab = f"bench-{uuid.uuid4().hex[:6]}"
    svclab("up", "--name", lab)
    try:
        control = ControlClient(lab)
        for name, (node, ip) in PODS.items():
            control.add_pod(name, node, ip=ip, command=workload(name, ip))
        control.add_pod(PROBER[0], PROBER[1], ip=PROBER[2])
        wait_ready(lab)
        ips = [ip for _, ip in PODS.values()]
        print(f"{args.count} connections per run, concurrency {args.concurrency}, "
              f"median of {args.runs} runs; target <= {TARGET_SECONDS:.0f} s")
        print(f"{'case':34} {'conn/s':>8} {'wall':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'failures':>8} {'target':>6}")
        run_case(lab, "tcp, 1 pod (other node)", "192.168.1.50", 80, "tcp", args.count,
                 args.concurrency, args.runs)
        run_case(lab, "tcp, 5 pods in turn", ips, 80, "tcp", args.count, args.concurrency,
                 args.runs)
        run_case(lab, "udp, 5 pods in turn (conc. 50)", ips, 5353, "udp", args.count, 50,
                 args.runs)
    finally:
        svclab("down", "--name", lab)
        clean_lab(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
