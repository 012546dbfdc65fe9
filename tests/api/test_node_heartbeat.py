"""Node Ready follows heartbeats: NotReady when the agent stops posting, Ready again when
it resumes."""

from __future__ import annotations

import datetime as dt
import json
import time


def node_status(kubectl, name: str) -> str:
    line = kubectl("get", "node", name, "--no-headers").split()
    return line[1]


def wait_for_status(kubectl, name: str, wanted: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    status = node_status(kubectl, name)
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        status = node_status(kubectl, name)
    return status


def heartbeat(kubectl, name: str) -> str:
    """Post a Ready heartbeat; returns the Ready status in the server's answer."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                        "message": "kubelet is posting ready status",
                                        "lastHeartbeatTime": now}]}}
    return kubectl("patch", "node", name, "--subresource=status", "-p", json.dumps(patch), "-o",
                   'jsonpath={.status.conditions[?(@.type=="Ready")].status}')


def test_node_not_ready_without_heartbeat_and_ready_after_one(make_server):
    _, kubectl = make_server(node_grace_period=1.0)
    assert wait_for_status(kubectl, "ip-172-31-0-11", "NotReady") == "NotReady"
    node = json.loads(kubectl("get", "node", "ip-172-31-0-11", "-o", "json"))
    taint = next(t for t in node["spec"]["taints"] if t["key"] == "node.kubernetes.io/unreachable")
    assert taint["effect"] == "NoSchedule"
    assert heartbeat(kubectl, "ip-172-31-0-11") == "True"
