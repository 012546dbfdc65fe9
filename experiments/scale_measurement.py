"""The nftables-vs-iptables scale measurement, shared by benchmark and experiment.

benchmarks/scale_bench.py (prints a table, writes CSV+PNG) and the `scale`
experiment (experiments/scale.py) both measure, for N services x 3 endpoints
and each variant -- nftables mode, and iptables mode through either iptables
backend (nft or legacy; a lab node gets one from the spec's iptablesBackend,
topo/iptables_alt.py, here the variant's own binaries are named) -- in
throwaway namespaces (svtest-scale-<pid>-*, deleted
afterwards) and in a child process of its own (so its peak RSS is its own):

  node     the rules, ip_forward on; veths to the three below
  client   192.168.250.2, a pod-like source (no masquerade)
  ep1/ep2  a tiny TCP server on :8080 (ep1 holds two endpoint IPs)

the full sync into an empty table (compute + backend.sync, as the agent
runs it; turning API objects into models is reported apart), a
single-service add, a single-endpoint change and a service delete (partial
syncs), a full resync of the filled table (the periodic one), the child's
peak RSS, and the
first-packet latency of many new TCP connections from the client to one
ClusterIP (p50/p99 of connect()).  `measure(n, mode, connects, reps,
backend)` runs one case in a child (`python -m experiments.scale_measurement
N MODE CONNECTS REPS BACKEND`);
`draw_latency` plots ours beside the Kubernetes blog's published points.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager

from agents.proxy import NodeInfo, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.agent import resync_skippable, sync_rules
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.nft_backend import NftablesBackend

NODE_IP = "172.31.0.11"
NODE = NodeInfo("ip-172-31-0-11", (NODE_IP,), "192.168.0.0/16",
                "10.96.0.0/12")
CLIENT, EP1, EP1B, EP2 = ("192.168.250.2", "192.168.251.2", "192.168.251.3",
                          "192.168.252.2")
MODES = ("iptables", "nftables")
IPTABLES_BACKENDS = ("nft", "legacy")
# What the rows are drawn and tabled by: (mode, backend); nftables mode has none.
VARIANTS = (("iptables", "nft"), ("iptables", "legacy"), ("nftables", ""))
# Kubernetes blog "NFTables mode for kube-proxy" (2025), first-packet round
# trip in µs read off its chart (docs/performance-anchors.md).
BLOG = {"iptables": {"p50": {5000: 49, 10000: 61, 30000: 274},
                     "p99": {5000: 156, 10000: 262, 30000: 716}},
        "nftables": {"p50": {5000: 14, 10000: 14, 30000: 14},
                     "p99": {5000: 37, 10000: 37, 30000: 37}}}
SERVER = ("import socket\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
          "socket.SO_REUSEADDR, 1)\n"
          "s.bind(('0.0.0.0', 8080)); s.listen(4096)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.close()\n")
CLIENT_SCRIPT = (
    "import json, socket, struct, sys, time\n"
    "vip, n = sys.argv[1], int(sys.argv[2])\n"
    "linger = struct.pack('ii', 1, 0)\n"
    "out = []\n"
    "for i in range(n + 100):\n"
    "    s = socket.socket(); s.settimeout(2)\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)\n"
    "    t = time.perf_counter_ns(); s.connect((vip, 80))\n"
    "    d = time.perf_counter_ns() - t; s.close()\n"
    "    if i >= 100: out.append(d / 1000)\n"
    "print(json.dumps(out))\n")


def sh(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def topology(tag: str):
    """node + client + two endpoint namespaces; every one deleted after."""
    names = {k: f"svtest-scale-{os.getpid()}-{tag}-{k}"
             for k in ("node", "cl", "e1", "e2")}
    created: list[str] = []
    servers: list[subprocess.Popen] = []
    try:
        for ns in names.values():
            sh("ip", "netns", "add", ns)
            created.append(ns)
        node = names["node"]

        def in_ns(ns, *cmd):
            sh("ip", "netns", "exec", ns, *cmd)

        in_ns(node, "ip", "link", "set", "lo", "up")
        in_ns(node, "ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
        in_ns(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key, addrs, net in (("cl", [CLIENT], "250"),
                                ("e1", [EP1, EP1B], "251"),
                                ("e2", [EP2], "252")):
            ns, inside = names[key], f"v{key}"
            sh("ip", "link", "add", inside, "netns", ns, "type", "veth",
               "peer", "name", f"n{key}", "netns", node)
            in_ns(node, "ip", "addr", "add", f"192.168.{net}.1/24", "dev",
                  f"n{key}")
            in_ns(node, "ip", "link", "set", f"n{key}", "up")
            for addr in addrs:
                in_ns(ns, "ip", "addr", "add", f"{addr}/24", "dev", inside)
            in_ns(ns, "ip", "link", "set", inside, "up")
            in_ns(ns, "ip", "link", "set", "lo", "up")
            in_ns(ns, "ip", "route", "add", "default", "via",
                  f"192.168.{net}.1")
        for key in ("e1", "e2"):
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", names[key], sys.executable, "-c",
                 SERVER], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        yield names
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(timeout=10)
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True,
                           timeout=30, check=False)


def service_objects(n: int):
    """n ClusterIP services x 3 endpoints; the middle one gets real ones."""
    services, slices = [], []
    for i in range(n):
        services.append(service_dict(
            f"svc-{i}", "bench",
            cluster_ip=f"10.{96 + (i + 1) // 65536}.{(i + 1) // 256 % 256}."
                       f"{(i + 1) % 256}",
            ports=[{"name": "http", "port": 80, "targetPort": 8080}]))
        ips = [f"192.168.{k // 250 % 240}.{k % 250 + 1}"
               for k in range(3 * i, 3 * i + 3)]
        slices.append((f"svc-{i}", ips))
    probe = sorted(f"svc-{i}" for i in range(n))[n // 2]
    slices = [slice_dict(name, "bench", endpoints=[
        endpoint(ip, "other-node") for ip in (
            [EP1, EP1B, EP2] if name == probe else ips)])
        for name, ips in slices]
    vip = next(s["spec"]["clusterIP"] for s in services
               if s["metadata"]["name"] == probe)
    return services, slices, probe, vip


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def spread(prefix: str, seconds: list[float]) -> dict:
    """p50/p99/max in ms of repeated timings, rounded."""
    ms = [t * 1e3 for t in seconds]
    return {f"{prefix}_p50_ms": round(percentile(ms, 50), 2),
            f"{prefix}_p99_ms": round(percentile(ms, 99), 2),
            f"{prefix}_max_ms": round(max(ms), 2)}


def variant(row: dict) -> str:
    """A row's variant name: iptables-nft, iptables-legacy or nftables."""
    return f"{row['mode']}-{row['backend']}" if row.get("backend") else row["mode"]


