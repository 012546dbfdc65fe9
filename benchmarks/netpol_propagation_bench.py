#!/usr/bin/env python3
"""Benchmark: NetworkPolicy propagation in a lab, and one node's full sync at scale.

1. Propagation (a lab of its own): one `web` pod per node and one client pod.
   Per round, `kubectl apply` of a default-deny ingress policy, then `kubectl
   delete` of it; a poller inside the client pod opens new TCP connections to
   every web pod (one thread per target, 0.2 s connect timeout) and records
   when each target turned (blocked: the first of two timed-out attempts in a
   row; open again: the first connection that succeeds).  "Every node" is the
   slowest target.  Times from the start of kubectl.
2. Scale (no lab; a throwaway network namespace): 200 local pods (and 400 on
   other nodes) x 500 policies: compute_node_rules, render and one apply, per
   mode: the first sync (empty table), the same rules again, one policy changed.

Prints figures; asserts nothing.  Needs root.

Usage: .venv/bin/python benchmarks/netpol_propagation_bench.py [--rounds 20]
       [--proxy-mode iptables|nftables] [--skip-lab] [--skip-scale] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from agents.policy.backend import backend_for
from agents.policy.compute import compute_node_rules
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from base.kube.client import KubeClient
from labd import lifecycle
from probes.stats import percentile
from topo.network import host_exec_argv
from topo.state import LabPaths, read_state

NS = "npbench"
POLLER = r"""
import json, socket, sys, threading, time
targets, want, seconds = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()                    # go
end, seen = time.time() + seconds, {}

def watch(ip):
    misses = []
    while time.time() < end:
        at = time.time()
        try:
            socket.create_connection((ip, 80), timeout=0.2).close()
            ok = True
        except OSError:
            ok = False
        if want == "open" and ok:
            seen[ip] = at
            return
        misses = (misses + [at])[-2:] if not ok else []
        if want == "blocked" and len(misses) == 2:
            seen[ip] = misses[0]
            return
        if ok:
            time.sleep(0.005)

