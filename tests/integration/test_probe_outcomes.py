"""Every probe outcome against a known cause, on real packets (root): two
throwaway namespaces joined by a veth, netfilter rules in the target one.

    80  a listener                      -> open
    81  nothing listens                 -> refused (RST)
    82  REJECT icmp-port-unreachable    -> rejected, ICMP 3/3
    83  REJECT icmp-admin-prohibited    -> rejected, ICMP 3/13
    84  DROP                            -> dropped
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from probes.reach import Probe, ProbeResult

pytestmark = pytest.mark.root
RULES = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 82 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp --dport 83 -j REJECT --reject-with icmp-admin-prohibited
-A INPUT -p tcp --dport 84 -j DROP
-A INPUT -p udp --dport 84 -j DROP
COMMIT
"""
LISTEN = ("import socket, time; s = socket.socket(); "
          "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('10.99.0.2', 80)); s.listen(16); time.sleep(60)")


def sh(*argv, input=None):
    return subprocess.run(argv, input=input, capture_output=True, text=True, check=True)


@pytest.fixture
def pair():
    a, b = f"svtest-pa-{os.getpid()}", f"svtest-pb-{os.getpid()}"
    listener = None
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
           "netns", b)
        for ns, dev, ip in ((a, "veth0", "10.99.0.1"), (b, "veth1", "10.99.0.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", b, "iptables-restore", input=RULES)
        listener = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", LISTEN])
        deadline = time.monotonic() + 10
        while "10.99.0.2:80" not in sh("ip", "netns", "exec", b, "ss", "-ltn").stdout:
            assert time.monotonic() < deadline, "listener did not start"
            time.sleep(0.05)
        yield a
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(timeout=5)
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def probe(namespace: str, probes: list[Probe]) -> list[ProbeResult]:
    request = json.dumps({"probes": [p.__dict__ for p in probes], "timeout": 1.0})
    out = sh("ip", "netns", "exec", namespace, sys.executable, "-m", "probes.reach",
             input=request).stdout
    return [ProbeResult.from_json(r) for r in json.loads(out)]


def test_each_outcome_has_its_cause(pair):
    results = probe(pair, [Probe("10.99.0.2", port) for port in (80, 81, 82, 83, 84)]
                    + [Probe("10.99.0.2", 84, "udp"), Probe("10.99.0.2", 0, "icmp")])
    got = [(r.outcome, r.icmp_type, r.icmp_code, r.responder) for r in results]
    assert got == [
        ("open", None, None, "10.99.0.2"),
        ("refused", None, None, "10.99.0.2"),
        ("rejected", 3, 3, "10.99.0.2"),
        ("rejected", 3, 13, "10.99.0.2"),
        ("dropped", None, None, None),
        ("dropped", None, None, None),
        ("open", None, None, "10.99.0.2"),
    ]
    assert all(r.source == "10.99.0.1" for r in results if r.outcome != "dropped")
