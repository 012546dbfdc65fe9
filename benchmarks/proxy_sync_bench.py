"""Sync cost of the iptables-mode proxy at scale (issue 5: "Sync cost").

For each N (default 1000 and 10000) services x E endpoints (default 3), in a
throwaway network namespace (svtest-bench-<pid>-<N>, deleted afterwards):
parse the API-shaped objects, compute the RuleSet, read the current state
(iptables-save), render, and apply with one iptables-restore; then change a
single endpoint and sync again, once as a full resync and once as a partial
sync (only the changed service's chains, no iptables-save).  Each N runs in a fresh child
process so its peak RSS is its own.  Prints a table; --json for raw figures.

Run as root:  .venv/bin/python benchmarks/proxy_sync_bench.py [--sizes 1000,10000]
This is a benchmark, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.proxy import (
    NodeInfo,
    compute_ruleset,
    endpoint_slice_from_k8s,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.iptables_render import NAT_CHAINS, render
from agents.proxy.iptables_state import state_after

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))


def objects(n: int, per_service: int):
    """n Services (10.96.0.0/12) with per_service endpoints each."""
    services, slices = [], []
    for i in range(n):
        name = f"svc-{i}"
        services.append(service_dict(
            name, "bench", cluster_ip=f"10.{96 + i // 65536}.{i // 256 % 256}."
                                      f"{i % 256}",
            ports=[{"name": "http", "port": 80, "targetPort": 8080}]))
        eps = []
        for j in range(per_service):
            k = i * per_service + j
            eps.append(endpoint(f"192.168.{k // 250 % 256}.{k % 250 + 1}",
                                NODE.name if j == 0 else "other-node"))
        slices.append(slice_dict(name, "bench", endpoints=eps))
    return services, slices


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def one_size(n: int, per_service: int, legacy: bool) -> dict:
    """Run the benchmark for one N in its own namespace (child process)."""
    ns = f"svtest-bench-{os.getpid()}-{n}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        flavour = "iptables-legacy" if legacy else "iptables"
        backend = IptablesBackend(netns=ns, timeout_s=600,
                                  restore_binary=f"{flavour}-restore",
                                  save_binary=f"{flavour}-save")
        svc_dicts, slice_dicts = objects(n, per_service)
        (services, slices), t_parse = timed(lambda: (
            [service_from_k8s(d) for d in svc_dicts],
            [endpoint_slice_from_k8s(d) for d in slice_dicts]))
        ruleset, t_compute = timed(compute_ruleset, services, slices, NODE)
        state, t_save = timed(backend.read_state)
        text, t_render = timed(render_iptables, ruleset, state)
        _, t_restore = timed(backend.apply, text, state)
        full = dict(parse=t_parse, compute=t_compute, save=t_save,
                    render=t_render, restore=t_restore, lines=text.count("\n"))

        # Single-endpoint change: one pod of svc-0 replaced by another.
        changed = dict(slice_dicts[0])
        changed["endpoints"] = [endpoint("192.168.255.250", NODE.name)] + \
            list(changed["endpoints"][1:])
        slices2 = [endpoint_slice_from_k8s(changed)] + slices[1:]
        ruleset2, t_compute2 = timed(compute_ruleset, services, slices2, NODE)
        state2, t_save2 = timed(backend.read_state)
        rendered2, t_render2 = timed(render, ruleset2, state2)
        _, t_restore2 = timed(backend.apply, rendered2.text, state2)
        change = dict(compute=t_compute2, save=t_save2, render=t_render2,
                      restore=t_restore2, lines=rendered2.text.count("\n"))

        # The same kind of change as a partial sync (what IptablesBackend.sync
        # does when told which services changed): no iptables-save, only
        # svc-1's chains rewritten next to the top-level chains.
        known = state_after(state2, rendered2.text,
                            rendered2.active_chains | set(NAT_CHAINS))
        changed1 = dict(slice_dicts[1])
        changed1["endpoints"] = [endpoint("192.168.255.251", NODE.name)] + \
            list(changed1["endpoints"][1:])
        slices3 = slices2[:1] + [endpoint_slice_from_k8s(changed1)] + slices2[2:]
        ruleset3, t_compute3 = timed(compute_ruleset, services, slices3, NODE)
        rendered3, t_render3 = timed(render, ruleset3, known,
                                     frozenset({("bench", "svc-1")}))
        _, t_restore3 = timed(backend.apply, rendered3.text, known)
        partial = dict(compute=t_compute3, save=0.0, render=t_render3,
                       restore=t_restore3, lines=rendered3.text.count("\n"))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(services=n, endpoints_per_service=per_service, full=full,
                change=change, partial=partial, peak_rss_mib=own / 1024,
                binaries=flavour)


def table(results: list[dict]) -> str:
    head = (f"{'services':>9} {'phase':<14} {'parse':>7} {'compute':>8} "
            f"{'save':>7} {'render':>7} {'restore':>8} {'total':>7} "
            f"{'lines':>8}")
    rows = [head, "-" * len(head)]
    for r in results:
        for label, p in (("full sync", r["full"]),
                         ("1-ep, full", r["change"]),
                         ("1-ep, partial", r["partial"])):
            total = sum(p.get(k, 0.0) for k in
                        ("parse", "compute", "save", "render", "restore"))
            parse = f"{p['parse']:7.3f}" if "parse" in p else f"{'-':>7}"
            rows.append(
                f"{r['services']:>9} {label:<14} {parse} {p['compute']:8.3f} "
                f"{p['save']:7.3f} {p['render']:7.3f} {p['restore']:8.3f} "
                f"{total:7.3f} {p['lines']:>8}")
        rows.append(f"{'':>9} peak RSS of the agent process: "
                    f"{r['peak_rss_mib']:.0f} MiB ({r['binaries']}-restore)")
    return "\n".join(rows) + "\n(times in seconds)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000",
                        help="comma-separated service counts")
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--legacy", action="store_true",
                        help="use iptables-legacy-restore/-save instead of "
                             "the default (iptables-nft on this machine)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (creates a network namespace)", file=sys.stderr)
        return 2
    if args.one:
        print(json.dumps(one_size(args.one, args.endpoints, args.legacy)))
        return 0
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--one", str(n),
             "--endpoints", str(args.endpoints)]
            + (["--legacy"] if args.legacy else []),
            capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout))
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
