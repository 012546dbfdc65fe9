#!/usr/bin/env python3
"""Benchmark: from `kubectl apply` of a new Service to its name resolving in every pod.

A lab with one pod per node (bare Pods bound with nodeName) plus the two
coredns pods.  In each of them a poller (run inside the pod) asks for the
services' FQDNs one after another, each query from a new socket as a stub
resolver does, so through kube-dns 10.96.0.10 both coredns pods are asked;
the coredns pods ask their own listener.  A name counts as resolvable from
the first answer of a run of --streak consecutive correct answers (so one
fresh coredns pod answering while the other is stale does not count).
The main process applies one Service every --gap seconds and records when
kubectl started and when it returned; all clocks are the same host clock.
Per service, "every pod" is the slowest asker.  Prints p50/p99/max;
target: every pod within 1 s.  Needs root; asserts nothing.

Usage: .venv/bin/python benchmarks/dns_propagation_bench.py [--services 20] [--gap 1.5]
       [--streak 10] [--proxy-mode iptables|nftables] [--json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

from base.kube.client import KubeClient
from labd import lifecycle
from probes.stats import percentile
from topo.netns import run_in
from topo.state import LabPaths, read_state

POLLER = r"""
import json, socket, sys, time
import dns.exception, dns.message, dns.rcode
server, names, streak, seconds = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4])
end, out, queries = time.time() + seconds, {}, 0
for name in names:
    run_start, run = None, 0
    while time.time() < end and run < streak:
        query = dns.message.make_query(name, "A")
        sent = time.time()
        ok = False
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            try:
                sock.sendto(query.to_wire(), (server, 53))
                reply = dns.message.from_wire(sock.recv(4096))
                ok = reply.id == query.id and reply.rcode() == dns.rcode.NOERROR \
                    and any(rrset.rdtype == 1 for rrset in reply.answer)
            except (OSError, dns.exception.DNSException):
                ok = False
        queries += 1
        if ok:
            run_start, run = (run_start or sent), run + 1
        else:
            run_start, run = None, 0
            time.sleep(0.002)
    if run >= streak:
        out[name] = run_start
print(json.dumps({"resolved": out, "queries": queries}))
"""


def kubectl(name: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(lifecycle.kubectl_argv(name, list(args)), input=stdin,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def asker_pods_manifest(nodes: list[str]) -> str:
    docs = [f"""apiVersion: v1
kind: Pod
metadata: {{name: dnsbench-{node}, labels: {{app: dnsbench}}}}
spec:
  nodeName: {node}
  tolerations: [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}]
  containers: [{{name: idle, image: nginx}}]
""" for node in nodes]
    return "---\n".join(docs)


def service_manifest(index: int, prefix: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {prefix}-{index}}}
spec:
  ports: [{{name: http, port: 80, protocol: TCP}}]
"""


def wait_ready_pods(api: KubeClient, namespace: str, selector: str, count: int,
                    timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in api.list("pods", namespace, label_selector=selector)[0]
                if not p["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions") or [])]
        if len(pods) == count:
            return pods
        time.sleep(0.1)
    raise SystemExit(f"{count} ready pods {namespace}/{selector} not there in {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between applies")
    parser.add_argument("--streak", type=int, default=10)
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    prefix = f"fresh{int(time.time()) % 100000}"
    names = [f"{prefix}-{i}.default.svc.cluster.local" for i in range(args.services)]
    with lifecycle.running("dnsprop", proxy_mode=args.proxy_mode) as lab:
        api = KubeClient.from_kubeconfig(str(LabPaths(lab).kubeconfig))
        state = read_state(LabPaths(lab))
        nodes = sorted(r.name for r in state.hosts.values() if r.kind == "node")
        kubectl(lab, "apply", "-f", "-", stdin=asker_pods_manifest(nodes))
        askers = [(p, "10.96.0.10") for p in wait_ready_pods(api, "default", "app=dnsbench",
                                                                 len(nodes))]
        askers += [(p, p["status"]["podIP"])
                   for p in wait_ready_pods(api, "kube-system", "k8s-app=kube-dns", 2)]
        state = read_state(LabPaths(lab))
        results: dict[str, dict] = {}
        seconds = args.services * args.gap + 20

        def poll(pod: dict, server: str) -> None:
            meta = pod["metadata"]
            record = state.find_host(meta["name"], meta["namespace"])
            out = run_in(record.pid, [sys.executable, "-c", POLLER, server, json.dumps(names),
                                      str(args.streak), str(seconds)],
                         timeout=seconds + 30, where=meta["name"])
            label = f"{meta['namespace']}/{meta['name']} ({pod['spec']['nodeName']})"
            results[label] = {"server": server, **json.loads(out)}

        threads = [threading.Thread(target=poll, args=asker, daemon=True) for asker in askers]
        for thread in threads:
            thread.start()
        time.sleep(1.0)                        # pollers started and asking for the first name
        applied: list[tuple[float, float]] = []
        for index in range(args.services):
            started = time.time()
            kubectl(lab, "apply", "-f", "-", stdin=service_manifest(index, prefix))
            applied.append((started, time.time()))
            time.sleep(args.gap)
        for thread in threads:
            thread.join(seconds + 60)
    report(args, names, applied, results)
    return 0


def _ms(values: list[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return " ".join(f"{v:8.0f}" for v in (percentile(values, 0.5), percentile(values, 0.99),
                                          max(values)))


def report(args, names, applied, results) -> None:
    per_asker: dict[str, list[float]] = {}
    every_pod_from_start, every_pod_from_return, missing = [], [], 0
    for name, (started, returned) in zip(names, applied):
        seen = [r["resolved"].get(name) for r in results.values()]
        for label, result in results.items():
            at = result["resolved"].get(name)
            if at is not None:
                per_asker.setdefault(label, []).append((at - started) * 1000)
        if None in seen:
            missing += 1
            continue
        every_pod_from_start.append((max(seen) - started) * 1000)
        every_pod_from_return.append((max(seen) - returned) * 1000)
    kubectl_ms = [(r - s) * 1000 for s, r in applied]
    if args.json:
        print(json.dumps({"services": len(names), "proxy_mode": args.proxy_mode,
                          "every_pod_ms_from_kubectl_start": every_pod_from_start,
                          "every_pod_ms_from_kubectl_return": every_pod_from_return,
                          "per_asker_ms": per_asker, "kubectl_apply_ms": kubectl_ms,
                          "never_resolved": missing}, indent=1))
        return
    print(f"DNS propagation: `kubectl apply` of a new Service -> {args.streak} consecutive "
          f"correct answers\n{len(names)} services, {args.proxy_mode} mode, "
          f"one apply every {args.gap} s; ms\n")
    print(f"{'asker (node)':<52} {'server':<13} {'p50':>8} {'p99':>8} {'max':>8}")
    for label, result in sorted(results.items()):
        print(f"{label:<52} {result['server']:<13} {_ms(per_asker.get(label, []))}")
    print()
    print(f"{'every pod, from kubectl start':<66} {_ms(every_pod_from_start)}")
    print(f"{'every pod, from kubectl return (API accepted)':<66} {_ms(every_pod_from_return)}")
    print(f"{'kubectl apply itself':<66} {_ms(kubectl_ms)}")
    within = sum(1 for v in every_pod_from_start if v <= 1000)
    print(f"\nwithin 1 s of kubectl apply in every pod: {within}/{len(names)}"
          + (f"; never resolved somewhere: {missing}" if missing else ""))


if __name__ == "__main__":
    sys.exit(main())