def one(n: int, mode: str, connects: int, reps: int = 20,
        iptables_backend: str = "nft") -> dict:
    """One (N, mode) in fresh namespaces; runs in its own child process.

    Syncs are timed as the agent runs them (agents.proxy.agent.sync_rules:
    compute + backend.sync, GC paused; partial ones compute only the
    changed service).  Turning API objects into models happens as watch
    events arrive, not in a sync: it is reported apart (parse_s).  Each
    partial operation runs ``reps`` times: add a service, change one
    endpoint of another, delete the added one.  The periodic resync is
    timed twice: as the agent runs it with nothing changed (the
    generation check, ``resync_noop``; ``reps`` times) and forced (a full
    rewrite of the filled table, what a resync after somebody else's
    commit costs).  iptables_backend: the variant iptables mode runs.
    """
    if iptables_backend not in IPTABLES_BACKENDS:
        raise ValueError(f"iptables backend {iptables_backend!r}: allowed "
                         + ", ".join(IPTABLES_BACKENDS))
    flavour = iptables_backend if mode == "iptables" else ""
    with topology(f"{mode[:3]}{flavour[:1]}{n}") as names:
        node = names["node"]
        backend = (NftablesBackend(netns=node, timeout_s=1800)
                   if mode == "nftables"
                   else IptablesBackend(netns=node, timeout_s=1800,
                                        restore_binary=f"iptables-{flavour}-restore",
                                        save_binary=f"iptables-{flavour}-save"))
        svc_dicts, slice_dicts, probe, vip = service_objects(n)
        (services, slices), t_parse = timed(
            lambda: ([service_from_k8s(d) for d in svc_dicts],
                     [endpoint_slice_from_k8s(d) for d in slice_dicts]))
        (ruleset, report), t_full = timed(
            lambda: sync_rules(backend, services, slices, NODE))

        def partial(key: tuple[str, str]) -> float:
            nonlocal ruleset
            # only the changed service's objects, as the agent passes them
            # (its change tracker's objects_of)
            mine = ([s for s in services if (s.namespace, s.name) == key],
                    [s for s in slices if (s.namespace, s.service_name) == key])
            (ruleset, result), took = timed(lambda: sync_rules(
                backend, *mine, NODE, previous=ruleset,
                changed=frozenset({key})))
            if not result.partial:
                raise RuntimeError(f"{key}: a full sync where a partial "
                                   "one was expected")
            return took

        adds, changes, deletes = [], [], []
        victim = 0 if probe != "svc-0" else 1
        for k in range(reps):
            name = f"added-{k}"
            services.append(service_from_k8s(service_dict(
                name, "bench", cluster_ip=f"10.111.{k // 250}.{k % 250 + 1}",
                ports=[{"name": "http", "port": 80, "targetPort": 8080}])))
            slices.append(endpoint_slice_from_k8s(slice_dict(
                name, "bench", endpoints=[
                    endpoint(f"192.168.255.{3 * (k % 80) + j}", "x")
                    for j in (1, 2, 3)])))
            adds.append(partial(("bench", name)))
            changed = dict(slice_dicts[victim])
            changed["endpoints"] = [endpoint(f"192.168.254.{k % 250 + 1}",
                                             "x")] + list(changed["endpoints"][1:])
            slices[victim] = endpoint_slice_from_k8s(changed)
            changes.append(partial(("bench", f"svc-{victim}")))
            del services[-1], slices[-1]
            deletes.append(partial(("bench", name)))
        noop = []
        for _ in range(reps):                    # the periodic sync, as the agent
            skipped, took = timed(resync_skippable, backend, ruleset, NODE)
            noop.append(took)
        (ruleset, resync), t_resync = timed(     # forced: the repair path
            lambda: sync_rules(backend, services, slices, NODE))

        deadline = time.monotonic() + 10
        while True:                         # servers listening?
            try:
                sh("ip", "netns", "exec", names["cl"], sys.executable, "-c",
                   CLIENT_SCRIPT, vip, "1")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        lat = sorted(json.loads(sh(
            "ip", "netns", "exec", names["cl"], sys.executable, "-c",
            CLIENT_SCRIPT, vip, str(connects), timeout=600)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        mode=mode, backend=flavour, services=n, endpoints_per_service=3, reps=reps,
        parse_s=round(t_parse, 4), full_sync_s=round(t_full, 4),
        full_lines=report.lines,
        **spread("add", adds), **spread("change", changes),
        **spread("delete", deletes),
        resync_noop_skipped=skipped, **spread("resync_noop", noop),
        resync_s=round(t_resync, 4), resync_partial=resync.partial,
        peak_rss_mib=round(peak, 1), connects=len(lat),
        p50_us=round(percentile(lat, 50), 1),
        p99_us=round(percentile(lat, 99), 1))


# issue 22's targets for the nftables mode: N -> (partial p99 ms, full s,
# noop resync ms or None, first-packet p50 ratio to 100 services or None)
TARGETS = {10000: (100, 1.5, 50, None), 30000: (150, 5.0, None, 1.2)}


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets for the nftables mode, as measured lines."""
    by = {(r["mode"], r["services"]): r for r in rows}
    small = by.get(("nftables", 100))
    lines = []
    for n, (partial_ms, full_s, noop_ms, ratio) in TARGETS.items():
        r = by.get(("nftables", n))
        if not r:
            continue

        def mark(ok: bool) -> str:
            return "met" if ok else "NOT met"
        worst = max(r["add_p99_ms"], r["change_p99_ms"], r["delete_p99_ms"])
        lines.append(
            f"nftables {n // 1000}k partial syncs ({r['reps']} each) p50/p99 ms: "
            f"add {r['add_p50_ms']:.0f}/{r['add_p99_ms']:.0f}, change "
            f"{r['change_p50_ms']:.0f}/{r['change_p99_ms']:.0f}, delete "
            f"{r['delete_p50_ms']:.0f}/{r['delete_p99_ms']:.0f} (target p99 <= "
            f"{partial_ms} ms: {mark(worst <= partial_ms)})")
        lines.append(
            f"nftables {n // 1000}k full sync {r['full_sync_s']:.2f} s (target <= "
            f"{full_s} s: {mark(r['full_sync_s'] <= full_s)}); forced resync "
            f"{r['resync_s']:.2f} s; turning API objects into models (as events "
            f"arrive) {r['parse_s']:.2f} s")
        noop = (f"periodic resync, nothing changed: p50 {r['resync_noop_p50_ms']:.2f} "
                f"ms, p99 {r['resync_noop_p99_ms']:.2f} ms "
                f"({'skipped' if r['resync_noop_skipped'] else 'NOT skipped'})")
        if noop_ms is not None:
            noop += f" (target <= {noop_ms} ms: {mark(r['resync_noop_p99_ms'] <= noop_ms)})"
        lines.append(f"nftables {n // 1000}k {noop}")
        if ratio is not None and small:
            got = r["p50_us"] / small["p50_us"]
            lines.append(f"nftables first-packet p50 {n // 1000}k / 100: {got:.2f}x "
                         f"({r['p50_us']:.0f} / {small['p50_us']:.0f} µs; target <= "
                         f"{ratio}x: {mark(got <= ratio)})")
    return lines


class ScaleError(RuntimeError):
    """A measurement child failed (its argv, exit code and stderr)."""


def measure(n: int, mode: str, connects: int, reps: int = 20,
            timeout: float = 7200, backend: str = "nft") -> dict:
    """One (N, mode, iptables backend) case in a child process of its own;
    its result row."""
    argv = [sys.executable, "-m", "experiments.scale_measurement", str(n), mode,
            str(connects), str(reps), backend]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise ScaleError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


COLOURS = {"iptables": "tab:red", "nftables": "tab:blue",
           "iptables-nft": "tab:red", "iptables-legacy": "tab:orange"}


def draw_latency(ax, rows: list[dict], pct: str) -> None:
    """First-packet latency vs N per variant, the blog's points dashed beside."""
    for name in sorted({variant(r) for r in rows}):
        mine = sorted((r["services"], r[f"{pct}_us"]) for r in rows
                      if variant(r) == name)
        ax.plot(*zip(*mine), marker="o", color=COLOURS[name],
                label=f"svclab {name} (this machine)")
    for mode in MODES:
        ref = sorted(BLOG[mode][pct].items())
        ax.plot(*zip(*ref), linestyle="--", marker="x", color=COLOURS[mode],
                alpha=0.6, label=f"k8s blog {mode} (published, other hardware)")
    ax.set_xscale("log")
    ax.set_xlabel("number of Services")
    ax.set_ylabel(f"first-packet connect latency {pct} (µs)")
    ax.set_title(f"{pct}: new TCP connection to a ClusterIP")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def main(argv: list[str]) -> int:
    n, mode, connects = int(argv[0]), argv[1], int(argv[2])
    reps = int(argv[3]) if len(argv) > 3 else 20
    backend = argv[4] if len(argv) > 4 else "nft"
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(json.dumps(one(n, mode, connects, reps, backend)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
