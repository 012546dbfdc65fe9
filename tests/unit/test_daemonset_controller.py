"""DaemonSets: one pod per eligible node, taints and tolerations, rolling updates, status."""
from __future__ import annotations

import datetime as dt

import pytest

from base.waiting import wait_until as wait_for
from controlplane.api.bootstrap import node_object
from controlplane.controllers.daemon_update import plan_rolling_update
from controlplane.controllers.daemonset import (
    daemon_pod,
    daemonset_status,
    node_should_run,
    plan_nodes,
    target_node,
)
from controlplane.controllers.scheduler import Placement, choose_node
from support.controller_harness import NODES as HARNESS_NODES
from support.controller_harness import WORKERS as HARNESS_WORKERS
from support.controller_harness import InProcessCluster
from support.controller_harness import is_ready as ready_pod

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
WORKERS = ["w1", "w2", "w3", "w4"]


def node(name: str, labels=None, taints=None, ready=True) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}


def lab_nodes() -> list[dict]:
    return [node("cp", {"node-role.kubernetes.io/control-plane": ""}, [CONTROL_PLANE_TAINT])] + [
        node(name) for name in WORKERS]


def daemonset(**spec_extra) -> dict:
    template_spec = spec_extra.pop("pod_spec", {})
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid",
                         "generation": 1,
                         "annotations": {"deprecated.daemonset.template.generation": "1"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox"}],
                                           **template_spec}},
                     **spec_extra}}


def pod_on(ds: dict, where: str, name: str = "", revision="h1", phase="Running", ready=True,
           created="2026-12-05T10:00:00Z", bound=True) -> dict:
    pod = daemon_pod(ds, where, revision, name or f"agent-{where}")
    if revision == "old":       # made from the template before the last change
        pod["metadata"]["labels"]["pod-template-generation"] = "0"
    pod["metadata"]["ownerReferences"][0]["uid"] = ds["metadata"]["uid"]
    pod["metadata"]["creationTimestamp"] = created
    if bound:
        pod["spec"]["nodeName"] = where
    pod["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2026-12-05T10:00:05Z"}]}
    return pod


def deleted(step) -> list[tuple[str, str]]:
    return [(p["metadata"]["name"], why) for p, why in step.delete]


def test_one_pod_per_worker_and_none_on_the_tainted_control_plane():
    step = plan_nodes(daemonset(), lab_nodes(), [], "h1")
    assert step.create == tuple(WORKERS) and step.delete == ()


def test_a_toleration_puts_a_pod_on_the_control_plane_too():
    ds = daemonset(pod_spec={"tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
         "effect": "NoSchedule"}]})
    assert plan_nodes(ds, lab_nodes(), [], "h1").create == ("cp", *WORKERS)


def test_node_selector_and_required_affinity_choose_the_nodes():
    nodes = lab_nodes()
    nodes[1]["metadata"]["labels"]["disk"] = "ssd"
    nodes[2]["metadata"]["labels"]["disk"] = "ssd"
    assert plan_nodes(daemonset(pod_spec={"nodeSelector": {"disk": "ssd"}}), nodes, [],
                      "h1").create == ("w1", "w2")
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["w4"]}]}]}}}
    assert plan_nodes(daemonset(pod_spec={"affinity": affinity}), nodes, [],
                      "h1").create == ("w1", "w2", "w3")


def test_a_node_added_later_gets_its_pod():
    ds = daemonset()
    pods = [pod_on(ds, n) for n in WORKERS]
    assert plan_nodes(ds, lab_nodes(), pods, "h1") == plan_nodes(ds, lab_nodes(), pods, "h1")
    assert plan_nodes(ds, lab_nodes(), pods, "h1").create == ()
    assert plan_nodes(ds, lab_nodes() + [node("w5")], pods, "h1").create == ("w5",)


