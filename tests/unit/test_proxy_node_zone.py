"""The proxy agent learns its node's zone from its own Node object, as
kube-proxy does: it watches only that Node (a field selector on its name),
reads the topology.kubernetes.io/zone label, and re-syncs everything when
the label changes.  Against an in-process API server, no root."""
from __future__ import annotations

import time

import pytest

from agents.proxy.agent import AgentConfig, ProxyAgent
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import SyncReport

ZONE = "topology.kubernetes.io/zone"


class RecordingBackend:
    def __init__(self):
        self.calls = []

    def sync(self, ruleset, changed_services=None):
        self.calls.append((ruleset, changed_services))
        return SyncReport(lines=1, partial=changed_services is not None,
                          stale_chains=(), inserted_jumps=0)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def agent(api_client):
    backend = RecordingBackend()
    config = AgentConfig(node="n1", min_sync_period=0.05, sync_period=30,
                         healthz=None, metrics=None)
    with ProxyAgent(api_client, config, backend=backend) as running:
        running.recorder = backend
        yield running


def web_endpoints(ruleset) -> list[str]:
    sp = next((sp for sp in ruleset.service_ports if sp.name.service == "web"), None)
    return [] if sp is None else [e.ip for e in sp.endpoints.cluster]


def test_the_zone_label_is_learned_and_a_change_resyncs_everything(agent, api_client):
    api = api_client
    api.create("services", service_dict("web", cluster_ip="10.96.5.5"), namespace="default")
    api.create("endpointslices", slice_dict("web", endpoints=[
        endpoint("192.168.1.5", "n1", zone="us-east-1a", for_zones=("us-east-1a",)),
        endpoint("192.168.2.5", "n2", zone="us-east-1b", for_zones=("us-east-1b",))]),
        namespace="default")
    # no label yet: hints cannot be matched, every endpoint is used
    wait_for(lambda: web_endpoints(agent.recorder.calls[-1][0]) == [
        "192.168.1.5", "192.168.2.5"])
    assert agent.recorder.calls[-1][0].node.zone is None

    api.patch("nodes", "n1", {"metadata": {"labels": {ZONE: "us-east-1b"}}})
    wait_for(lambda: agent.recorder.calls[-1][0].node.zone == "us-east-1b")
    ruleset, changed = agent.recorder.calls[-1]
    assert changed is None                                   # a full sync
    assert web_endpoints(ruleset) == ["192.168.2.5"]
    assert [sp.name.service for sp in ruleset.service_ports] == ["kubernetes", "web"]

    synced = len(agent.recorder.calls)
    api.patch("nodes", "n1", {"metadata": {"labels": {"unrelated": "x"}}})
    api.patch("nodes", "n1", {"metadata": {"labels": {ZONE: "us-east-1a"}}})
    wait_for(lambda: agent.recorder.calls[-1][0].node.zone == "us-east-1a")
    assert web_endpoints(agent.recorder.calls[-1][0]) == ["192.168.1.5"]
    assert len(agent.recorder.calls) == synced + 1           # the other label: no sync


def test_the_agent_watches_only_its_own_node(agent, api_client):
    other = {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": "n2", "labels": {ZONE: "us-east-1c"}},
             "status": {"addresses": [{"type": "InternalIP", "address": "172.31.32.12"}]}}
    api_client.create("nodes", other)
    # an event after n2's: once the agent has seen it, it would have seen n2's
    api_client.patch("nodes", "n1", {"metadata": {"labels": {ZONE: "us-east-1a"}}})
    wait_for(lambda: agent.node_info().zone == "us-east-1a")
    assert api_client.find("nodes", "n2") is not None
    assert [n["metadata"]["name"] for n in agent.informers["nodes"].items()] == ["n1"]
