"""Node heartbeat Leases: kube-node-lease/<node>, held by the node, renewed by its kubelet."""
from __future__ import annotations

import datetime as dt

import pytest

from base.waiting import wait_until
from controlplane.kubelet.nodelease import LEASE_NAMESPACE, NodeLease, micro_time, new_lease
from support.controller_harness import NODES, InProcessCluster

T0 = dt.datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def test_a_lease_as_the_kubelet_writes_it():
    lease = new_lease("n1", "node-uid", 40, T0)
    assert lease == {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                          "uid": "node-uid"}]},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                 "renewTime": "2026-12-05T12:00:00.123456Z"}}
    assert micro_time(T0.astimezone(dt.timezone(dt.timedelta(hours=2)))) == \
        "2026-12-05T12:00:00.123456Z"


def test_the_time_factor_scales_duration_and_renewal():
    assert (NodeLease(None, "n1").duration, NodeLease(None, "n1").interval) == (40, 10.0)
    scaled = NodeLease(None, "n1", time_factor=0.1)
    assert (scaled.duration, scaled.interval) == (4, pytest.approx(1.0))


@pytest.fixture
def node_uid(api_client) -> str:
    return api_client.get("nodes", "n1")["metadata"]["uid"]


def test_first_renewal_creates_the_lease_then_moves_its_renew_time(api_client, node_uid):
    clock = Clock()
    lease = NodeLease(api_client, "n1", time_factor=0.1, clock=clock)
    lease.node_uid = node_uid
    made = lease.renew()
    stored = api_client.get("leases", "n1", LEASE_NAMESPACE)
    assert stored["spec"] == {"holderIdentity": "n1", "leaseDurationSeconds": 4,
                              "renewTime": "2026-12-05T12:00:00.123456Z"}
    assert stored["metadata"]["ownerReferences"][0]["uid"] == node_uid
    clock.tick(1)
    again = lease.renew()
    assert again["metadata"]["uid"] == made["metadata"]["uid"]
    assert api_client.get("leases", "n1", LEASE_NAMESPACE)["spec"]["renewTime"] == \
        "2026-12-05T12:00:01.123456Z"


def test_a_deleted_or_changed_lease_is_read_again(api_client, node_uid):
    clock = Clock()
    lease = NodeLease(api_client, "n1", clock=clock)
    lease.node_uid = node_uid
    lease.renew()
    api_client.delete("leases", "n1", LEASE_NAMESPACE)
    clock.tick(10)
    lease.renew()
    assert api_client.get("leases", "n1", LEASE_NAMESPACE)["spec"]["renewTime"].startswith(
        "2026-12-05T12:00:10")
    other = api_client.get("leases", "n1", LEASE_NAMESPACE)
    other["spec"]["holderIdentity"] = "someone-else"
    api_client.update("leases", other)            # our last copy is now stale
    clock.tick(10)
    lease.renew()
    stored = api_client.get("leases", "n1", LEASE_NAMESPACE)
    assert stored["spec"]["holderIdentity"] == "n1"
    assert stored["spec"]["renewTime"].startswith("2026-12-05T12:00:20")


def test_every_kubelet_keeps_its_nodes_lease(tmp_path):
    with InProcessCluster(tmp_path / "api") as cluster:
        def leases():
            found = {l["metadata"]["name"]: l for l in
                     cluster.client.list("leases", LEASE_NAMESPACE)[0]}
            return found if len(found) == len(NODES) else None
        found = wait_until("a Lease per node", leases, 10)
        for node in NODES:
            lease = found[node["name"]]
            uid = cluster.get("nodes", node["name"], None)["metadata"]["uid"]
            assert lease["spec"]["holderIdentity"] == node["name"]
            assert lease["spec"]["leaseDurationSeconds"] == 40
            assert lease["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": node["name"], "uid": uid}]
