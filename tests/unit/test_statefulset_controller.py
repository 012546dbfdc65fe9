"""StatefulSets: stable names, ordered creation and deletion, rolling updates, status."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from base.waiting import wait_until as wait_for
from controlplane.controllers import revisions as rev
from controlplane.controllers.statefulset import (
    parent_and_ordinal,
    plan_statefulset,
    set_pods,
    statefulset_pod,
    statefulset_status,
)
from support.controller_harness import InProcessCluster
from support.controller_harness import is_ready as ready_pod

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
TEMPLATE = {"metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
CURRENT = ("web-aaaa", TEMPLATE)
UPDATE = ("web-bbbb", {"metadata": {"labels": {"app": "nginx"}},
                       "spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}})


def statefulset(replicas=3, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid",
                         "generation": 2},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "nginx"}}, "template": TEMPLATE,
                     **spec}}


def pod(ordinal: int, phase="Running", ready=True, revision="web-aaaa", terminating=False,
        owner="sts-uid") -> dict:
    obj = statefulset_pod(statefulset(), ordinal, (revision, TEMPLATE))
    obj["metadata"]["ownerReferences"][0]["uid"] = owner
    obj["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-12-05T11:00:00Z"}]}
    if terminating:
        obj["metadata"]["deletionTimestamp"] = "2026-12-05T11:59:00Z"
    return obj


def names(pods) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def deleted(step) -> list[tuple[str, str]]:
    return [(p["metadata"]["name"], why) for p, why in step.delete]


def test_pods_have_stable_identity_labels_and_the_governing_service():
    made = statefulset_pod(statefulset(), 1, UPDATE)
    assert made["metadata"]["name"] == "web-1"
    assert made["metadata"]["labels"] == {
        "app": "nginx", "statefulset.kubernetes.io/pod-name": "web-1",
        "apps.kubernetes.io/pod-index": "1", "controller-revision-hash": "web-bbbb"}
    assert made["spec"]["hostname"] == "web-1" and made["spec"]["subdomain"] == "nginx"
    assert made["spec"]["containers"][0]["image"] == "nginx:1.28"
    owner = made["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("StatefulSet", "web", True)


def test_each_volume_claim_template_is_a_claim_volume_named_for_the_pod():
    sts = statefulset(volumeClaimTemplates=[{"metadata": {"name": "www"},
                                             "spec": {"accessModes": ["ReadWriteOnce"]}}])
    sts["spec"]["template"] = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "volumes": [
        {"name": "www", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "c"}}]}}
    made = statefulset_pod(sts, 2, ("web-aaaa", sts["spec"]["template"]))
    assert made["spec"]["volumes"] == [
        {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}},
        {"name": "conf", "configMap": {"name": "c"}}]


def test_ordinal_parsing_as_upstream():
    assert parent_and_ordinal("web-12") == ("web", 12)
    assert parent_and_ordinal("my-db-0") == ("my-db", 0)
    assert parent_and_ordinal("web") == ("", -1)


def test_ordered_ready_creates_one_pod_at_a_time_in_order():
    sts = statefulset(3)
    assert names(plan_statefulset(sts, [], CURRENT, CURRENT, NOW).create) == ["web-0"]
    waiting = plan_statefulset(sts, [pod(0, "Pending", ready=False)], CURRENT, CURRENT, NOW)
    assert waiting.create == () and waiting.delete == ()
    running_not_ready = plan_statefulset(sts, [pod(0, ready=False)], CURRENT, CURRENT, NOW)
    assert running_not_ready.create == ()
    assert names(plan_statefulset(sts, [pod(0)], CURRENT, CURRENT, NOW).create) == ["web-1"]
    assert names(plan_statefulset(sts, [pod(0), pod(1)], CURRENT, CURRENT,
                                  NOW).create) == ["web-2"]


def test_min_ready_seconds_holds_the_next_pod_back():
    sts = statefulset(2, minReadySeconds=7200)
    assert plan_statefulset(sts, [pod(0)], CURRENT, CURRENT, NOW).create == ()


def test_parallel_creates_and_deletes_all_at_once():
    sts = statefulset(3, podManagementPolicy="Parallel")
    assert names(plan_statefulset(sts, [], CURRENT, CURRENT, NOW).create) == [
        "web-0", "web-1", "web-2"]
    down = statefulset(1, podManagementPolicy="Parallel")
    step = plan_statefulset(down, [pod(0), pod(1), pod(2, ready=False)], CURRENT, CURRENT, NOW)
    assert deleted(step) == [("web-2", "scale-down"), ("web-1", "scale-down")]


def test_scale_down_removes_the_highest_ordinal_first_one_at_a_time():
    sts = statefulset(1)
    pods = [pod(0), pod(1), pod(2)]
    assert deleted(plan_statefulset(sts, pods, CURRENT, CURRENT, NOW)) == [("web-2", "scale-down")]
    pods[2] = pod(2, terminating=True)
    assert plan_statefulset(sts, pods, CURRENT, CURRENT, NOW).delete == ()
    assert deleted(plan_statefulset(sts, pods[:2], CURRENT, CURRENT, NOW)) == [
        ("web-1", "scale-down")]


def test_scale_down_of_an_unhealthy_pod_waits_for_the_lowest_unhealthy_one():
    sts = statefulset(1)
    pods = [pod(0), pod(1, ready=False), pod(2, ready=False)]
    assert plan_statefulset(sts, pods, CURRENT, CURRENT, NOW).delete == ()
    # the first unhealthy pod itself may go, and so may a healthy one above it
    pods = [pod(0), pod(1, ready=False)]
    assert deleted(plan_statefulset(sts, pods, CURRENT, CURRENT, NOW)) == [("web-1", "scale-down")]
    pods = [pod(0), pod(1, ready=False), pod(2)]
    assert deleted(plan_statefulset(sts, pods, CURRENT, CURRENT, NOW)) == [("web-2", "scale-down")]


def test_a_failed_pod_is_deleted_and_comes_back_with_the_same_name():
    sts = statefulset(2)
    step = plan_statefulset(sts, [pod(0, "Failed", ready=False), pod(1)], CURRENT, CURRENT, NOW)
    assert deleted(step) == [("web-0", "failed")] and step.create == ()
    again = plan_statefulset(sts, [pod(1)], CURRENT, CURRENT, NOW)
    assert names(again.create) == ["web-0"]


def test_a_deleted_pod_is_waited_for_then_recreated():
    sts = statefulset(2)
    assert plan_statefulset(sts, [pod(0, terminating=True), pod(1)], CURRENT, CURRENT,
                            NOW).create == ()
    assert names(plan_statefulset(sts, [pod(1)], CURRENT, CURRENT, NOW).create) == ["web-0"]


def test_rolling_update_goes_from_the_highest_ordinal_down():
    sts = statefulset(3)
    pods = [pod(0), pod(1), pod(2)]
    assert deleted(plan_statefulset(sts, pods, CURRENT, UPDATE, NOW)) == [("web-2", "update")]
    pods[2] = pod(2, terminating=True)
    assert plan_statefulset(sts, pods, CURRENT, UPDATE, NOW).delete == ()
    step = plan_statefulset(sts, pods[:2], CURRENT, UPDATE, NOW)
    assert names(step.create) == ["web-2"]
    assert step.create[0]["metadata"]["labels"]["controller-revision-hash"] == "web-bbbb"
    assert step.create[0]["spec"]["containers"][0]["image"] == "nginx:1.28"
    pods[2] = pod(2, ready=False, revision="web-bbbb")
    assert plan_statefulset(sts, pods, CURRENT, UPDATE, NOW).delete == ()
    pods[2] = pod(2, revision="web-bbbb")
    assert deleted(plan_statefulset(sts, pods, CURRENT, UPDATE, NOW)) == [("web-1", "update")]


def test_partition_keeps_lower_ordinals_on_the_current_revision():
    sts = statefulset(3, updateStrategy={"type": "RollingUpdate",
                                         "rollingUpdate": {"partition": 2}})
    pods = [pod(0), pod(1), pod(2, revision="web-bbbb")]
    assert plan_statefulset(sts, pods, CURRENT, UPDATE, NOW).delete == ()
    recreated = plan_statefulset(sts, [pod(1), pod(2, revision="web-bbbb")], CURRENT, UPDATE,
                                 NOW).create
    assert recreated[0]["metadata"]["labels"]["controller-revision-hash"] == "web-aaaa"
    assert recreated[0]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_on_delete_replaces_only_pods_that_were_deleted():
    sts = statefulset(2, updateStrategy={"type": "OnDelete"})
    assert plan_statefulset(sts, [pod(0), pod(1)], CURRENT, UPDATE, NOW).delete == ()
    made = plan_statefulset(sts, [pod(1)], CURRENT, UPDATE, NOW).create
    assert made[0]["metadata"]["labels"]["controller-revision-hash"] == "web-bbbb"


def test_only_owned_and_selected_pods_named_after_the_set_count():
    sts = statefulset(2)
    stranger = pod(0, owner="other")
    relabelled = pod(1)
    relabelled["metadata"]["labels"]["app"] = "else"
    assert set_pods(sts, [pod(0), stranger, relabelled]) == [pod(0)]


def test_status_counts_and_rolls_the_current_revision_over():
    sts = statefulset(3)
    pods = [pod(0), pod(1, ready=False), pod(2, revision="web-bbbb")]
    status = statefulset_status(sts, pods, "web-aaaa", "web-bbbb", NOW)
    assert status == {"observedGeneration": 2, "replicas": 3, "readyReplicas": 2,
                      "currentReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2,
                      "currentRevision": "web-aaaa", "updateRevision": "web-bbbb"}
    done = [pod(i, revision="web-bbbb") for i in range(3)]
    status = statefulset_status(sts, done, "web-aaaa", "web-bbbb", NOW)
    assert (status["currentRevision"], status["currentReplicas"]) == ("web-bbbb", 3)


def test_status_leaves_zero_counts_out_as_the_api_does():
    status = statefulset_status(statefulset(0), [], "web-aaaa", "web-aaaa", NOW)
    assert status == {"observedGeneration": 2, "replicas": 0, "availableReplicas": 0,
                      "currentRevision": "web-aaaa", "updateRevision": "web-aaaa"}


# --- revisions ---------------------------------------------------------------------

def revision(name: str, number: int, template: dict) -> dict:
    obj = rev.new_revision(statefulset(), rev.template_patch({"spec": {"template": template}}),
                           number, name.split("-")[-1], rev.REVISION_HASH_LABEL)
    obj["metadata"]["name"] = name
    return obj


def test_revision_names_data_and_labels():
    sts = statefulset()
    data = rev.template_patch(sts)
    assert data["spec"]["template"]["$patch"] == "replace"
    made = rev.new_revision(sts, data, 1, rev.hash_revision_data(data), rev.REVISION_HASH_LABEL)
    assert made["metadata"]["name"] == f"web-{rev.hash_revision_data(data)}"
    assert made["metadata"]["labels"] == {"app": "nginx", "controller.kubernetes.io/hash":
                                          rev.hash_revision_data(data)}
    assert rev.template_of(made) == TEMPLATE
    assert rev.hash_revision_data(data, 1) != rev.hash_revision_data(data)
    assert set(rev.hash_revision_data(data)) <= set("bcdfghjklmnpqrstvwxz2456789")


@pytest.mark.parametrize("owned_templates, want", [
    ([], ("create", None)),
    ([TEMPLATE], ("keep", None)),
    ([TEMPLATE, UPDATE[1]], ("renumber", 3)),        # rolling back to revision 1
])
def test_update_revision_is_found_renumbered_or_created(owned_templates, want):
    owned = [revision(f"web-r{i}", i + 1, t) for i, t in enumerate(owned_templates)]
    candidate = revision("web-new", len(owned) + 1, TEMPLATE)
    step = rev.plan_update_revision(candidate, owned)
    kind = "create" if step.create else "renumber" if step.renumber else "keep"
    assert (kind, step.renumber) == want


def test_history_keeps_the_limit_of_idle_revisions_and_every_live_one():
    owned = [revision(f"web-r{i}", i, TEMPLATE) for i in range(1, 6)]
    assert rev.history_to_delete(owned, {"web-r5", "web-r1"}, 2) == ["web-r2"]
    assert rev.history_to_delete(owned, set(), 0) == [f"web-r{i}" for i in range(1, 6)]


# --- in a running control plane (API server, controllers, kubelets; fake runtime) ---------

@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def manifest(replicas: int, **spec) -> dict:
    template_spec = {"containers": [{"name": "nginx", "image": "nginx:1.27"}],
                     "terminationGracePeriodSeconds": 1, **spec.pop("pod_spec", {})}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": template_spec}, **spec}}


def live(cluster) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in cluster.pods("app=nginx")
            if not p["metadata"].get("deletionTimestamp")}


def settled(cluster, count: int, image: str = "nginx:1.27"):
    def check():
        pods = live(cluster)
        status = (cluster.get("statefulsets", "web") or {}).get("status") or {}
        return (set(pods) == {f"web-{i}" for i in range(count)}
                and all(ready_pod(p) and p["spec"]["containers"][0]["image"] == image
                        for p in pods.values())
                and status.get("readyReplicas", 0) == count
                and status.get("updatedReplicas", 0) == count
                and status.get("currentRevision") == status.get("updateRevision")
                and pods)
    return wait_for(f"{count} ready web pods of {image}", check, 20)


def test_the_next_pod_waits_until_the_previous_one_is_ready(cluster):
    probe = {"readinessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1}}
    cluster.runtime.exec_codes[("default/web-0", "check")] = 1
    cluster.client.create("statefulsets", manifest(2, pod_spec={"containers": [
        {"name": "nginx", "image": "nginx:1.27", **probe}]}))
    wait_for("web-0 running", lambda: (live(cluster).get("web-0") or {}).get(
        "status", {}).get("phase") == "Running")
    time.sleep(1.5)
    assert set(live(cluster)) == {"web-0"}
    cluster.runtime.exec_codes[("default/web-0", "check")] = 0
    wait_for("web-1 once web-0 is ready", lambda: "web-1" in live(cluster), 10)


def test_pods_get_identities_and_a_deleted_one_comes_back_under_its_name(cluster):
    cluster.client.create("statefulsets", manifest(3))
    pods = settled(cluster, 3)
    web0 = pods["web-0"]
    assert web0["spec"]["hostname"] == "web-0" and web0["spec"]["subdomain"] == "nginx"
    revision = cluster.get("statefulsets", "web")["status"]["updateRevision"]
    assert web0["metadata"]["labels"] == {
        "app": "nginx", "statefulset.kubernetes.io/pod-name": "web-0",
        "apps.kubernetes.io/pod-index": "0", "controller-revision-hash": revision}
    [history] = cluster.client.list("controllerrevisions", "default")[0]
    assert (history["metadata"]["name"], history["revision"]) == (revision, 1)
    cluster.client.delete("pods", "web-0", "default")
    wait_for("a new web-0", lambda: (live(cluster).get("web-0") or {}).get(
        "metadata", {}).get("uid") not in (None, web0["metadata"]["uid"]), 15)
    settled(cluster, 3)

    def created_twice():     # one Event, counted twice (the recorder writes in the background)
        return [e for e in cluster.client.list("events", "default")[0]
                if e["message"] == "create Pod web-0 in StatefulSet web successful"
                and e.get("count") == 2]
    [event] = wait_for("the web-0 Event counted twice", created_twice)
    assert (event["reason"], event["source"]["component"]) == ("SuccessfulCreate",
                                                               "statefulset-controller")


def test_scale_down_and_rolling_update(cluster):
    cluster.client.create("statefulsets", manifest(3))
    settled(cluster, 3)
    cluster.client.patch("statefulsets", "web", {"spec": {"replicas": 2}}, "default")
    settled(cluster, 2)
    cluster.client.patch("statefulsets", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "image": "nginx:1.28"}]}}}}, "default", kind="strategic")
    settled(cluster, 2, "nginx:1.28")
    revisions = sorted((r["revision"], r["metadata"]["name"]) for r in
                       cluster.client.list("controllerrevisions", "default")[0])
    status = cluster.get("statefulsets", "web")["status"]
    assert [n for _, n in revisions][-1] == status["currentRevision"] == status["updateRevision"]
    assert [r for r, _ in revisions] == [1, 2]
    assert (status["replicas"], status["currentReplicas"], status["availableReplicas"]) == \
        (2, 2, 2)
