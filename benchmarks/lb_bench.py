#!/usr/bin/env python3
"""Benchmark: time from `kubectl apply` of a LoadBalancer Service to the first
successful client connection through the ELB.

Brings up a lab of its own with three web pods (ELB wired by the daemon, or
beside it until the daemon does), then per run: starts a client loop in the
`client` host, `kubectl apply`s a Service (and creates its EndpointSlice while
the endpoints controller is not in the lab), watches the API for
status.loadBalancer.ingress[0].hostname, hands the name to the client loop,
which resolves it through the lab's public DNS and retries GET / every 20 ms
until it answers.  Prints per flavour the time to hostname, to first answer,
min/median/max; the target is <= 2 s at the default time factor (0.1).
Needs root.  Not a test: it prints, it does not assert.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.kube.client import KubeClient  # noqa: E402
from labd.control import ControlClient  # noqa: E402
from topo.cleanup import clean_lab  # noqa: E402
from topo.state import LabPaths, read_state  # noqa: E402

PODS = {"web-a": ("ip-172-31-0-11", "192.168.1.20"), "web-b": ("ip-172-31-0-12", "192.168.2.20"),
        "web-c": ("ip-172-31-0-12", "192.168.2.21")}
TARGET_SECONDS = 2.0
CLIENT_LOOP = """
import os, socket, sys, time, urllib.request
name_file, deadline = sys.argv[1], time.time() + 30
while not os.path.exists(name_file) or not open(name_file).read().strip():
    time.sleep(0.005)
    if time.time() > deadline: sys.exit("no hostname")
host = open(name_file).read().strip()
resolved = None
while time.time() < deadline:
    try:
        if resolved is None:
            resolved = socket.gethostbyname(host); resolved_at = time.time()
        body = urllib.request.urlopen(f"http://{host}/hostname", timeout=0.5).read().decode()
        print(resolved_at, time.time(), body, flush=True); sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit("no answer in 30 s")
"""


def svclab(*args: str, input: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "svclab.cli", *args], capture_output=True,
                          text=True, input=input, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"svclab {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def manifest(name: str, flavour: str) -> tuple[str, dict]:
    annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"} \
        if flavour == "nlb" else {}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default", "annotations": annotations},
               "spec": {"type": "LoadBalancer", "selector": {"app": name},
                        "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": f"{name}-manual", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": name}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": [ip], "nodeName": node,
                             "conditions": {"ready": True}} for node, ip in PODS.values()],
              "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}
    return json.dumps(service), slice_


def one_run(lab: str, flavour: str, index: int, workdir: Path) -> dict:
    api = KubeClient.from_kubeconfig(str(LabPaths(lab).kubeconfig))
    name = f"bench-{flavour}-{index}"
    name_file = workdir / f"{name}.host"
    client = read_state(LabPaths(lab)).find_host("client")
    loop = subprocess.Popen(["mnexec", "-a", str(client.pid), sys.executable, "-c",
                             CLIENT_LOOP, str(name_file)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)                                  # the loop is up and waiting
    started = time.time()
    service, endpoint_slice = manifest(name, flavour)
    svclab("kubectl", "--name", lab, "apply", "-f", "-", input=service)
    applied = time.time()
    # what the endpoints controller would do (kubectl apply does not validate
    # EndpointSlices against this API server's OpenAPI)
    api.create("endpointslices", endpoint_slice, namespace="default")
    hostname = None
    while hostname is None and time.time() - started < 30:
        svc = api.get("services", name, "default")
        ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        hostname = ingress[0]["hostname"] if ingress else None
        if hostname is None:
            time.sleep(0.01)
    named = time.time()
    name_file.write_text(hostname or "")
    out, _ = loop.communicate(timeout=40)
    api.delete("services", name, "default")
    api.delete("endpointslices", f"{name}-manual", "default")
    if loop.returncode != 0 or not out.strip():
        return {"flavour": flavour, "error": f"client loop exit {loop.returncode}"}
    resolved_at, answered_at, body = out.split(maxsplit=2)
    return {"flavour": flavour, "apply_s": applied - started, "hostname_s": named - started,
            "dns_s": float(resolved_at) - started, "first_answer_s": float(answered_at) - started,
            "pod": body.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lab", help="use this running lab instead of starting one")
    args = parser.parse_args()
    lab = args.lab or f"lbb-{uuid.uuid4().hex[:6]}"
    if not args.lab:
        svclab("up", "--name", lab)
    try:
        control = ControlClient(lab)
        for pod, (node, ip) in PODS.items():
            control.add_pod(pod, node, ip=ip, command=[
                sys.executable, "-m", "agents.workload", "--pod-name", pod, "--pod-ip", ip])
        with tempfile.TemporaryDirectory(prefix="lb-bench-") as workdir:
            for flavour in ("classic", "nlb"):
                runs = [one_run(lab, flavour, i, Path(workdir)) for i in range(args.runs)]
                report(flavour, runs)
                time.sleep(1.0)
    finally:
        if not args.lab:
            subprocess.run([sys.executable, "-m", "svclab.cli", "down", "--name", lab],
                           capture_output=True, timeout=120)
            clean_lab(lab)
    return 0


def report(flavour: str, runs: list[dict]) -> None:
    good = [r for r in runs if "error" not in r]
    print(f"\n{flavour}: {len(good)}/{len(runs)} runs answered")
    for r in runs:
        print("  " + ("error: " + r["error"] if "error" in r else
                      f"apply {r['apply_s']:.3f} s  hostname {r['hostname_s']:.3f} s  "
                      f"dns {r['dns_s']:.3f} s  first answer {r['first_answer_s']:.3f} s "
                      f"({r['pod']})"))
    if good:
        firsts = [r["first_answer_s"] for r in good]
        verdict = "meets" if statistics.median(firsts) <= TARGET_SECONDS else "misses"
        print(f"  first answer min {min(firsts):.3f} s  median {statistics.median(firsts):.3f}"
              f" s  max {max(firsts):.3f} s  ({verdict} the {TARGET_SECONDS:g} s target)")


if __name__ == "__main__":
    sys.exit(main())
