"""Cost of the pure NetworkPolicy core on one node (issue 17): compute + render.

Builds a synthetic cluster (default: 200 pods on the measured node plus 200
elsewhere, in 10 namespaces, and 500 policies mixing podSelector,
namespaceSelector, AND peers, ipBlock with except, named ports, endPort
ranges and egress rules), then times compute_node_rules, render_iptables and
render_nft, best of --repeat runs, and prints the sizes of what they wrote.
The agent's target is compute + render + apply under 1 s for 200 pods x 500
policies; the apply is the agent's (h17c), not measured here.

Run:  .venv/bin/python benchmarks/netpol_compute_bench.py [--pods 200] [--policies 500]
This is a benchmark, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.policy.compute import compute_node_rules
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from agents.policy.render_iptables import render_iptables
from agents.policy.render_nft import render_nft

APPS = ("web", "api", "db", "cache", "worker", "batch", "auth", "gw")


def build(pods_here: int, pods_away: int, policies: int, namespaces: int,
          seed: int) -> Cluster:
    rnd = random.Random(seed)
    spaces = tuple(Namespace(f"ns{i}", (("team", f"t{i % 4}"), ("env", "prod" if i % 2 else
                                                                    "dev")))
                   for i in range(namespaces))
    pods = []
    for i in range(pods_here + pods_away):
        node = "n1" if i < pods_here else "n2"
        block = 1 if node == "n1" else 2
        ip = f"192.168.{block * 10 + i // 250}.{i % 250 + 2}"
        app = APPS[i % len(APPS)]
        pods.append(Pod(f"ns{i % namespaces}", f"{app}-{i}", ip, node,
                        (("app", app), ("tier", str(i % 3))),
                        (("http", 8000 + i % 5, "TCP"), ("metrics", 9090, "TCP"))))
    made = []
    for i in range(policies):
        ns = f"ns{i % namespaces}"
        app = APPS[rnd.randrange(len(APPS))]
        peer_kind = i % 5
        if peer_kind == 0:
            peers = [{"podSelector": {"matchLabels": {"app": rnd.choice(APPS)}}}]
        elif peer_kind == 1:
            peers = [{"namespaceSelector": {"matchLabels": {"team": f"t{rnd.randrange(4)}"}}}]
        elif peer_kind == 2:
            peers = [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                      "podSelector": {"matchExpressions": [
                          {"key": "tier", "operator": "In", "values": ["0", "1"]}]}}]
        elif peer_kind == 3:
            peers = [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]
        else:
            peers = []
        ports = [[{"port": 80}, {"port": 443}], [{"port": "http"}],
                 [{"port": 30000, "endPort": 30100}], []][i % 4]
        spec = {"podSelector": {"matchLabels": {"app": app}},
                "ingress": [{"from": peers, "ports": ports}]}
        if i % 3 == 0:
            spec["egress"] = [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                               "ports": [{"port": "http"}]},
                              {"ports": [{"port": 53, "protocol": "UDP"}]}]
            spec["policyTypes"] = ["Ingress", "Egress"]
        made.append(policy_from_k8s({"metadata": {"namespace": ns, "name": f"p{i}"},
                                     "spec": spec}))
    return Cluster(tuple(pods), spaces, tuple(made), (("n1", "172.31.0.11"),
                                                      ("n2", "172.31.0.12")))


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=200, help="pods on the measured node")
    ap.add_argument("--pods-elsewhere", type=int, default=200)
    ap.add_argument("--policies", type=int, default=500)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cluster = build(args.pods, args.pods_elsewhere, args.policies, args.namespaces, 17)
    t_compute, rules = best(lambda: compute_node_rules(cluster, "n1"), args.repeat)
    t_ipt, ipt = best(lambda: render_iptables(rules), args.repeat)
    t_nft, nft = best(lambda: render_nft(rules), args.repeat)
    figures = {"pods_on_node": args.pods, "policies": args.policies, **rules.counts(),
               "compute_s": round(t_compute, 4), "render_iptables_s": round(t_ipt, 4),
               "render_nft_s": round(t_nft, 4),
               "iptables_lines": ipt.count("\n"), "iptables_bytes": len(ipt),
               "nft_lines": nft.count("\n"), "nft_bytes": len(nft)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for key, value in figures.items():
        print(f"{key:>20}  {value}")
    print(f"{'compute+iptables':>20}  {t_compute + t_ipt:.3f} s")
    print(f"{'compute+nft':>20}  {t_compute + t_nft:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
