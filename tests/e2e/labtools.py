"""Helpers for end-to-end tests: drive labs through the real CLI."""
from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid

import pytest

from base.errors import LabTimeout
from base.kube.client import KubeClient
from base.waiting import wait_until
from probes.reach import Probe
from probes.runner import probe_from
from topo.cleanup import clean_lab
from topo.state import LabPaths


def svclab(*args, check=True, input=None, timeout=180):
    """Run the svclab CLI as a user would; returns the CompletedProcess."""
    argv = [sys.executable, "-m", "svclab.cli", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, input=input,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def host_snapshot() -> dict[str, str]:
    """What a lab must never change in the host's own namespace."""
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    iptables = "\n".join(l for l in run("iptables-save").splitlines()
                         if not l.startswith("#"))
    return {
        "routes": run("ip", "route", "show", "table", "all"),
        "links": re.sub(r"\s+", " ", run("ip", "-o", "link", "show")),
        "addresses": run("ip", "-o", "addr", "show"),
        "iptables": re.sub(r"\[\d+:\d+\]", "", iptables),
        "nftables": run("nft", "list", "ruleset"),
        "sysctls": run("sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                       "net.bridge.bridge-nf-call-iptables"),
        # Labs make no named namespace; the integration tests and the scale
        # experiment, which may run beside this test, make svtest-* ones.
        "netns": "".join(line for line in run("ip", "netns", "list").splitlines(True)
                         if not line.startswith("svtest-")),
    }


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def running_lab(*up_args: str, prefix: str = "e2e"):
    """A lab up for the block, always down and cleaned afterwards."""
    name = unique_name(prefix)
    svclab("up", "--name", name, *up_args)
    try:
        yield RunningLab(name)
    finally:
        down = svclab("down", "--name", name, check=False)
        clean_lab(name)
        assert down.returncode == 0, down.stderr


class RunningLab:
    def __init__(self, name: str):
        self.name = name

    def exec(self, host, *cmd, namespace=None, **kwargs):
        ns = ["-n", namespace] if namespace else []
        return svclab("exec", "--name", self.name, *ns, host, "--", *cmd, **kwargs)


def workload(name: str, ip: str, *ports: str) -> list[str]:
    """argv of the built-in workload server for a pod or host."""
    argv = [sys.executable, "-m", "agents.workload", "--pod-name", name, "--pod-ip", ip]
    for port in ports or ("80/TCP",):
        argv += ["--port", port]
    return argv


def http_get(lab, host: str, url: str, namespace: str | None = None) -> str:
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
    return lab.exec(host, sys.executable, "-c", code, url, namespace=namespace).stdout.strip()


def wait_open(lab_name: str, source: str, probe: Probe, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = probe_from(lab_name, source, [probe], timeout=0.5)[0]
        if result.outcome == "open":
            return
        assert time.monotonic() < deadline, f"{probe.label()} from {source}: {result}"
        time.sleep(0.1)


def outcomes(lab_name: str, source: str, probes: list[Probe], namespace=None) -> dict:
    results = probe_from(lab_name, source, probes, namespace=namespace, timeout=1.0)
    return {r.probe.label(): r.outcome for r in results}


FETCH = """
import json, sys, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
out = []
for _ in range(count):
    try:
        out.append(urllib.request.urlopen(url, timeout=5).read().decode())
    except Exception as err:
        out.append("ERROR " + type(err).__name__)
print(json.dumps(out))
"""


def fetch_many(lab, host: str, url: str, count: int, namespace: str | None = None) -> list[str]:
    """`count` new HTTP connections from inside a host; the bodies in order."""
    import json
    out = lab.exec(host, sys.executable, "-c", FETCH, url, str(count), namespace=namespace)
    return json.loads(out.stdout)


def admin_client(lab_name: str):
    """A KubeClient with the lab's admin kubeconfig."""
    return KubeClient.from_kubeconfig(str(LabPaths(lab_name).kubeconfig))


def wait_for(what: str, probe, timeout: float = 20.0, every: float = 0.05):
    """Poll probe() until it returns something true (and return that), or fail
    the test after `timeout` seconds, naming what was awaited."""
    try:
        return wait_until(what, probe, timeout, every)
    except LabTimeout as err:
        pytest.fail(str(err))
