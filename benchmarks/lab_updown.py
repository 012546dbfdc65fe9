#!/usr/bin/env python3
"""Benchmark: wall time of `svclab up` and `svclab down`, as medians.

Runs the real CLI for the default lab (3 nodes + client) and for a 10-node
lab with 10 static pods per node, several times each, and prints medians
next to the published figures we compare with (minikube's time-to-k8s
benchmark: k3d ~20 s and kind ~33 s until an app runs and DNS answers).
Needs root.  Not a test: it prints figures, it does not assert them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "default (3 nodes, 0 pods)": None,
    "10 nodes x 10 pods": ROOT / "topo" / "clusters" / "ten-by-ten.yaml",
}
TARGETS = {"default (3 nodes, 0 pods)": 3.0, "10 nodes x 10 pods": 15.0}


def svclab(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "svclab.cli", *args],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"svclab {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def measure(spec: Path | None, runs: int) -> tuple[list[float], list[float], int]:
    ups, downs, hosts = [], [], 0
    for i in range(runs):
        name = f"bench-{i}"
        args = ["up", "--name", name, "--json"] + (["-f", str(spec)] if spec else [])
        started = time.monotonic()
        hosts = json.loads(svclab(*args).stdout)["hosts"]
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        svclab("down", "--name", name)
        downs.append(time.monotonic() - started)
    return ups, downs, hosts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'lab':28} {'hosts':>5} {'up median':>10} {'up min':>7} {'up max':>7} "
          f"{'down median':>12} {'target up':>10}")
    for label, spec in CASES.items():
        ups, downs, hosts = measure(spec, args.runs)
        print(f"{label:28} {hosts:>5} {statistics.median(ups):>9.2f}s {min(ups):>6.2f}s "
              f"{max(ups):>6.2f}s {statistics.median(downs):>11.2f}s "
              f"{'<= %.0f s' % TARGETS[label]:>10}")
    print(f"({args.runs} runs each; wall time of the CLI command, including Python start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
