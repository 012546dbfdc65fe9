"""Cluster DNS benchmark: queries/s and p50/p99 latency on loopback for a 1k-service zone.

Runs `python -m agents.dns` in its own process (so client and server do not
share a GIL) with a zone file of N services (ClusterIP, headless with
endpoints, ExternalName), then measures:
  * zone build time and ZoneHolder.update (swap) time, in-process;
  * sequential latency (one query in flight), p50/p99;
  * throughput with a window of outstanding UDP queries, for repeated
    queries (the server's reply cache) and for cache-missing ones (every
    query uses a new letter case, as DNS 0x20 resolvers do);
  * update-to-visible: after ZoneHolder.update, how long until a new service
    answers, measured against an in-process DnsServer.
Usage: .venv/bin/python benchmarks/dns_bench.py [--services 1000] [--seconds 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dns.message  # noqa: E402

from agents.dns import DnsServer, ZoneHolder, build_zone  # noqa: E402


def make_objects(count: int) -> dict:
    services, slices = [], []
    for i in range(count):
        name, namespace = f"svc-{i}", f"ns-{i % 10}"
        kind = i % 20
        if kind == 0:
            spec = {"type": "ExternalName", "externalName": f"ext-{i}.example.com"}
        elif kind < 4:
            spec = {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
            slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": f"{name}-a", "namespace": namespace,
                                        "labels": {"kubernetes.io/service-name": name}},
                           "endpoints": [{"addresses": [f"192.168.{i % 250}.{j + 1}"],
                                          "conditions": {"ready": True}} for j in range(3)],
                           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
        else:
            spec = {"clusterIP": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                    "ports": [{"name": "http", "port": 80}]}
        services.append({"metadata": {"name": name, "namespace": namespace}, "spec": spec})
    return {"services": services, "endpointslices": slices, "pods": []}


def query_names(count: int) -> list[str]:
    return [f"svc-{i}.ns-{i % 10}.svc.cluster.local." for i in range(count)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def sequential_latency(port: int, names: list[str], count: int) -> dict:
    rng = random.Random(1)
    latencies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(2)
        for _ in range(count):
            wire = dns.message.make_query(random_case(rng.choice(names), rng), "A").to_wire()
            started = time.perf_counter()
            sock.send(wire)
            sock.recv(65535)
            latencies.append(time.perf_counter() - started)
    return {"queries": count, "p50_ms": percentile(latencies, 0.5) * 1e3,
            "p99_ms": percentile(latencies, 0.99) * 1e3,
            "mean_ms": statistics.mean(latencies) * 1e3}


def windowed_throughput(port: int, names: list[str], seconds: float, window: int,
                        repeated: bool) -> dict:
    """Keep `window` queries outstanding; count answers per second (lost ones are re-sent)."""
    rng = random.Random(2)
    if repeated:
        prebuilt = [dns.message.make_query(name, "A").to_wire() for name in names]
    else:      # built before the clock starts, so the client's encoding cost is not measured
        prebuilt = [dns.message.make_query(random_case(rng.choice(names), rng), "A").to_wire()
                    for _ in range(int(seconds * 25000))]
    position = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.2)

        def next_query() -> bytes:
            nonlocal position
            if repeated:
                return rng.choice(prebuilt)
            position += 1
            return prebuilt[position % len(prebuilt)]

        answered = timeouts = 0
        for _ in range(window):
            sock.send(next_query())
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            try:
                sock.recv(65535)
                answered += 1
            except TimeoutError:
                timeouts += 1
                for _ in range(window):      # assume the window was lost; refill it
                    sock.send(next_query())
                continue
            sock.send(next_query())
        elapsed = time.perf_counter() - started
    return {"window": window, "answered": answered, "qps": answered / elapsed,
            "stalls": timeouts, "mode": "repeated (cache)" if repeated else "distinct (no cache)"}


def update_to_visible(objects: dict, rounds: int) -> dict:
    holder = ZoneHolder(services=objects["services"], slices=objects["endpointslices"])
    delays, builds = [], []
    with DnsServer("127.0.0.1", 0, holder) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(2)
        services = list(objects["services"])
        for i in range(rounds):
            name = f"new-{i}"
            services.append({"metadata": {"name": name, "namespace": "default"},
                             "spec": {"clusterIP": f"10.100.{i // 256}.{i % 256}"}})
            query = dns.message.make_query(f"{name}.default.svc.cluster.local.", "A")
            started = time.perf_counter()
            holder.update(services=services)
            builds.append(time.perf_counter() - started)
            while True:
                sock.send(query.to_wire())
                if dns.message.from_wire(sock.recv(65535)).answer:
                    break
            delays.append(time.perf_counter() - started)
    return {"rounds": rounds, "update_p50_ms": percentile(builds, 0.5) * 1e3,
            "visible_p50_ms": percentile(delays, 0.5) * 1e3,
            "visible_p99_ms": percentile(delays, 0.99) * 1e3}


def start_server(zone_path: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "agents.dns", "--listen", "127.0.0.1:0",
                                "--zone-file", zone_path], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"dns server did not start (exit {process.wait(5)})")
    return process, int(json.loads(line)["dns"].rsplit(":", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    objects = make_objects(args.services)
    started = time.perf_counter()
    build_zone(objects["services"], objects["endpointslices"])
    results = {"services": args.services, "zone_build_ms": (time.perf_counter() - started) * 1e3,
               "cpus": os.cpu_count()}
    names = query_names(args.services)
    with tempfile.TemporaryDirectory(prefix="svclab-dnsbench-") as folder:
        zone_path = os.path.join(folder, "objects.json")
        with open(zone_path, "w", encoding="utf-8") as handle:
            json.dump(objects, handle)
        process, port = start_server(zone_path)
        try:
            results["sequential"] = sequential_latency(port, names, 5000)
            results["throughput"] = [windowed_throughput(port, names, args.seconds, 32, True),
                                     windowed_throughput(port, names, args.seconds, 32, False)]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    results["update_to_visible"] = update_to_visible(objects, 50)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    seq = results["sequential"]
    print(f"zone of {args.services} services built in {results['zone_build_ms']:.1f} ms")
    print(f"sequential UDP latency over {seq['queries']} queries: p50 {seq['p50_ms']:.3f} ms, "
          f"p99 {seq['p99_ms']:.3f} ms")
    for row in results["throughput"]:
        print(f"throughput, {row['mode']}, window {row['window']}: {row['qps']:.0f} q/s "
              f"({row['answered']} answers, {row['stalls']} stalls)")
    upd = results["update_to_visible"]
    print(f"update -> new service answers: p50 {upd['visible_p50_ms']:.1f} ms, "
          f"p99 {upd['visible_p99_ms']:.1f} ms (rebuild+swap p50 {upd['update_p50_ms']:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
