#!/usr/bin/env python3
"""Benchmark: how fast every node stops sending new connections to a deleted
pod, and starts sending them to a new one (issue 5's convergence figures).

A 3-replica deployment behind a ClusterIP; on every node a worker opens new
connections to the ClusterIP back to back and records (wall time, which pod
answered).  Then, per trial:
  * delete: `kubectl delete pod P` at T0 -> per node, the last new connection
    P answered after T0 (target: <= 300 ms at p99 on every node);
  * scale up: `kubectl scale --replicas=4` at T0 -> per node, the first
    connection the new pod answered.
Needs root.  Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

from base.kube.client import KubeClient
from labd import lifecycle
from topo.netns import run_in
from topo.state import LabPaths, read_state

HAMMER = """
import json, socket, sys, time
vip, seconds = sys.argv[1], float(sys.argv[2])
end, out = time.time() + seconds, []
while time.time() < end:
    started = time.time()
    try:
        s = socket.create_connection((vip, 80), timeout=0.5)
        s.sendall(b"GET /hostname HTTP/1.0\\r\\n\\r\\n")
        body = s.makefile("rb").read().split(b"\\r\\n\\r\\n", 1)[-1].decode()
        s.close()
        out.append((started, body))
    except OSError as err:
        out.append((started, "ERR " + type(err).__name__))
print(json.dumps(out))
"""
MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: conv}
spec:
  replicas: 3
  selector: {matchLabels: {app: conv}}
  template:
    metadata: {labels: {app: conv}}
    spec:
      terminationGracePeriodSeconds: 2
      containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: conv}
spec: {selector: {app: conv}, ports: [{port: 80}]}
"""


def kubectl(name: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(lifecycle.kubectl_argv(name, list(args)), input=stdin,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def wait_ready(api: KubeClient, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # None until the endpoints controller has written it
        eps = api.find("endpoints", "conv", "default") or {}
        names = [a["targetRef"]["name"] for s in eps.get("subsets") or []
                 for a in s.get("addresses") or []]
        if len(names) == count:
            return names
        time.sleep(0.05)
    raise SystemExit(f"endpoints did not reach {count} ready in {timeout} s")


def hammer_all(name: str, vip: str, seconds: float):
    """Start the connection loop on every node at once.

    Returns (results, threads): results[node] = [(t, pod)] once the threads end."""
    nodes = [r for r in read_state(LabPaths(name)).hosts.values() if r.kind == "node"]
    results: dict[str, list] = {}

    def one(record):
        out = run_in(record.pid, [sys.executable, "-c", HAMMER, vip, str(seconds)],
                     timeout=seconds + 30)
        results[record.name] = json.loads(out)
    threads = [threading.Thread(target=one, args=(r,)) for r in nodes]
    for thread in threads:
        thread.start()
    return results, threads


def trial(name: str, api: KubeClient, vip: str, kind: str) -> dict[str, float]:
    before = wait_ready(api, 3)
    results, threads = hammer_all(name, vip, 3.0)
    time.sleep(1.0)
    t0 = time.time()
    if kind == "delete":
        victim = before[0]
        kubectl(name, "delete", "pod", victim, "--wait=false")
    else:
        kubectl(name, "scale", "deployment", "conv", "--replicas=4")
    for thread in threads:
        thread.join(60)
    figures = {}
    for node, samples in results.items():
        if kind == "delete":
            hits = [t for t, pod in samples if pod == victim and t >= t0]
            figures[node] = (max(hits) - t0) if hits else 0.0
        else:
            new = [t for t, pod in samples if t >= t0 and pod not in before
                   and not pod.startswith("ERR")]
            figures[node] = (min(new) - t0) if new else float("nan")
    if kind == "scale":
        kubectl(name, "scale", "deployment", "conv", "--replicas=3")
    wait_ready(api, 3)
    time.sleep(0.5)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    args = parser.parse_args()
    with lifecycle.running("conv", proxy_mode=args.proxy_mode) as name:
        api = KubeClient.from_kubeconfig(str(LabPaths(name).kubeconfig))
        kubectl(name, "apply", "-f", "-", stdin=MANIFEST)
        wait_ready(api, 3)
        vip = api.get("services", "conv", "default")["spec"]["clusterIP"]
        for kind, label in (("delete", "last new connection to the deleted pod"),
                            ("scale", "first connection to the new pod")):
            per_node: dict[str, list[float]] = {}
            for _ in range(args.trials):
                for node, seconds in trial(name, api, vip, kind).items():
                    per_node.setdefault(node, []).append(seconds * 1000)
            print(f"{label} after `kubectl {'delete pod' if kind == 'delete' else 'scale'}` "
                  f"({args.trials} trials, {args.proxy_mode} mode), ms:")
            for node, values in sorted(per_node.items()):
                ordered = sorted(values)
                p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
                print(f"  {node}: median {statistics.median(ordered):7.1f}  "
                      f"p99 {p99:7.1f}  max {max(ordered):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
