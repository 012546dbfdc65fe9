#!/usr/bin/env python3
"""Benchmark: nodes joining and leaving a running lab under traffic.

In the default lab, with a DaemonSet and a Service over its pods, each
round joins a node (`svclab node add`) and removes it again (`svclab node
remove`) while a poller inside the control-plane node asks the Service's
ClusterIP for /hostname every 20 ms.  Per round it prints:

  join     `node add` from command to return (wire, Node, agents synced)
  serve    command start to the first answer from the new node's DaemonSet
           pod through the Service (the issue's target: <= 2 s after joining)
  remove   `node remove` (cordon, drain with the pods' 1 s grace, delete, gone)
  failed   poller requests that failed during the round (target: 0)

and medians over the rounds.  Needs root.  It prints figures; it does not
assert them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

POLLER = r"""
import sys, time, urllib.request
url, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        name = urllib.request.urlopen(url, timeout=1).read().decode().strip()
        print(f"{time.time():.3f} ok {name}", flush=True)
    except Exception as err:
        print(f"{time.time():.3f} fail {type(err).__name__}", flush=True)
    time.sleep(0.02)
"""
DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: probe-ds}
spec:
  selector: {matchLabels: {app: probe-ds}}
  template:
    metadata: {labels: {app: probe-ds}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: svclab/workload, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: probe-ds}
spec:
  selector: {app: probe-ds}
  ports: [{port: 80, targetPort: 8080}]
"""
CONTROL_PLANE = "ip-172-31-0-10"


def svclab(*args: str, input: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "svclab.cli", *args], input=input,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"svclab {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def one_round(lab: str, url: str, index: int) -> dict:
    node = f"ip-172-31-0-{40 + index}"
    poller = subprocess.Popen([sys.executable, "-m", "svclab.cli", "exec", "--name", lab,
                               CONTROL_PLANE, "--", sys.executable, "-c", POLLER, url, "60"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)                      # the poller is running
    started = time.time()
    svclab("node", "add", node, "--address", f"172.31.0.{40 + index}", "--name", lab)
    joined = time.time()
    pod = ""
    while not pod:
        pods = json.loads(svclab("kubectl", "--name", lab, "get", "pods", "-l", "app=probe-ds",
                                 "--field-selector", f"spec.nodeName={node}", "-o", "json"))
        pod = next((p["metadata"]["name"] for p in pods["items"]), "")
    time.sleep(2.0)
    removing = time.time()
    svclab("node", "remove", node, "--name", lab)
    removed = time.time()
    time.sleep(1.0)
    poller.terminate()
    lines = poller.communicate(timeout=30)[0].splitlines()
    answers = [line.split() for line in lines if line.count(" ") >= 2]
    served = next((float(t) for t, ok, name in answers if ok == "ok" and name == pod), None)
    return {"join": joined - started, "serve": (served - started) if served else None,
            "remove": removed - removing,
            "failed": sum(1 for _, ok, _ in answers if ok == "fail"), "requests": len(answers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lab = "bench-nodes"
    svclab("up", "--name", lab)
    try:
        svclab("kubectl", "--name", lab, "apply", "-f", "-", input=DAEMONSET)
        cluster_ip = svclab("kubectl", "--name", lab, "get", "svc", "probe-ds", "-o",
                            "jsonpath={.spec.clusterIP}").strip()
        url = f"http://{cluster_ip}/hostname"
        print(f"{'round':>5} {'join':>7} {'serve':>7} {'remove':>7} {'failed':>7} "
              f"{'requests':>8}")
        rounds = []
        for index in range(args.rounds):
            r = one_round(lab, url, index)
            rounds.append(r)
            serve = f"{r['serve']:.2f}s" if r["serve"] is not None else "never"
            print(f"{index + 1:>5} {r['join']:>6.2f}s {serve:>7} {r['remove']:>6.2f}s "
                  f"{r['failed']:>7} {r['requests']:>8}", flush=True)
        served = [r["serve"] for r in rounds if r["serve"] is not None]
        print(f"median: join {statistics.median(r['join'] for r in rounds):.2f} s, serve "
              f"{statistics.median(served) if served else float('nan'):.2f} s (target <= 2 s "
              f"after joining), remove {statistics.median(r['remove'] for r in rounds):.2f} s,"
              f" failed requests {sum(r['failed'] for r in rounds)} of "
              f"{sum(r['requests'] for r in rounds)}")
    finally:
        svclab("down", "--name", lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
