"""Pod verbs benchmark: what exec and port-forward cost (root, a real lab).

Prints, on a fresh lab with one `web` pod:
  * `kubectl exec POD -- true` wall time next to `kubectl get pod POD` (the
    same kubectl start-up, discovery and TLS), min / median / max of --runs;
    the difference is what the exec itself costs (target: under 50 ms);
  * port-forward throughput: 100 MB from a one-shot sender in the pod, read
    through `kubectl port-forward` on 127.0.0.1 (MB/s);
  * 50 concurrent `kubectl exec`s: how many finished with exit code 0, and
    the wall time of the batch;
  * `kubectl logs -f`: from the moment the runtime stamped an access-log line
    (its CRI timestamp) until kubectl printed it (target: under 1 s).

    sudo .venv/bin/python benchmarks/pod_verbs_bench.py [--runs N] [--json]
"""
from __future__ import annotations

import argparse
import calendar
import concurrent.futures
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from base.waiting import wait_until
from labd import lifecycle
from topo.state import LabPaths

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
TRANSFER = 100 * 1024 * 1024
SENDER_PORT = 9100
# A one-shot sender: accept one connection, write TRANSFER bytes, exit.
SENDER = ("import socket, sys; s = socket.create_server(('0.0.0.0', int(sys.argv[1]))); "
          "c, _ = s.accept(); block = bytes(1 << 20); "
          "[c.sendall(block) for _ in range(int(sys.argv[2]) >> 20)]; c.close()")


class Kubectl:
    def __init__(self, lab: str, home: str):
        self.base = [KUBECTL, "--kubeconfig", str(LabPaths(lab).kubeconfig)]
        self.env = {**os.environ, "HOME": home}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              env=self.env, timeout=120)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*self.base, *args], env=self.env, **kwargs)

    def timed(self, *args: str) -> float:
        started = time.perf_counter()
        proc = self.run(*args)
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return took


def spread(values: list[float], scale: float = 1000.0) -> str:
    return (f"{min(values) * scale:.0f} / {statistics.median(values) * scale:.0f} / "
            f"{max(values) * scale:.0f}")


def exec_overhead(k: Kubectl, pod: str, runs: int) -> dict:
    k.timed("get", "pod", pod)                       # warm the discovery cache
    get, exe = [], []
    for _ in range(runs):                            # interleaved: same conditions
        get.append(k.timed("get", "pod", pod))
        exe.append(k.timed("exec", pod, "--", "true"))
    return {"get_ms": [round(x * 1000, 1) for x in get],
            "exec_ms": [round(x * 1000, 1) for x in exe],
            "overhead_median_ms": round((statistics.median(exe) - statistics.median(get))
                                        * 1000, 1),
            "text": f"kubectl get pod: {spread(get)} ms; kubectl exec -- true: "
                    f"{spread(exe)} ms (min / median / max)"}


def forward_throughput(k: Kubectl, pod: str) -> dict:
    sender = k.popen("exec", pod, "--", sys.executable, "-c", SENDER, str(SENDER_PORT),
                     str(TRANSFER), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    forward = k.popen("port-forward", pod, f":{SENDER_PORT}", stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([forward.stdout], [], [], 30)
        line = forward.stdout.readline() if ready else ""
        match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if not match:
            raise RuntimeError(f"port-forward did not start: {line!r}")
        port = int(match.group(1))
        time.sleep(0.5)                              # the sender binds in the pod
        received, started = 0, time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            while chunk := conn.recv(1 << 20):
                received += len(chunk)
        took = time.perf_counter() - started
    finally:
        for proc in (forward, sender):
            proc.kill()
            proc.wait(timeout=10)
    return {"bytes": received, "seconds": round(took, 3),
            "mb_per_s": round(received / took / 1e6, 1),
            "text": f"port-forward: {received / 1e6:.0f} MB in {took:.2f} s "
                    f"({received / took / 1e6:.0f} MB/s)"}


def concurrent_execs(k: Kubectl, pod: str, count: int = 50) -> dict:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        procs = list(pool.map(lambda i: k.run("exec", pod, "--", "echo", str(i)),
                              range(count)))
    took = time.perf_counter() - started
    ok = sum(p.returncode == 0 and p.stdout.strip() == str(i) for i, p in enumerate(procs))
    return {"count": count, "ok": ok, "seconds": round(took, 2),
            "text": f"{count} concurrent kubectl exec: {ok} ok in {took:.2f} s"}


def follow_latency(k: Kubectl, pod: str, requests: int = 10) -> dict:
    follow = k.popen("logs", "-f", "--tail=0", "--timestamps", pod, stdout=subprocess.PIPE,
                     text=True)
    latencies = []
    try:
        time.sleep(1.0)
        code = ("import time, urllib.request\n"
                f"for i in range({requests}):\n"
                "    urllib.request.urlopen(f'http://127.0.0.1/hostname?mark{i}').read()\n"
                "    time.sleep(0.2)\n")
        k.popen("exec", pod, "--", sys.executable, "-c", code, stdout=subprocess.DEVNULL)
        while len(latencies) < requests:
            ready, _, _ = select.select([follow.stdout], [], [], 15)
            if not ready:
                break
            line = follow.stdout.readline()
            arrived = time.time()
            if "?mark" in line:
                stamp = line.split(" ", 1)[0].rstrip("Z")
                whole, _, frac = stamp.partition(".")
                written = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) \
                    + float("0." + (frac or "0"))
                latencies.append(arrived - written)
    finally:
        follow.kill()
        follow.wait(timeout=10)
    if not latencies:
        raise RuntimeError("kubectl logs -f printed none of the access-log lines")
    return {"lines": len(latencies), "latency_ms": [round(x * 1000, 1) for x in latencies],
            "text": f"logs -f: {len(latencies)} lines, stamped -> printed {spread(latencies)} ms"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with lifecycle.running("podverbs") as lab, tempfile.TemporaryDirectory() as home:
        k = Kubectl(lab, home)
        k.run("run", "web", "--image=nginx", "--port=80")
        wait_until("pod web running", lambda: k.run(
            "get", "pod", "web", "-o", "jsonpath={.status.phase}").stdout == "Running", 60)
        results = {"exec": exec_overhead(k, "web", args.runs),
                   "port_forward": forward_throughput(k, "web"),
                   "concurrent_exec": concurrent_execs(k, "web"),
                   "logs_follow": follow_latency(k, "web")}
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for result in results.values():
            print(result["text"])
        print(f"exec overhead beyond kubectl's own start-up (median): "
              f"{results['exec']['overhead_median_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
