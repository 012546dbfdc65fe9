"""The scheduler: taints vs tolerations, nodeSelector, nodeName, spreading."""
from __future__ import annotations

import threading

import pytest

from base.kube.client import ApiError
from base.waiting import wait_until
from controlplane.controllers.objects import key_of
from controlplane.controllers.scheduler import Placement, Scheduler, choose_node, tolerates
from support.controller_harness import WORKERS, InProcessCluster, deployment, ready_pods

CONTROL_PLANE = "ip-172-31-0-10"
CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node(name: str, taints=(), labels=None, ready=True) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": list(taints)},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


NODES = [node(CONTROL_PLANE, [CP_TAINT], {"node-role.kubernetes.io/control-plane": ""}),
         node("w1", labels={"disk": "ssd"}), node("w2")]


def pod(owner: str = "", **spec) -> dict:
    meta = {"name": "p", "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c"}], **spec}}


def test_the_control_plane_taint_keeps_ordinary_pods_off():
    assert choose_node(pod(), NODES, Placement()).node in ("w1", "w2")
    only_cp = [NODES[0]]
    decision = choose_node(pod(), only_cp, Placement())
    assert decision.node is None
    assert "untolerated taint {node-role.kubernetes.io/control-plane: }" in decision.message


def test_a_toleration_and_a_selector_put_a_pod_on_the_control_plane():
    tolerant = pod(tolerations=[{"key": "node-role.kubernetes.io/control-plane",
                                 "operator": "Exists", "effect": "NoSchedule"}],
                   nodeSelector={"node-role.kubernetes.io/control-plane": ""})
    assert choose_node(tolerant, NODES, Placement()).node == CONTROL_PLANE


def test_toleration_matching_rules():
    assert tolerates({"operator": "Exists"}, CP_TAINT)
    assert tolerates({"key": CP_TAINT["key"], "operator": "Exists"}, CP_TAINT)
    assert not tolerates({"key": CP_TAINT["key"], "operator": "Exists", "effect": "NoExecute"},
                         CP_TAINT)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v",
                                                   "effect": "NoSchedule"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v",
                                                       "effect": "NoSchedule"})


def test_node_selector_and_readiness_filter_nodes():
    assert choose_node(pod(nodeSelector={"disk": "ssd"}), NODES, Placement()).node == "w1"
    not_ready = [NODES[0], node("w1", ready=False), NODES[2]]
    assert choose_node(pod(), not_ready, Placement()).node == "w2"
    none = choose_node(pod(nodeSelector={"disk": "nvme"}), NODES, Placement())
    assert none.node is None and "didn't match Pod's node affinity/selector" in none.message


def test_spreading_prefers_fewest_pods_of_the_same_owner_then_fewest_pods():
    placed = Placement()
    for uid, (where, owner) in enumerate([("w1", "a"), ("w2", "b"), ("w2", "b")]):
        placed.place(str(uid), where, owner)
    assert choose_node(pod(owner="a"), NODES, placed).node == "w2"
    assert choose_node(pod(owner="b"), NODES, placed).node == "w1"
    assert choose_node(pod(owner="c"), NODES, placed).node == "w1"


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def test_pods_spread_over_workers_and_never_land_on_the_control_plane(cluster):
    cluster.client.create("deployments", deployment("spread", 6))
    pods = wait_until("6 ready pods", lambda: ready_pods(cluster, "app=spread", 6))
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert sorted(nodes.count(n) for n in WORKERS) == [3, 3]
    assert CONTROL_PLANE not in nodes


def test_node_name_is_honoured_and_unschedulable_pods_say_why(cluster):
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": "pinned", "namespace": "default"},
                                   "spec": {"nodeName": CONTROL_PLANE,
                                            "containers": [{"name": "c", "image": "nginx"}]}})
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                   "metadata": {"name": "nowhere", "namespace": "default"},
                                   "spec": {"nodeSelector": {"disk": "nvme"},
                                            "containers": [{"name": "c", "image": "nginx"}]}})
    wait_until("pinned running", lambda: (cluster.get("pods", "pinned") or {}).get(
        "status", {}).get("phase") == "Running")
    assert cluster.get("pods", "pinned")["spec"]["nodeName"] == CONTROL_PLANE

    def unschedulable():
        conditions = (cluster.get("pods", "nowhere") or {}).get("status", {}).get("conditions")
        return [c for c in conditions or [] if c["type"] == "PodScheduled"]
    [condition] = wait_until("PodScheduled=False", unschedulable)
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
    assert condition["message"].startswith("0/3 nodes are available:")
    assert not cluster.get("pods", "nowhere")["spec"].get("nodeName")


class FakeInformer:
    def __init__(self, objects=()):
        self.handlers = []
        self.objects = {key_of(o): o for o in objects}

    def items(self):
        return list(self.objects.values())

    def get(self, key):
        return self.objects.get(key)

    def wait_synced(self, timeout):
        return True


class FlakyPods:
    """The pods API: the first `failures` bindings answer 409 Conflict."""

    def __init__(self, failures: int):
        self.failures = failures
        self.bindings: list[tuple[str, str]] = []
        self.done = threading.Event()

    def patch(self, resource, name, patch, namespace=None, **_):
        if self.failures:
            self.failures -= 1
            raise ApiError(409, "Conflict", "the object has been modified")
        self.bindings.append((name, patch["spec"]["nodeName"]))
        self.done.set()
        return {}


def pending(name: str, owner: str) -> dict:
    bare = pod(owner)
    bare["metadata"].update(name=name, uid=f"uid-{name}", resourceVersion="1")
    return bare


def test_a_burst_spreads_because_each_pod_is_assumed_before_its_binding_returns():
    pods = [pending(f"p{i}", "rs") for i in range(6)]
    api = FlakyPods(failures=0)
    scheduler = Scheduler(api, {"pods": FakeInformer(pods), "nodes": FakeInformer(NODES)})
    try:
        for p in pods:          # no binding has been seen back through a watch yet
            scheduler.reconcile(f"default/{p['metadata']['name']}")
        wait_until("6 bindings", lambda: len(api.bindings) == 6)
    finally:
        scheduler.stop()
    assert sorted(node for _, node in api.bindings) == ["w1"] * 3 + ["w2"] * 3
    assert scheduler.placement.counts("w1", "rs") == (3, 3)


def test_a_failed_binding_forgets_its_assumption_and_the_pod_is_scheduled_again():
    p = pending("web", "rs")
    api = FlakyPods(failures=1)
    scheduler = Scheduler(api, {"pods": FakeInformer([p]), "nodes": FakeInformer(NODES)})
    scheduler.start()
    try:
        scheduler.queue.add("default/web")
        assert api.done.wait(10), "the pod was never bound after its first binding failed"
    finally:
        scheduler.stop()
    [(name, where)] = api.bindings
    assert name == "web" and where in ("w1", "w2")
    # one pod counted once, on the node it was finally bound to
    assert scheduler.placement.counts(where, "rs") == (1, 1)
    assert sum(scheduler.placement.counts(n, "rs")[1] for n in ("w1", "w2")) == 1
