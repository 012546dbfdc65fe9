"""ReplicationControllers: ReplicaSet semantics with a map selector."""
from __future__ import annotations

import datetime as dt

from base.waiting import wait_until as wait_for
from controlplane.controllers.objects import map_selector_matches
from controlplane.controllers.replicaset import (
    owned_pods,
    plan_replicas,
    pod_from_template,
    replicaset_status,
)
from controlplane.controllers.replicationcontroller import ReplicationControllerController
from support.controller_harness import InProcessCluster, ready_pods

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)


def rc(replicas=3) -> dict:
    return {"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "rc-uid",
                         "generation": 1},
            "spec": {"replicas": replicas, "selector": {"app": "nginx"},
                     "template": {"metadata": {"labels": {"app": "nginx", "tier": "web"}},
                                  "spec": {"containers": [{"name": "nginx",
                                                           "image": "nginx"}]}}}}


def pod(name: str, labels=None, phase="Running", ready=True, terminating=False) -> dict:
    obj = pod_from_template(rc(), name)
    if labels is not None:
        obj["metadata"]["labels"] = labels
    obj["metadata"]["creationTimestamp"] = "2026-12-05T11:00:00Z"
    obj["spec"]["nodeName"] = "n1"
    obj["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-12-05T11:00:00Z"}]}
    if terminating:
        obj["metadata"]["deletionTimestamp"] = "2026-12-05T11:59:00Z"
    return obj


def test_pods_are_owned_by_the_replication_controller():
    made = pod_from_template(rc(), "nginx-x2b4z")
    assert made["metadata"]["labels"] == {"app": "nginx", "tier": "web"}
    owner = made["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["name"]) == ("v1", "ReplicationController",
                                                                    "nginx")


def test_the_map_selector_picks_the_pods():
    mine = [pod("a"), pod("b", {"app": "nginx"}), pod("c", {"app": "other"})]
    assert [p["metadata"]["name"] for p in owned_pods(rc(), mine, map_selector_matches)] == [
        "a", "b"]


def test_too_few_creates_and_too_many_deletes_the_least_valuable():
    assert plan_replicas(rc(3), [pod("a")], map_selector_matches).create == 2
    plan = plan_replicas(rc(1), [pod("a"), pod("b", ready=False)], map_selector_matches)
    assert [p["metadata"]["name"] for p in plan.delete] == ["b"]


def test_status_has_the_replication_controller_fields_only():
    pods = [pod("a"), pod("b", {"app": "nginx"}, ready=False), pod("c", terminating=True)]
    status = replicaset_status(rc(), pods, NOW, map_selector_matches, terminating=False)
    assert status == {"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 1,
                      "availableReplicas": 1, "observedGeneration": 1}


def test_the_controller_is_the_replicaset_one_for_another_kind():
    assert ReplicationControllerController.resource == "replicationcontrollers"
    assert ReplicationControllerController.component == "replication-controller"
    assert ReplicationControllerController.selects({"app": "x"}, {"app": "x", "b": "c"})
    assert not ReplicationControllerController.selects({}, {"app": "x"})


def test_a_replication_controller_keeps_its_replicas_in_a_running_control_plane(tmp_path):
    with InProcessCluster(tmp_path / "api") as cluster:
        body = rc(3)
        body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
        cluster.client.create("replicationcontrollers", body)
        pods = wait_for("3 ready pods", lambda: ready_pods(cluster, "app=nginx", 3))
        uid = cluster.get("replicationcontrollers", "nginx")["metadata"]["uid"]
        assert all(p["metadata"]["ownerReferences"][0]["uid"] == uid for p in pods)
        assert all(p["metadata"]["name"].startswith("nginx-") for p in pods)
        cluster.client.patch("replicationcontrollers", "nginx", {"spec": {"replicas": 1}},
                             "default")
        wait_for("1 ready pod", lambda: ready_pods(cluster, "app=nginx", 1))

        def status():
            found = cluster.get("replicationcontrollers", "nginx").get("status") or {}
            return found if found.get("replicas") == 1 else None
        found = wait_for("status", status)
        assert (found["readyReplicas"], found["availableReplicas"],
                found["fullyLabeledReplicas"]) == (1, 1, 1)
        want = {("replication-controller", "SuccessfulCreate"),
                ("replication-controller", "SuccessfulDelete")}

        def sources():       # the recorder writes Events in the background
            found = {(e["source"].get("component"), e["reason"])
                     for e in cluster.client.list("events", "default")[0]
                     if e["involvedObject"]["kind"] == "ReplicationController"}
            return found if len(found) >= 2 else None
        assert wait_for("the Events", sources) == want
