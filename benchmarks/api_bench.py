"""Benchmark of the svclab API server: latency (p50/p99) and throughput on loopback.

Starts ``python -m controlplane.api`` in a subprocess (so client threads do not
share the server's GIL), then drives it over HTTPS with the admin client
certificate from N concurrent keep-alive clients:

  get     GET  /api/v1/namespaces/default/services/kubernetes
  list    GET  /api/v1/namespaces/default/services   (with --list-size services present)
  create  POST /api/v1/namespaces/default/services   (ClusterIP, allocates an IP)
  watch   W watchers on services; time from each create's response to its ADDED
          event at every watcher

Usage: .venv/bin/python benchmarks/api_bench.py [--clients 8] [--requests 200] [--watchers 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER_INFO = {
    "serviceCIDR": "10.96.0.0/12", "nodePortRange": "30000-32767", "podCIDR": "192.168.0.0/16",
    "clusterDomain": "cluster.local", "controlPlaneEndpoint": {"ip": "172.31.0.10", "port": 6443},
    "nodes": [{"name": f"ip-172-31-0-{10 + i}", "role": "control-plane" if i == 0 else "worker",
               "internalIP": f"172.31.0.{10 + i}", "externalIP": f"198.51.100.{10 + i}",
               "podCIDR": f"192.168.{i}.0/24"} for i in range(3)],
}


class Server:
    """The API server subprocess; stopped (SIGTERM, bounded wait) on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "info.json").write_text(json.dumps(CLUSTER_INFO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.api", "--state-dir", str(workdir / "state"),
             "--cluster-info", str(workdir / "info.json"), "--listen", "127.0.0.1:0"],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        line = self.proc.stdout.readline()
        if not line.startswith("listening on https://"):
            self.stop()
            raise RuntimeError(f"API server did not start: {line!r}")
        host, port = line.split("https://", 1)[1].strip().split(":")
        self.host, self.port = host, int(port)
        state = workdir / "state"
        self.context = ssl.create_default_context(cafile=str(state / "ca.crt"))
        self.context.load_cert_chain(str(state / "admin.crt"), str(state / "admin.key"))

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def call(conn, method, path, body=None) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


def service_body(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": {"app": name},
                                "ports": [{"port": 80, "targetPort": 8080}]}})


def run_clients(server: Server, clients: int, per_client: int,
                make_request) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def worker(index: int) -> None:
        conn = server.connect()
        mine = []
        try:
            for i in range(per_client):
                method, path, body, expect = make_request(index, i)
                start = time.perf_counter()
                status, data = call(conn, method, path, body)
                mine.append(time.perf_counter() - start)
                if status != expect:
                    failures.append(f"{method} {path}: {status} {data[:200]!r}")
                    return
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(failures[0])
    return latencies, elapsed


def report(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(f"{name:<28} n={len(ordered):<6} p50={p50:7.2f} ms  p99={p99:7.2f} ms  "
          f"throughput={len(ordered) / elapsed:8.1f} req/s")


def watch_fanout(server: Server, watchers: int, creates: int) -> None:
    received: dict[str, list[float]] = {}
    lock = threading.Lock()
    ready = threading.Barrier(watchers + 1, timeout=30)
    conn = server.connect()
    _, data = call(conn, "GET", "/api/v1/namespaces/default/services")
    rv = json.loads(data)["metadata"]["resourceVersion"]

    def watcher() -> None:
        wconn = server.connect()
        try:
            wconn.request("GET", "/api/v1/namespaces/default/services?watch=true"
                                 f"&resourceVersion={rv}&timeoutSeconds=60")
            resp = wconn.getresponse()
            ready.wait()
            seen = 0
            while seen < creates:
                line = resp.readline()
                if not line:
                    return
                event = json.loads(line)
                if (event["type"] == "ADDED"
                        and event["object"]["metadata"]["name"].startswith("fan-")):
                    with lock:
                        received.setdefault(event["object"]["metadata"]["name"], []).append(
                            time.perf_counter())
                    seen += 1
        finally:
            wconn.close()
    threads = [threading.Thread(target=watcher) for _ in range(watchers)]
    for t in threads:
        t.start()
    ready.wait()
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(creates):
        name = f"fan-{i}"
        sent[name] = time.perf_counter()
        status, _ = call(conn, "POST", "/api/v1/namespaces/default/services", service_body(name))
        if status != 201:
            raise RuntimeError(f"create {name}: {status}")
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - start
    conn.close()
    delays = [max(0.0, ts - sent[name]) for name, stamps in received.items() for ts in stamps]
    delivered = len(delays)
    print(f"{'watch fan-out':<28} watchers={watchers} creates={creates} delivered={delivered}/"
          f"{watchers * creates}  p50={statistics.median(delays) * 1000:7.2f} ms  "
          f"p99={sorted(delays)[int(len(delays) * 0.99) - 1] * 1000:7.2f} ms  "
          f"events/s={delivered / elapsed:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per client per phase")
    parser.add_argument("--list-size", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--watch-creates", type=int, default=50)
    args = parser.parse_args()
    with (tempfile.TemporaryDirectory(prefix="svclab-api-bench-") as tmp,
          Server(Path(tmp)) as server):
        print(f"svclab API server on {server.host}:{server.port}; clients={args.clients}, "
              f"requests/client={args.requests}")
        lat, el = run_clients(server, args.clients, args.requests, lambda c, i: (
            "POST", "/api/v1/namespaces/default/services", service_body(f"c{c}-{i}"), 201))
        report("create service", lat, el)
        lat, el = run_clients(server, args.clients, args.requests, lambda c, i: (
            "GET", "/api/v1/namespaces/default/services/kubernetes", None, 200))
        report("get service", lat, el)
        total = args.clients * args.requests + 1
        lat, el = run_clients(server, args.clients, max(1, args.requests // 10), lambda c, i: (
            "GET", "/api/v1/namespaces/default/services", None, 200))
        report(f"list services ({total} items)", lat, el)
        lat, el = run_clients(server, args.clients, max(1, args.requests // 10), lambda c, i: (
            "GET", "/api/v1/namespaces/default/services?labelSelector=app%3Dc0-1", None, 200))
        report("list with labelSelector", lat, el)
        lat, el = run_clients(server, 1, args.requests, lambda c, i: (
            "GET", "/api/v1/namespaces/default/services/kubernetes", None, 200))
        report("get service (1 client)", lat, el)
        watch_fanout(server, args.watchers, args.watch_creates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