def test_daemon_pods_tolerate_unreachable_and_cordon_but_not_foreign_taints():
    ds = daemonset()
    unreachable = node("w1", taints=[{"key": "node.kubernetes.io/unreachable",
                                      "effect": "NoExecute"}])
    cordoned = node("w2", taints=[{"key": "node.kubernetes.io/unschedulable",
                                   "effect": "NoSchedule"}])
    dedicated = node("w3", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    evicting = node("w4", taints=[{"key": "dedicated", "value": "db", "effect": "NoExecute"}])
    assert node_should_run(ds, unreachable) == (True, True)
    assert node_should_run(ds, cordoned) == (True, True)
    assert node_should_run(ds, dedicated) == (False, True)     # an existing pod stays
    assert node_should_run(ds, evicting) == (False, False)
    pods = [pod_on(ds, "w3"), pod_on(ds, "w4")]
    step = plan_nodes(ds, [dedicated, evicting], pods, "h1")
    assert deleted(step) == [("agent-w4", "misplaced")] and step.create == ()


def test_pods_are_pinned_with_matchfields_and_carry_tolerations_and_labels():
    ds = daemonset(pod_spec={"hostNetwork": True, "affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}})
    pod = daemon_pod(ds, "w2", "5d8f9c7b6", "agent-x2x4z")
    assert pod["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": "5d8f9c7b6",
                                         "pod-template-generation": "1"}
    affinity = pod["spec"]["affinity"]["nodeAffinity"]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w2"]}]}]}
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    assert "nodeName" not in pod["spec"] and target_node(pod) == "w2"
    # the scheduler binds it to exactly that node, even a cordoned one's neighbours aside
    assert choose_node(pod, lab_nodes(), Placement()).node == "w2"


def test_failed_pods_are_replaced_and_surplus_pods_removed_oldest_kept():
    ds = daemonset()
    pods = [pod_on(ds, "w1", phase="Failed", ready=False),
            pod_on(ds, "w2", "agent-old", created="2026-12-05T09:00:00Z"),
            pod_on(ds, "w2", "agent-new", created="2026-12-05T11:00:00Z"),
            pod_on(ds, "w3"), pod_on(ds, "w4")]
    step = plan_nodes(ds, lab_nodes(), pods, "h1")
    assert deleted(step) == [("agent-w1", "failed"), ("agent-new", "surplus")]
    assert plan_nodes(ds, lab_nodes(), pods, "h1", frozenset({"w1"})).delete[0][0][
        "metadata"]["name"] == "agent-new"


def test_a_terminating_pod_is_waited_for_before_its_replacement():
    ds = daemonset()
    going = pod_on(ds, "w1")
    going["metadata"]["deletionTimestamp"] = "2026-12-05T11:59:00Z"
    pods = [going] + [pod_on(ds, n) for n in WORKERS[1:]]
    assert plan_nodes(ds, lab_nodes(), pods, "h1") == plan_nodes(ds, lab_nodes(), pods, "h1")
    assert plan_nodes(ds, lab_nodes(), pods, "h1").create == ()


def test_rolling_update_takes_max_unavailable_nodes_at_a_time():
    ds = daemonset()
    pods = [pod_on(ds, n, revision="old") for n in WORKERS]
    step = plan_rolling_update(ds, lab_nodes(), pods, "new", NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["agent-w1"] and step.create == ()
    pods[0] = pod_on(ds, "w1", revision="new", ready=False)       # replaced, not ready yet
    assert plan_rolling_update(ds, lab_nodes(), pods, "new", NOW).delete == ()
    pods[0] = pod_on(ds, "w1", revision="new")
    assert [p["metadata"]["name"] for p in plan_rolling_update(
        ds, lab_nodes(), pods, "new", NOW).delete] == ["agent-w2"]
    two = daemonset(updateStrategy={"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": "50%"}})
    pods = [pod_on(two, n, revision="old") for n in WORKERS]
    assert len(plan_rolling_update(two, lab_nodes(), pods, "new", NOW).delete) == 2


def test_an_unavailable_old_pod_is_always_replaced():
    ds = daemonset()
    pods = [pod_on(ds, "w1", revision="old", ready=False), pod_on(ds, "w2", revision="new",
                                                                 ready=False)]
    assert [p["metadata"]["name"] for p in plan_rolling_update(
        ds, lab_nodes(), pods, "new", NOW).delete] == ["agent-w1"]


def test_surge_adds_the_new_pod_first_then_removes_the_old():
    ds = daemonset(updateStrategy={"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    pods = [pod_on(ds, n, revision="old") for n in WORKERS]
    step = plan_rolling_update(ds, lab_nodes(), pods, "new", NOW)
    assert step.create == ("w1",) and step.delete == ()
    pods.append(pod_on(ds, "w1", "agent-w1-new", revision="new", ready=False,
                       created="2026-12-05T11:00:00Z"))
    assert plan_rolling_update(ds, lab_nodes(), pods, "new", NOW) == type(step)()
    assert plan_nodes(ds, lab_nodes(), pods, "new").delete == ()     # old and new may coexist
    pods[-1] = pod_on(ds, "w1", "agent-w1-new", revision="new", created="2026-12-05T11:00:00Z")
    step = plan_rolling_update(ds, lab_nodes(), pods, "new", NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["agent-w1"]


def test_on_delete_never_replaces_running_pods():
    ds = daemonset(updateStrategy={"type": "OnDelete"})
    pods = [pod_on(ds, n, revision="old") for n in WORKERS]
    assert plan_rolling_update(ds, lab_nodes(), pods, "new", NOW).delete == ()


def test_status_counts_nodes_as_kubectl_shows_them():
    ds = daemonset()
    pods = [pod_on(ds, "w1"), pod_on(ds, "w2", ready=False), pod_on(ds, "w3", revision="old"),
            pod_on(ds, "cp")]
    ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = "2"
    status = daemonset_status(ds, lab_nodes(), pods, "h1", NOW)
    assert status == {"desiredNumberScheduled": 4, "currentNumberScheduled": 3,
                      "numberMisscheduled": 1, "numberReady": 2, "updatedNumberScheduled": 2,
                      "numberAvailable": 2, "numberUnavailable": 2, "observedGeneration": 1}


def test_unscheduled_pods_count_on_the_node_their_affinity_names():
    ds = daemonset()
    pods = [pod_on(ds, n, bound=False, phase="Pending", ready=False) for n in WORKERS]
    assert plan_nodes(ds, lab_nodes(), pods, "h1").create == ()
    assert daemonset_status(ds, lab_nodes(), pods, "h1", NOW)["currentNumberScheduled"] == 4


# --- in a running control plane (API server, controllers, kubelets; fake runtime) ---------

@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def manifest(image: str = "busybox:1.36", **pod_spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a", "image": image}],
                                           "terminationGracePeriodSeconds": 1, **pod_spec}}}}


def placed(cluster, image: str = "busybox:1.36") -> dict[str, dict]:
    pods = [p for p in cluster.pods("app=agent") if not p["metadata"].get("deletionTimestamp")]
    return {p["spec"].get("nodeName", ""): p for p in pods if ready_pod(p)
            and p["spec"]["containers"][0]["image"] == image} if len(pods) == len(
        {p["spec"].get("nodeName") for p in pods}) else {}


def test_one_ready_pod_on_each_worker_and_status(cluster):
    cluster.client.create("daemonsets", manifest())
    wait_for("a pod on each worker", lambda: set(placed(cluster)) == set(HARNESS_WORKERS), 15)

    def status():
        found = (cluster.get("daemonsets", "agent") or {}).get("status") or {}
        return found if found.get("numberAvailable") == 2 else None
    found = wait_for("status", status)
    assert {k: found[k] for k in ("desiredNumberScheduled", "currentNumberScheduled",
                                  "numberReady", "updatedNumberScheduled",
                                  "numberAvailable")} == dict.fromkeys(
        ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
         "updatedNumberScheduled", "numberAvailable"), 2)

    def messages():          # the recorder writes Events in the background
        found = [e["message"] for e in cluster.client.list("events", "default")[0]
                 if e["involvedObject"]["kind"] == "DaemonSet"]
        return found if len(found) >= 2 else None
    assert sorted(m.split(": ")[0] for m in wait_for("2 Events", messages)) == [
        "Created pod", "Created pod"]


def test_a_control_plane_toleration_adds_its_pod_and_an_update_rolls(cluster):
    cluster.client.create("daemonsets", manifest(tolerations=[
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
         "effect": "NoSchedule"}]))
    everywhere = {n["name"] for n in HARNESS_NODES}
    wait_for("a pod on every node", lambda: set(placed(cluster)) == everywhere, 15)
    cluster.client.patch("daemonsets", "agent", {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "busybox:1.37"}]}}}}, "default", kind="strategic")
    wait_for("the new image on every node",
             lambda: set(placed(cluster, "busybox:1.37")) == everywhere, 30)
    revisions = cluster.client.list("controllerrevisions", "default")[0]
    assert sorted(r["revision"] for r in revisions) == [1, 2]


def test_a_node_object_created_later_gets_a_pod_bound_to_it(cluster):
    cluster.client.create("daemonsets", manifest())
    wait_for("a pod on each worker", lambda: set(placed(cluster)) == set(HARNESS_WORKERS), 15)
    cluster.client.create("nodes", node_object({
        "name": "ip-172-31-0-13", "role": "worker", "internalIP": "172.31.0.13",
        "podCIDR": "192.168.3.0/24"}))

    def bound():
        return [p for p in cluster.pods("app=agent")
                if p["spec"].get("nodeName") == "ip-172-31-0-13"]
    [pod] = wait_for("a pod bound to the new node", bound, 15)
    assert target_node(pod) == "ip-172-31-0-13"
