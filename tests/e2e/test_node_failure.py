"""A node cut off from the VPC: its kubelet stops reporting (its API traffic
leaves from the node), the node goes NotReady after the spec's grace period,
its pods stop being ready endpoints everywhere, and all of it comes back
with the link."""
from __future__ import annotations

import functools
import time

import pytest
import yaml

import labtools
from labtools import admin_client, running_lab, svclab
from topo.spec import default_spec_path

eventually = functools.partial(labtools.wait_for, every=0.1)

pytestmark = [pytest.mark.root, pytest.mark.e2e]
GRACE = 3
VICTIM = "ip-172-31-0-12"


def ready_endpoint_nodes(api) -> list[str]:
    # None until the endpoints controller has written it
    eps = api.find("endpoints", "web", "default") or {}
    return sorted(a.get("nodeName") for s in eps.get("subsets") or []
                  for a in s.get("addresses") or [])


def node_ready(api, name: str) -> str:
    node = api.get("nodes", name)
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    spec = yaml.safe_load(default_spec_path().read_text())
    spec["nodeMonitorGracePeriod"] = GRACE
    path = tmp_path_factory.mktemp("spec") / "fast.yaml"
    path.write_text(yaml.safe_dump(spec))
    with running_lab("-f", str(path), prefix="nodefail") as running:
        yield running


def test_a_cut_off_node_goes_not_ready_and_its_pods_leave_the_endpoints(lab):
    api = admin_client(lab.name)
    svclab("kubectl", "--name", lab.name, "create", "deployment", "web", "--image=nginx",
           "--replicas=4")
    svclab("kubectl", "--name", lab.name, "expose", "deployment", "web", "--port", "80")
    eventually("4 ready endpoints", lambda: len(ready_endpoint_nodes(api)) == 4)
    assert VICTIM in ready_endpoint_nodes(api)

    lab.exec(VICTIM, "ip", "link", "set", "eth0", "down")
    cut = time.monotonic()
    eventually("NotReady", lambda: node_ready(api, VICTIM) == "Unknown", timeout=GRACE + 15)
    took = time.monotonic() - cut
    # Not at once: only after the grace period, less what had passed since the
    # last heartbeat (kubelets report 4 times per grace period) and the one
    # second resolution of lastHeartbeatTime.
    assert took >= GRACE - GRACE / 4 - 1.0, took
    eventually("victim's pods gone from endpoints",
               lambda: VICTIM not in ready_endpoint_nodes(api))
    assert ready_endpoint_nodes(api)                       # the others still serve
    status = svclab("kubectl", "--name", lab.name, "get", "nodes").stdout
    assert any(line.split()[:2] == [VICTIM, "NotReady"] for line in status.splitlines())

    lab.exec(VICTIM, "ip", "link", "set", "eth0", "up")
    eventually("Ready again", lambda: node_ready(api, VICTIM) == "True")
    # Each of the victim's pods comes back when its own readiness probe passes.
    eventually("victim's pods back", lambda: VICTIM in ready_endpoint_nodes(api))
    eventually("all 4 endpoints ready again", lambda: len(ready_endpoint_nodes(api)) == 4)
