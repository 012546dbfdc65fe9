"""The nftables-vs-iptables scale measurement, shared by benchmark and experiment.

benchmarks/scale_bench.py (prints a table, writes CSV+PNG) and the `scale`
experiment (experiments/scale.py) both measure, for N services x 3 endpoints
and each proxy mode, in throwaway namespaces (svtest-scale-<pid>-*, deleted
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
ClusterIP (p50/p99 of connect()).  `measure(n, mode, connects)` runs one
case in a child (`python -m experiments.scale_measurement N MODE CONNECTS`);
`draw_latency` plots ours beside the Kubernetes blog's published points.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from contextlib import contextmanager

from agents.proxy import NodeInfo, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.agent import sync_rules
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.nft_backend import NftablesBackend

NODE_IP = "172.31.0.11"
NODE = NodeInfo("ip-172-31-0-11", (NODE_IP,), "192.168.0.0/16",
                "10.96.0.0/12")
CLIENT, EP1, EP1B, EP2 = ("192.168.250.2", "192.168.251.2", "192.168.251.3",
                          "192.168.252.2")
MODES = ("iptables", "nftables")
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


def one(n: int, mode: str, connects: int) -> dict:
    """One (N, mode) in fresh namespaces; runs in its own child process.

    Syncs are timed as the agent runs them (agents.proxy.agent.sync_rules:
    compute + backend.sync, GC paused; partial ones compute only the
    changed service).  Turning API objects into models happens as watch
    events arrive, not in a sync: it is reported apart (parse_s).
    """
    with topology(f"{mode[:3]}{n}") as names:
        node = names["node"]
        backend = (NftablesBackend(netns=node, timeout_s=600)
                   if mode == "nftables"
                   else IptablesBackend(netns=node, timeout_s=600))
        svc_dicts, slice_dicts, probe, vip = service_objects(n)
        (services, slices), t_parse = timed(
            lambda: ([service_from_k8s(d) for d in svc_dicts],
                     [endpoint_slice_from_k8s(d) for d in slice_dicts]))
        (ruleset, report), t_full = timed(
            lambda: sync_rules(backend, services, slices, NODE))

        def partial(key: tuple[str, str]):
            nonlocal ruleset
            (ruleset, result), took = timed(lambda: sync_rules(
                backend, services, slices, NODE, previous=ruleset,
                changed=frozenset({key})))
            return result, took

        services.append(service_from_k8s(service_dict(
            "added", "bench", cluster_ip="10.111.255.1",
            ports=[{"name": "http", "port": 80, "targetPort": 8080}])))
        slices.append(endpoint_slice_from_k8s(slice_dict(
            "added", "bench", endpoints=[endpoint(f"192.168.255.{j}", "x")
                                         for j in (1, 2, 3)])))
        add, t_add = partial(("bench", "added"))

        victim = 0 if probe != "svc-0" else 1
        changed = dict(slice_dicts[victim])
        changed["endpoints"] = [endpoint("192.168.254.254", "x")] + \
            list(changed["endpoints"][1:])
        slices[victim] = endpoint_slice_from_k8s(changed)
        change, t_change = partial(("bench", f"svc-{victim}"))

        del services[-1], slices[-1]                     # "added" goes away
        delete, t_delete = partial(("bench", "added"))
        (ruleset, resync), t_resync = timed(            # the periodic one
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
        mode=mode, services=n, endpoints_per_service=3,
        parse_s=round(t_parse, 4), full_sync_s=round(t_full, 4),
        full_lines=report.lines,
        add_sync_s=round(t_add, 4), add_partial=add.partial,
        change_sync_s=round(t_change, 4), change_partial=change.partial,
        delete_sync_s=round(t_delete, 4), delete_partial=delete.partial,
        resync_s=round(t_resync, 4), resync_partial=resync.partial,
        peak_rss_mib=round(peak, 1), connects=len(lat),
        p50_us=round(lat[len(lat) // 2], 1),
        p99_us=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1))


def targets(rows: list[dict]) -> list[str]:
    """The issue's targets for the nftables mode, as measured lines."""
    by = {(r["mode"], r["services"]): r for r in rows}
    lines = []
    big, small = by.get(("nftables", 10000)), by.get(("nftables", 100))
    if big:
        lines.append(f"nftables single-service change at 10k: "
                     f"{big['add_sync_s'] * 1e3:.0f} ms add, "
                     f"{big['change_sync_s'] * 1e3:.0f} ms endpoint change, "
                     f"{big['delete_sync_s'] * 1e3:.0f} ms delete "
                     f"(target <= 150 ms; compute + apply, as the agent)")
        lines.append(f"nftables full sync 10k x 3: {big['full_sync_s']:.2f} s"
                     f" into an empty table, {big['resync_s']:.2f} s resync "
                     f"of the full table (target <= 2 s; compute + apply; "
                     f"turning the API objects into models, done as events "
                     f"arrive: {big['parse_s']:.2f} s)")
    if big and small:
        lines.append(f"nftables p50 10k / 100: "
                     f"{big['p50_us'] / small['p50_us']:.2f}x (target <= 1.3x)")
    return lines


class ScaleError(RuntimeError):
    """A measurement child failed (its argv, exit code and stderr)."""


def measure(n: int, mode: str, connects: int, timeout: float = 3600) -> dict:
    """One (N, mode) case in a child process of its own; its result row."""
    argv = [sys.executable, "-m", "experiments.scale_measurement", str(n), mode, str(connects)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise ScaleError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


COLOURS = {"iptables": "tab:red", "nftables": "tab:blue"}


def draw_latency(ax, rows: list[dict], pct: str) -> None:
    """First-packet latency vs N per mode, the blog's points dashed beside."""
    for mode in MODES:
        mine = sorted((r["services"], r[f"{pct}_us"]) for r in rows
                      if r["mode"] == mode)
        if mine:
            ax.plot(*zip(*mine), marker="o", color=COLOURS[mode],
                    label=f"svclab {mode} (this machine)")
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
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(json.dumps(one(n, mode, connects)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
