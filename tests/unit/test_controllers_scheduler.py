"""The scheduler: taints vs tolerations, nodeSelector, nodeName, spreading."""
from __future__ import annotations

import pytest

from base.waiting import wait_until
from controlplane.controllers.scheduler import choose_node, tolerates
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
    assert choose_node(pod(), NODES, []).node in ("w1", "w2")
    only_cp = [NODES[0]]
    decision = choose_node(pod(), only_cp, [])
    assert decision.node is None
    assert "untolerated taint {node-role.kubernetes.io/control-plane: }" in decision.message


def test_a_toleration_and_a_selector_put_a_pod_on_the_control_plane():
    tolerant = pod(tolerations=[{"key": "node-role.kubernetes.io/control-plane",
                                 "operator": "Exists", "effect": "NoSchedule"}],
                   nodeSelector={"node-role.kubernetes.io/control-plane": ""})
    assert choose_node(tolerant, NODES, []).node == CONTROL_PLANE


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
    assert choose_node(pod(nodeSelector={"disk": "ssd"}), NODES, []).node == "w1"
    assert choose_node(pod(), [NODES[0], node("w1", ready=False), NODES[2]], []).node == "w2"
    none = choose_node(pod(nodeSelector={"disk": "nvme"}), NODES, [])
    assert none.node is None and "didn't match Pod's node affinity/selector" in none.message


def test_spreading_prefers_fewest_pods_of_the_same_owner_then_fewest_pods():
    placed = [("w1", "a"), ("w2", "b"), ("w2", "b")]
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
