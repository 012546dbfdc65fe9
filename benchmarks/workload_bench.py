"""Workload benchmark: how fast deployments turn into ready endpoints (root, a real lab).

Prints two figures, each over several runs (min / median / max):
  * apply -> endpoints: from the start of `kubectl apply` of a 3-replica
    Deployment plus its Service until the Service's Endpoints list 3 ready
    addresses (target <= 1 s);
  * scale 0 -> 50: from the start of `kubectl scale --replicas=50` until 50
    pods are Ready (and 50 ready endpoints) (target <= 5 s).

    sudo .venv/bin/python benchmarks/workload_bench.py [--runs N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

from base.kube.client import KubeClient
from labd import lifecycle
from topo.state import LabPaths

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
TIMEOUT = 60.0


def manifest(name: str, replicas: int) -> str:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
              "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                       "template": {"metadata": {"labels": {"app": name}},
                                    "spec": {"terminationGracePeriodSeconds": 1,
                                             "containers": [{"name": "web",
                                                             "image": "nginx"}]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}
    return json.dumps(deploy) + "\n---\n" + json.dumps(service) + "\n"


def kubectl(cluster: SimpleNamespace, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args],
                          input=stdin, text=True, capture_output=True,
                          env={**os.environ, "HOME": str(cluster.home)})
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")


def ready_endpoints(cluster: SimpleNamespace, name: str) -> int:
    try:
        endpoints = cluster.client.get("endpoints", name, "default")
    except Exception:   # not created yet
        return 0
    return sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])


def ready_pods(cluster: SimpleNamespace, name: str) -> int:
    pods = cluster.client.list("pods", "default", label_selector=f"app={name}")[0]
    return sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                      for c in p["status"].get("conditions") or []))


def wait(what: str, probe, deadline: float) -> None:
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {TIMEOUT} s")
        time.sleep(0.005)


def apply_to_endpoints(cluster: SimpleNamespace, run: int) -> float:
    name = f"bench-{run}"
    started = time.monotonic()
    kubectl(cluster, "apply", "-f", "-", stdin=manifest(name, 3))
    wait("3 ready endpoints", lambda: ready_endpoints(cluster, name) == 3, started + TIMEOUT)
    elapsed = time.monotonic() - started
    kubectl(cluster, "delete", "-f", "-", "--wait=true", stdin=manifest(name, 3))
    return elapsed


def scale_to_50(cluster: SimpleNamespace, run: int) -> float:
    name = f"scale-{run}"
    kubectl(cluster, "apply", "-f", "-", stdin=manifest(name, 0))
    started = time.monotonic()
    kubectl(cluster, "scale", "deployment", name, "--replicas=50")
    wait("50 ready pods", lambda: ready_pods(cluster, name) == 50, started + TIMEOUT)
    wait("50 ready endpoints", lambda: ready_endpoints(cluster, name) == 50, started + TIMEOUT)
    elapsed = time.monotonic() - started
    kubectl(cluster, "delete", "-f", "-", "--wait=true", stdin=manifest(name, 0))
    deadline = time.monotonic() + TIMEOUT
    wait("pods gone", lambda: not cluster.client.list(
        "pods", "default", label_selector=f"app={name}")[0], deadline)
    return elapsed


def summary(label: str, samples: list[float], target: float) -> dict:
    return {"measure": label, "runs": len(samples), "min_s": round(min(samples), 3),
            "median_s": round(statistics.median(samples), 3), "max_s": round(max(samples), 3),
            "target_s": target, "met": statistics.median(samples) <= target}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: needs root (builds a lab of network namespaces)", file=sys.stderr)
        return 2
    with lifecycle.running("bench") as name:
        paths = LabPaths(name)
        cluster = SimpleNamespace(kubeconfig=paths.kubeconfig, home=paths.root,
                                  client=KubeClient.from_kubeconfig(str(paths.kubeconfig)))
        apply = [apply_to_endpoints(cluster, i) for i in range(args.runs)]
        scale = [scale_to_50(cluster, i) for i in range(max(1, args.runs // 2))]
    results = [summary("apply 3-replica deployment+service -> 3 ready endpoints", apply, 1.0),
               summary("scale 0 -> 50 pods ready (and 50 endpoints)", scale, 5.0)]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            print(f"{r['measure']}: median {r['median_s']:.3f} s (min {r['min_s']:.3f}, "
                  f"max {r['max_s']:.3f}, {r['runs']} runs; target <= {r['target_s']} s: "
                  f"{'met' if r['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
