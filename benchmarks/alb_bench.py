#!/usr/bin/env python3
"""Benchmark: small HTTP requests per second through the ALB, and their latency.

Builds three throwaway namespaces (no lab): a client, the `elb` host running
the real ELB agent (python -m agents.elb) with one ALB, and the targets (one
small asyncio HTTP server per target address).  A load generator in the
client namespace keeps --connections keep-alive connections busy for
--seconds with `GET /` (a ~60-byte answer) and prints requests/s, latency
p50/p99/max, errors, the spread over targets, and the ALB process's CPU time
per request (the figure that does not depend on how busy the machine is);
--direct runs the same load straight at one target (from the elb namespace)
for comparison.  The goal on the project's 2-core machine is >= 2,000
requests/s through the ALB.  Needs root.  Not a test: it prints, it does not
assert.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.alb_api import (  # noqa: E402
    FORWARD,
    Action,
    Alb,
    AlbConfig,
    HealthCheck,
    Listener,
    Rule,
    Target,
    TargetGroup,
    write_alb_config,
)
from probes.stats import percentile  # noqa: E402

VIP, CLIENT, ELB_VPC, PORT = "10.96.200.10", "10.96.200.1", "10.96.201.1", 8080

TARGET = """
import asyncio, sys
answer = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n"
async def handle(reader, writer):
    body = ("hello from " + sys.argv[1] + "\\n").encode()
    reply = answer % len(body) + body
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(reply)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

LOAD = """
import asyncio, json, sys, time
host, port = sys.argv[1], int(sys.argv[2])
connections, seconds = int(sys.argv[3]), float(sys.argv[4])
request = b"GET / HTTP/1.1\\r\\nHost: bench.example.test\\r\\nUser-Agent: alb-bench\\r\\n\\r\\n"
latencies, errors, spread = [], [0], {}
async def worker(start, end):
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    while clock() < end:
        began = clock()
        writer.write(request)
        try:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            at = head.find(b"Content-Length: ")
            length = int(head[at + 16:head.find(b"\\r\\n", at)])
            body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            errors[0] += 1
            reader, writer = await asyncio.open_connection(host, port)
            continue
        if began >= start:
            if b" 200 " not in head[:13]:
                errors[0] += 1
            latencies.append(clock() - began)
            spread[body] = spread.get(body, 0) + 1
    writer.close()
async def main():
    now = time.perf_counter()
    start, end = now + 0.5, now + 0.5 + seconds        # half a second of warm-up
    await asyncio.gather(*(worker(start, end) for _ in range(connections)))
    print(json.dumps({"latencies": latencies, "errors": errors[0],
                      "spread": {k.decode().split()[-1]: v for k, v in spread.items()}}))
asyncio.run(main())
"""


def sh(*argv: str, input: str | None = None) -> str:
    return subprocess.run(argv, input=input, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def build(tag: str, targets: list[str]) -> tuple[str, str, str]:
    client, elb, side = (f"svbench-alb{x}-{tag}" for x in "cet")
    for ns in (client, elb, side):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", client, "link", "add", "veth0", "type", "veth", "peer", "name", "eth1",
       "netns", elb)
    sh("ip", "-n", elb, "link", "add", "eth0", "type", "veth", "peer", "name", "veth0",
       "netns", side)
    for ns, dev, addresses in ((client, "veth0", [CLIENT]), (elb, "eth1", ["10.96.200.2"]),
                               (elb, "eth0", [ELB_VPC]), (side, "veth0", targets)):
        for address in addresses:
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    return client, elb, side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--algorithm", default="round_robin",
                        choices=("round_robin", "least_outstanding_requests"))
    parser.add_argument("--direct", action="store_true",
                        help="also load one target directly, without the ALB")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    targets = [f"10.96.201.{11 + i}" for i in range(args.targets)]
    tag = str(os.getpid())
    processes: list[subprocess.Popen] = []
    namespaces: tuple[str, ...] = ()
    with tempfile.TemporaryDirectory(prefix="alb-bench-") as folder:
        try:
            namespaces = client, elb, side = build(tag, targets)
            for address in targets:
                processes.append(subprocess.Popen(
                    ["ip", "netns", "exec", side, sys.executable, "-c", TARGET, address,
                     str(PORT)], stdout=subprocess.PIPE, text=True))
                processes[-1].stdout.readline()
            group = TargetGroup("bench", targets=tuple(Target(a, PORT) for a in targets),
                                health_check=HealthCheck(interval=1.0, timeout=0.5),
                                algorithm=args.algorithm)
            write_alb_config(Path(folder) / "alb.json", AlbConfig((Alb(
                "k8s-bench-alb-1", "k8s-bench-alb-1.us-east-1.elb.amazonaws.com",
                "internet-facing", VIP, (Listener(80, "HTTP", rules=(
                    Rule(1, ("bench.example.test",), ("/*",), Action(FORWARD, "bench")),)),),
                (group,)),)))
            processes.append(subprocess.Popen(
                ["ip", "netns", "exec", elb, sys.executable, "-m", "agents.elb",
                 "--config", f"{folder}/config.json", "--status", f"{folder}/status.json",
                 "--vpc-ip", ELB_VPC, "--netns-inode", str(os.stat(f"/run/netns/{elb}").st_ino)],
                cwd=ROOT, stderr=subprocess.DEVNULL))
            wait_healthy(Path(folder) / "status.json", len(targets))
            runs = [("through the ALB", client, VIP, 80)]
            if args.direct:         # from the elb host, which reaches the targets
                runs.append(("straight to one target", elb, targets[0], PORT))
            print(f"{args.connections} keep-alive connections, {args.seconds:g} s each run, "
                  f"{len(targets)} targets, {args.algorithm}; load average "
                  f"{os.getloadavg()[0]:.2f} before")
            agent = processes[-1].pid
            for label, where, host, port in runs:
                before = cpu_seconds(agent)
                result = json.loads(sh(
                    "ip", "netns", "exec", where, sys.executable, "-c", LOAD, host, str(port),
                    str(args.connections), str(args.seconds)))
                report(label, result, args.seconds)
                if host == VIP:
                    user, system = (b - a for a, b in zip(before, cpu_seconds(agent)))
                    per = (user + system) / max(1, len(result["latencies"])) * 1e6
                    print(f"  the ALB process used {user:.2f} s user + {system:.2f} s system CPU:"
                          f" {per:.0f} us per request (warm-up included), i.e. "
                          f"~{1e6 / per:,.0f} requests/s per core")
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=10)
            for ns in namespaces:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wait_healthy(status: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            albs = json.loads(status.read_text())["applicationLoadBalancers"]
            if sum(t["state"] == "healthy" for t in albs[0]["targetGroups"][0]["targets"]) \
                    == count:
                return
        except (OSError, ValueError, IndexError, KeyError):
            pass
        time.sleep(0.1)
    raise SystemExit("the ALB's targets did not become healthy")


def report(label: str, result: dict, seconds: float) -> None:
    latencies = result["latencies"]
    ms = [v * 1000 for v in latencies]
    print(f"{label}: {len(latencies) / seconds:,.0f} requests/s, latency p50 "
          f"{percentile(ms, 0.5):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, max "
          f"{max(ms):.2f} ms, errors {result['errors']}, per target "
          f"{dict(sorted(result['spread'].items()))}")


if __name__ == "__main__":
    sys.exit(main())
