"""Deployments and ReplicaSets: naming, scaling, rolling replacement, status."""
from __future__ import annotations

import pytest

from base.waiting import wait_until as wait_for
from controlplane.controllers.deployment import compute_rollout, new_replicaset
from controlplane.controllers.naming import compute_hash
from controlplane.controllers.replicaset import plan_replicas
from support.controller_harness import WORKERS, InProcessCluster, deployment, ready_pods

ready = ready_pods


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def test_replicaset_and_pods_get_kubernetes_names_owners_and_labels(cluster):
    body = deployment("hwk", 2)
    cluster.client.create("deployments", body)
    pods = wait_for("2 ready pods", lambda: ready(cluster, "app=hwk", 2))
    deploy = cluster.get("deployments", "hwk")
    template_hash = compute_hash(deploy["spec"]["template"])
    [rs] = cluster.client.list("replicasets", "default")[0]
    assert rs["metadata"]["name"] == f"hwk-{template_hash}"
    assert rs["metadata"]["labels"]["pod-template-hash"] == template_hash
    assert rs["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"hwk-{template_hash}-")
        assert len(pod["metadata"]["name"].rsplit("-", 1)[1]) == 5
        assert pod["metadata"]["labels"] == {"app": "hwk", "pod-template-hash": template_hash}
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert pod["spec"]["nodeName"] in WORKERS


def test_deployment_status_reads_like_kubectl_expects(cluster):
    cluster.client.create("deployments", deployment("web", 3))
    wait_for("3 ready pods", lambda: ready(cluster, "app=web", 3))

    def settled():
        status = (cluster.get("deployments", "web") or {}).get("status") or {}
        return status.get("availableReplicas") == 3 and status
    status = wait_for("status to settle", settled)
    assert {k: status[k] for k in ("replicas", "updatedReplicas", "readyReplicas",
                                   "availableReplicas", "observedGeneration")} == {
        "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
        "observedGeneration": 1}
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"Available": ("True", "MinimumReplicasAvailable"),
                          "Progressing": ("True", "NewReplicaSetAvailable")}


def test_scale_3_to_10_to_2_leaves_exactly_that_many_pods(cluster):
    cluster.client.create("deployments", deployment("scale", 3))
    wait_for("3 pods", lambda: ready(cluster, "app=scale", 3))
    cluster.client.patch("deployments", "scale", {"spec": {"replicas": 10}}, "default")
    pods = wait_for("10 pods", lambda: ready(cluster, "app=scale", 10))
    spread = [p["spec"]["nodeName"] for p in pods]
    assert sorted(spread.count(n) for n in WORKERS) == [5, 5]
    cluster.client.patch("deployments", "scale", {"spec": {"replicas": 2}}, "default")
    wait_for("2 pods in the API", lambda: len(cluster.pods("app=scale")) == 2)
    names = {p["metadata"]["name"] for p in cluster.pods("app=scale")}
    wait_for("runtime to hold exactly those pods", lambda: {
        n for (_, n) in cluster.runtime.pods if n.startswith("scale-")} == names)


def test_a_template_change_rolls_pods_over_to_a_new_replicaset(cluster):
    cluster.client.create("deployments", deployment("roll", 4))
    old_pods = wait_for("4 pods", lambda: ready(cluster, "app=roll", 4))
    cluster.client.patch("deployments", "roll", {"spec": {"template": {"spec": {
        "containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}}, "default", kind="strategic")
    new_hash = compute_hash(cluster.get("deployments", "roll")["spec"]["template"])

    def rolled():
        pods = ready(cluster, "app=roll", 4)
        return pods if all(p["metadata"]["labels"]["pod-template-hash"] == new_hash
                           for p in pods) else []
    new_pods = wait_for("4 new pods", rolled)
    assert not {p["metadata"]["name"] for p in old_pods} & {p["metadata"]["name"]
                                                            for p in new_pods}
    sets = {rs["metadata"]["name"]: rs for rs in cluster.client.list("replicasets", "default")[0]}
    assert sets[f"roll-{new_hash}"]["spec"]["replicas"] == 4
    assert sets[f"roll-{new_hash}"]["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "2"
    [old] = [rs for name, rs in sets.items() if name != f"roll-{new_hash}"]
    assert old["spec"]["replicas"] == 0
    assert all(p["spec"]["containers"][0]["image"] == "nginx:1.27" for p in new_pods)


def _rs(name: str, deploy: dict, replicas: int, available: int, image: str = "nginx") -> dict:
    template = {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}
    body = new_replicaset({**deploy, "spec": {**deploy["spec"], "template": template}},
                          name, replicas, 1)
    body["metadata"].update(uid=f"uid-{name}",
                            creationTimestamp=f"2026-01-01T00:00:0{len(name) % 10}Z")
    body["status"] = {"replicas": replicas, "availableReplicas": available}
    return body


def test_rolling_update_honours_max_surge_and_max_unavailable():
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "d", "namespace": "default", "uid": "uid-d"},
              "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "d"}},
                       "strategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                       "template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "v2"}]}}}}
    old = _rs("old", deploy, 4, 4, image="v1")
    step = compute_rollout(deploy, [old])
    assert step.create is not None and step.create["spec"]["replicas"] == 1   # surge 1
    new = _rs("new", deploy, 1, 0, image="v2")
    assert compute_rollout(deploy, [old, new]).scale == ()     # new not available: wait
    new["status"]["availableReplicas"] = 1
    assert compute_rollout(deploy, [old, new]).scale == (("d-old", 3),)


def test_replicaset_deletes_unscheduled_then_not_ready_then_newest_first():
    rs = {"metadata": {"uid": "r", "namespace": "default", "name": "r"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "r"}}}}

    def pod(name, node, ready, created):
        return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                             "labels": {"app": "r"},
                             "ownerReferences": [{"uid": "r", "controller": True}]},
                "spec": {"nodeName": node},
                "status": {"phase": "Running" if node else "Pending",
                           "conditions": [{"type": "Ready",
                                           "status": "True" if ready else "False"}]}}
    pods = [pod("old-ready", "n1", True, "2026-01-01T00:00:00Z"),
            pod("new-ready", "n1", True, "2026-01-01T00:00:09Z"),
            pod("not-ready", "n1", False, "2026-01-01T00:00:01Z"),
            pod("unscheduled", "", False, "2026-01-01T00:00:02Z")]
    plan = plan_replicas(rs, pods)
    assert [p["metadata"]["name"] for p in plan.delete] == ["unscheduled", "not-ready",
                                                            "new-ready"]