threads = [threading.Thread(target=watch, args=(ip,)) for ip in targets]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(seen), flush=True)
"""


def kubectl(lab: str, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(lifecycle.kubectl_argv(lab, list(args)), input=stdin,
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr}")


def pod_manifest(name: str, node: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
            "spec": {"nodeName": node, "tolerations": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
                "containers": [{"name": "app", "image": "nginx",
                                "ports": [{"containerPort": 80}]}]}}


DENY = json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "deny", "namespace": NS},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                            "policyTypes": ["Ingress"]}})


def running_ips(api: KubeClient, count: int, timeout: float = 90.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = api.list("pods", NS)[0]
        ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
               if p["status"].get("phase") == "Running" and p["status"].get("podIP")}
        if len(ips) == count:
            return ips
        time.sleep(0.2)
    raise SystemExit(f"{count} pods of {NS} not running in {timeout} s")


def one_change(lab: str, client_argv: list[str], targets: list[str], want: str,
               change: list[str] | None, stdin: str | None
               ) -> tuple[float, dict[str, float]]:
    """Run the poller, make the change (kubectl args; None: none), return
    (seconds kubectl took, target -> seconds from kubectl start)."""
    poller = subprocess.Popen(client_argv + [json.dumps(targets), want, "20"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert poller.stdout.readline().strip() == "ready"
        poller.stdin.write("go\n")
        poller.stdin.flush()
        started = time.time()
        if change is not None:
            kubectl(lab, *change, stdin=stdin)
        took = time.time() - started
        seen = json.loads(poller.stdout.readline())
    finally:
        poller.stdin.close()
        poller.wait(timeout=30)
    return took, {ip: at - started for ip, at in seen.items()}


def propagation(rounds: int, mode: str) -> dict:
    with lifecycle.running("npprop", proxy_mode=mode) as lab:
        paths = LabPaths(lab)
        nodes = sorted(r.name for r in read_state(paths).hosts.values() if r.kind == "node")
        manifests = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
        manifests += [pod_manifest(f"web-{i}", node, "web") for i, node in enumerate(nodes)]
        manifests.append(pod_manifest("asker", nodes[-1], "asker"))
        kubectl(lab, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(m) for m in manifests))
        ips = running_ips(KubeClient.from_kubeconfig(str(paths.kubeconfig)), len(nodes) + 1)
        targets = [ip for name, ip in sorted(ips.items()) if name.startswith("web-")]
        record = read_state(paths).find_host("asker", NS)
        argv = host_exec_argv(paths, record, [sys.executable, "-c", POLLER])
        _, ready = one_change(lab, argv, targets, "open", None, None)
        if len(ready) < len(targets):
            raise SystemExit(f"web pods not reachable from the asker: {ready}")
        out: dict = {"blocked": [], "open": [], "kubectl": [], "missing": 0,
                     "blocked_after_kubectl": [], "open_after_kubectl": []}
        for _ in range(rounds):
            for want, change, stdin in (("blocked", ["apply", "-f", "-"], DENY),
                                        ("open", ["-n", NS, "delete", "networkpolicy",
                                                  "deny"], None)):
                took, seen = one_change(lab, argv, targets, want, change, stdin)
                out["kubectl"].append(took * 1000)
                if len(seen) < len(targets):
                    out["missing"] += 1
                    continue
                out[want].append(max(seen.values()) * 1000)
                out[f"{want}_after_kubectl"].append((max(seen.values()) - took) * 1000)
            time.sleep(0.3)
        return out


# --- scale: one node, no lab ---------------------------------------------------

NODE = "bench-node"


def scale_cluster(pods: int, policies: int) -> Cluster:
    namespaces = tuple(Namespace(f"ns-{i}", (("kubernetes.io/metadata.name", f"ns-{i}"),
                                             ("team", f"t{i % 3}"))) for i in range(10))
    everyone = []
    for i in range(pods * 3):
        node = NODE if i < pods else f"other-{i % 2}"
        everyone.append(Pod(f"ns-{i % 10}", f"pod-{i}", f"192.168.{i // 250}.{i % 250 + 1}",
                            node, (("app", f"app-{i % 50}"), ("tier", f"tier-{i % 4}")),
                            (("http", 80, "TCP"), ("metrics", 9100, "TCP"))))
    made = []
    for k in range(policies):
        peer = ({"podSelector": {"matchLabels": {"app": f"app-{(k + 1) % 50}"}}} if k % 3 == 0
                else {"namespaceSelector": {"matchLabels": {"team": f"t{k % 3}"}},
                      "podSelector": {"matchLabels": {"tier": f"tier-{k % 4}"}}} if k % 3 == 1
                else {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}})
        spec = {"podSelector": {"matchLabels": {"app": f"app-{k % 50}"}},
                "policyTypes": ["Ingress"] + (["Egress"] if k % 5 == 0 else []),
                "ingress": [{"from": [peer], "ports": [{"port": 80 + k % 7},
                                                       {"port": "metrics"}]}]}
        if k % 5 == 0:
            spec["egress"] = [{"to": [peer], "ports": [{"port": 5432}]}]
        made.append(policy_from_k8s({"metadata": {"name": f"pol-{k}",
                                                  "namespace": f"ns-{k % 10}"}, "spec": spec}))
    return Cluster(tuple(everyone), namespaces, tuple(made))


def timed_sync(backend, cluster: Cluster) -> dict[str, float]:
    t0 = time.perf_counter()
    rules = compute_node_rules(cluster, NODE)
    t1 = time.perf_counter()
    rendered = backend.render(rules)
    t2 = time.perf_counter()
    backend.apply(rendered)
    t3 = time.perf_counter()
    return {"compute": t1 - t0, "render": t2 - t1, "apply": t3 - t2, "total": t3 - t0,
            "lines": rendered.lines, "rules": rules.counts()}


def scale(pods: int, policies: int) -> dict:
    cluster = scale_cluster(pods, policies)
    changed_policy = policy_from_k8s({"metadata": {"name": "pol-1", "namespace": "ns-1"},
                                      "spec": {"podSelector": {"matchLabels": {"app": "app-1"}},
                                               "ingress": [{"ports": [{"port": 8443}]}]}})
    changed = Cluster(cluster.pods, cluster.namespaces,
                      tuple(changed_policy if p.key == "ns-1/pol-1" else p
                            for p in cluster.policies))
    out = {}
    for mode in ("iptables", "nftables"):
        netns = f"npbench-{os.getpid()}-{mode[:3]}"
        subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
        try:
            backend = backend_for(mode, netns=netns)
            out[mode] = {"first": timed_sync(backend, cluster),
                         "again": timed_sync(backend, cluster),
                         "one policy changed": timed_sync(backend, changed)}
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False, timeout=30)
    return out


def _fmt(values: list[float]) -> str:
    if not values:
        return "no data"
    return (f"p50 {percentile(values, 0.5):7.0f}  p99 {percentile(values, 0.99):7.0f}  "
            f"max {max(values):7.0f} ms  (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"), default="iptables")
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict = {}
    if not args.skip_lab:
        results["propagation"] = propagation(args.rounds, args.proxy_mode)
    if not args.skip_scale:
        results["scale"] = scale(args.pods, args.policies)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    if "propagation" in results:
        prop = results["propagation"]
        print(f"NetworkPolicy propagation, {args.proxy_mode} mode, {args.rounds} rounds; "
              "from kubectl start until new connections to every node's web pod follow it")
        print(f"  deny applied  -> blocked everywhere: {_fmt(prop['blocked'])}")
        print(f"  deny deleted  -> open everywhere:    {_fmt(prop['open'])}")
        print(f"  (kubectl itself, start to exit:      {_fmt(prop['kubectl'])})")
        print("from kubectl's exit (the API has the change):")
        print(f"  deny applied  -> blocked everywhere: {_fmt(prop['blocked_after_kubectl'])}")
        print(f"  deny deleted  -> open everywhere:    {_fmt(prop['open_after_kubectl'])}")
        if prop["missing"]:
            print(f"  rounds where a target never turned within 20 s: {prop['missing']}")
    if "scale" in results:
        print(f"\nOne node's sync, {args.pods} local pods ({args.pods * 3} in all) x "
              f"{args.policies} policies (compute + render + one apply), s")
        for mode, runs in results["scale"].items():
            for what, r in runs.items():
                print(f"  {mode:9} {what:19} compute {r['compute']:6.3f}  render "
                      f"{r['render']:6.3f}  apply {r['apply']:6.3f}  total {r['total']:6.3f}"
                      f"  ({r['lines']} lines)")
            print(f"  {mode:9} rules: {runs['first']['rules']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
