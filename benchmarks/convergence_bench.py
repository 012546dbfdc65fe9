#!/usr/bin/env python3
"""Benchmark: how fast every node stops sending new connections to a deleted
pod or Service, and starts sending them to a new pod (issues 5 and 22).

A 3-replica deployment behind a ClusterIP; on every node a worker opens new
connections to the ClusterIP back to back and records (wall time, which pod
answered).  Then, per trial (--kinds):
  * delete: `kubectl delete pod P` at T0 -> per node, the last new connection
    P answered after T0 (target: <= 300 ms at p99 on every node);
  * scale: `kubectl scale --replicas=4` at T0 -> per node, the first
    connection the new pod answered;
  * svc-delete (issue 22): with --services filler Services in the lab (each
    selecting the same 3 pods), a Service `gone-K` is created, reached from
    every node, then `kubectl delete svc gone-K` at T0 -> per node, the last
    new connection to its ClusterIP that succeeded after T0 (target: <= 300
    ms at p99 with 5,000 services), --deletes times.
Needs root.  Prints figures; asserts nothing.

  .venv/bin/python benchmarks/convergence_bench.py --proxy-mode nftables \
      --kinds svc-delete --services 5000 --deletes 20
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from base.errors import LabError
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


REACH = """
import socket, sys, time
vip, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        socket.create_connection((vip, 80), timeout=0.3).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
"""
PROXIED = """
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:10249/metrics", timeout=5).read().decode()
print(*(re.search(rf"^svclab_proxy_{what} (\\d+)", text, re.M).group(1)
        for what in ("services", "endpoints")))
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
    nodes = nodes_of(name)
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


def nodes_of(name: str, attempts: int = 20) -> list:
    """The lab's node records (the state file may be mid-write: retried)."""
    for attempt in range(attempts):
        try:
            state = read_state(LabPaths(name))
        except LabError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
            continue
        return [r for r in state.hosts.values() if r.kind == "node"]
    raise LabError(f"lab {name}: no readable state")


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "conv"}, "ports": [{"port": 80}]}}


def fill(name: str, api: KubeClient, count: int, timeout: float = 1800) -> float:
    """count filler Services over the conv pods; returns when every node's
    agent proxies them all, with their endpoints (its /metrics)."""
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: api.create("services", service(f"fill-{i}"), "default"),
                      range(count)))
    created = time.monotonic() - started
    want = (count + 3, 3 * (count + 1))   # + kubernetes, kube-dns, conv
    deadline = time.monotonic() + timeout
    for record in nodes_of(name):
        while True:
            got = [int(x) for x in run_in(record.pid, [sys.executable, "-c", PROXIED]).split()]
            if got[0] >= want[0] and got[1] >= want[1]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{record.name}: agent proxies {got} (services, "
                                 f"endpoints), not {want}")
            time.sleep(2.0)
    print(f"{count} filler services: created in {created:.0f} s, on every node's "
          f"agent after {time.monotonic() - started:.0f} s", flush=True)
    return created


def service_delete_trial(name: str, api: KubeClient, k: int, via_kubectl: bool
                         ) -> tuple[dict[str, float], float]:
    """Create gone-k, reach it from every node, delete it (`kubectl delete
    svc`, or the same DELETE request sent straight to the API); per node,
    the last successful new connection to its ClusterIP started after T0
    (the start of the delete), and how long the delete call took."""
    svc = f"gone-{k}"
    vip = api.create("services", service(svc), "default")["spec"]["clusterIP"]
    deadline = time.monotonic() + 180
    while len([a for s in (api.find("endpoints", svc, "default") or {}).get("subsets") or []
               for a in s.get("addresses") or []]) < 3:
        if time.monotonic() > deadline:
            raise SystemExit(f"{svc}: no endpoints in 180 s")
        time.sleep(0.05)
    for record in nodes_of(name):
        run_in(record.pid, [sys.executable, "-c", REACH, vip, "60"], timeout=90)
    results, threads = hammer_all(name, vip, 4.0)
    time.sleep(2.0)                    # every node's loop is running by then
    t0 = time.time()
    if via_kubectl:
        kubectl(name, "delete", "svc", svc, "--wait=false")
    else:
        api.delete("services", svc, "default")
    took = time.time() - t0
    for thread in threads:
        thread.join(60)
    figures = {}
    for node, samples in results.items():
        if not any(t < t0 and not pod.startswith("ERR") for t, pod in samples):
            raise SystemExit(f"{node}: no connection to {svc} before the delete")
        hits = [t for t, pod in samples if t >= t0 and not pod.startswith("ERR")]
        figures[node] = (max(hits) - t0) if hits else 0.0
    return figures, took


def report(label: str, per_node: dict[str, list[float]]) -> None:
    def p99(values):
        ordered = sorted(values)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    print(label)
    for node, values in sorted(per_node.items()):
        print(f"  {node}: median {statistics.median(values):7.1f}  "
              f"p99 {p99(values):7.1f}  max {max(values):7.1f}")
    every = [v for values in per_node.values() for v in values]
    print(f"  all nodes ({len(every)} samples): p99 {p99(every):7.1f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    parser.add_argument("--kinds", default="delete,scale",
                        help="comma-separated: delete, scale, svc-delete")
    parser.add_argument("--services", type=int, default=0,
                        help="filler Services created first (svc-delete: 5000)")
    parser.add_argument("--deletes", type=int, default=20,
                        help="Service deletes measured (svc-delete)")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    with lifecycle.running("conv", proxy_mode=args.proxy_mode) as name:
        api = KubeClient.from_kubeconfig(str(LabPaths(name).kubeconfig))
        kubectl(name, "apply", "-f", "-", stdin=MANIFEST)
        wait_ready(api, 3)
        vip = api.get("services", "conv", "default")["spec"]["clusterIP"]
        if args.services:
            fill(name, api, args.services)
        if "svc-delete" in kinds:
            per_way: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
            call_ms: dict[bool, list[float]] = {True: [], False: []}
            for k in range(2 * args.deletes):          # kubectl and API, in turn
                way = k % 2 == 0
                figures, took = service_delete_trial(name, api, k, way)
                call_ms[way].append(took * 1000)
                for node, seconds in figures.items():
                    per_way[way].setdefault(node, []).append(seconds * 1000)
            for way, what in ((True, "`kubectl delete svc`"),
                              (False, "the API DELETE request (what kubectl sends)")):
                report(f"last new connection to a deleted Service after {what} "
                       f"started ({args.deletes} deletes, {args.services} other "
                       f"services, {args.proxy_mode} mode), ms:", per_way[way])
                report("  the delete call itself (start to return), ms:",
                       {"call": call_ms[way]})
        for kind, label in (("delete", "last new connection to the deleted pod"),
                            ("scale", "first connection to the new pod")):
            if kind not in kinds:
                continue
            figures: dict[str, list[float]] = {}
            for _ in range(args.trials):
                for node, seconds in trial(name, api, vip, kind).items():
                    figures.setdefault(node, []).append(seconds * 1000)
            report(f"{label} after `kubectl {'delete pod' if kind == 'delete' else 'scale'}` "
                   f"({args.trials} trials, {args.proxy_mode} mode), ms:", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
