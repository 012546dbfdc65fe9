"""The garbage collector follows ownerReferences of every workload kind: deleting a
StatefulSet, DaemonSet, Job, CronJob or ReplicationController deletes what it owns (a
CronJob's Jobs and, through them, their pods), as kube-controller-manager's own identity;
an object with another owner still alive stays; and the pure helpers for orphaning."""
from __future__ import annotations

import socket

import pytest

from base.kube.client import KubeClient, credentials_from_kubeconfig, path_for
from base.kube.informer import Informer
from base.waiting import wait_until
from controlplane.api import ApiServer, owners
from controlplane.controllers.gc import GarbageCollector, known_owner_refs
from support import controller_harness as harness

TEMPLATE = {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
SELECTOR = {"matchLabels": {"app": "x"}}
OWNERS = {
    "statefulsets": {"apiVersion": "apps/v1", "kind": "StatefulSet",
                     "spec": {"serviceName": "x", "selector": SELECTOR, "template": TEMPLATE}},
    "daemonsets": {"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    "replicationcontrollers": {"apiVersion": "v1", "kind": "ReplicationController",
                               "spec": {"selector": {"app": "x"}, "template": TEMPLATE}},
    "jobs": {"apiVersion": "batch/v1", "kind": "Job",
             "spec": {"template": {"spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}}},
    "cronjobs": {"apiVersion": "batch/v1", "kind": "CronJob",
                 "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {
                     "spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}}}}},
}


def ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def pod(name: str, *refs: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "ownerReferences": list(refs)},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def revision(name: str, owner: dict) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name, "ownerReferences": [ref(owner)]},
            "data": {"spec": {}}, "revision": 1}


def job_of(name: str, cronjob: dict) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "ownerReferences": [ref(cronjob)]},
            "spec": {"template": {"spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}}}


@pytest.fixture
def cluster(tmp_path):
    """(admin client, running garbage collector) on a fresh API server."""
    server = ApiServer(tmp_path / "api", harness.cluster_info(), node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.add_listener(sock)
    with server.start():
        admin = KubeClient.from_kubeconfig(str(server.kubeconfig_path))
        path = server.write_kubeconfig(tmp_path / "kcm", f"https://{server.addresses[0]}",
                                       token=server.mint_token("system:kube-controller-manager"))
        kcm = KubeClient(credentials_from_kubeconfig(str(path)))
        informers = {r: Informer(kcm, r) for r in GarbageCollector.reads}
        gc = GarbageCollector(kcm, informers)
        for informer in informers.values():
            informer.start()
        gc.start()
        try:
            yield admin
        finally:
            gc.stop()
            for informer in informers.values():
                informer.stop()


def make(admin: KubeClient, resource: str, name: str) -> dict:
    return admin.create(resource, {**OWNERS[resource],
                                   "metadata": {"name": name}}, "default")


def names(admin: KubeClient, resource: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in admin.list(resource, "default")[0])


def gone(admin: KubeClient, resource: str, *wanted_gone: str):
    return lambda: not set(wanted_gone) & set(names(admin, resource))


@pytest.mark.parametrize("resource", ["statefulsets", "daemonsets"])
def test_deleting_a_set_deletes_its_pods_and_revisions(cluster, resource):
    owner = make(cluster, resource, "web")
    other = make(cluster, resource, "other")
    for i in range(2):
        cluster.create("pods", pod(f"web-{i}", ref(owner)), "default")
    cluster.create("pods", pod("other-0", ref(other)), "default")
    cluster.create("controllerrevisions", revision("web-1", owner), "default")
    cluster.delete(resource, "web", "default")
    wait_until("the set's pods collected", gone(cluster, "pods", "web-0", "web-1"))
    wait_until("the set's revision collected", gone(cluster, "controllerrevisions", "web-1"))
    assert names(cluster, "pods") == ["other-0"]


@pytest.mark.parametrize("resource", ["jobs", "replicationcontrollers"])
def test_deleting_a_job_or_rc_deletes_its_pods(cluster, resource):
    owner = make(cluster, resource, "work")
    cluster.create("pods", pod("work-abcde", ref(owner)), "default")
    cluster.create("pods", pod("mine"), "default")
    cluster.delete(resource, "work", "default")
    wait_until("the pod collected", gone(cluster, "pods", "work-abcde"))
    assert names(cluster, "pods") == ["mine"]


def test_deleting_a_cronjob_cascades_through_its_jobs_to_their_pods(cluster):
    cronjob = make(cluster, "cronjobs", "hello")
    job = cluster.create("jobs", job_of("hello-28000000", cronjob), "default")
    cluster.create("pods", pod("hello-28000000-xyz12", ref(job)), "default")
    cluster.delete("cronjobs", "hello", "default")
    wait_until("the job collected", gone(cluster, "jobs", "hello-28000000"))
    wait_until("its pod collected", gone(cluster, "pods", "hello-28000000-xyz12"))


def test_a_dependent_with_a_live_owner_left_is_kept(cluster):
    first = make(cluster, "replicationcontrollers", "first")
    second = make(cluster, "replicationcontrollers", "second")
    shared = {**ref(second), "controller": False}
    cluster.create("pods", pod("shared", ref(first), shared), "default")
    cluster.create("pods", pod("only-first", ref(first)), "default")
    cluster.delete("replicationcontrollers", "first", "default")
    wait_until("the solely owned pod collected", gone(cluster, "pods", "only-first"))
    assert names(cluster, "pods") == ["shared"]


def test_an_owner_recreated_under_the_same_name_does_not_save_the_old_dependents(cluster):
    old = make(cluster, "statefulsets", "web")
    cluster.create("pods", pod("web-0", ref(old)), "default")
    cluster.delete("statefulsets", "web", "default")
    make(cluster, "statefulsets", "web")
    wait_until("the old owner's pod collected", gone(cluster, "pods", "web-0"))


def test_orphan_propagation_keeps_the_dependents_without_the_reference(cluster):
    orphaned_owner = make(cluster, "statefulsets", "web")
    collected_owner = make(cluster, "statefulsets", "other")
    cluster.create("pods", pod("web-0", ref(orphaned_owner)), "default")
    cluster.create("controllerrevisions", revision("web-1", orphaned_owner), "default")
    cluster.create("pods", pod("other-0", ref(collected_owner)), "default")
    cluster.request("DELETE", path_for("statefulsets", "default", "web"),
                    body={"propagationPolicy": "Orphan"})
    cluster.delete("statefulsets", "other", "default")
    wait_until("the other set's pod collected", gone(cluster, "pods", "other-0"))
    assert names(cluster, "pods") == ["web-0"]
    assert "ownerReferences" not in cluster.get("pods", "web-0", "default")["metadata"]
    assert names(cluster, "controllerrevisions") == ["web-1"]


def test_known_owner_refs_cover_every_workload_kind():
    obj = {"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "a"},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "b"},
        {"apiVersion": "batch/v1", "kind": "Job", "name": "c"},
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": "d"},
        {"apiVersion": "v1", "kind": "ReplicationController", "name": "e"},
        {"apiVersion": "example.com/v1", "kind": "Widget", "name": "f"}]}}
    assert [r for r, _ in known_owner_refs(obj)] == [
        "statefulsets", "daemonsets", "jobs", "cronjobs", "replicationcontrollers"]


def test_orphaning_strips_only_the_owner_reference():
    owner = {"metadata": {"uid": "u1"}}
    both = pod("both", {"uid": "u1", "name": "a"}, {"uid": "u2", "name": "b"})
    only = pod("only", {"uid": "u1", "name": "a"})
    other = pod("other", {"uid": "u3", "name": "c"})
    changed = owners.orphaned([both, only, other], owner)
    assert [o["metadata"]["name"] for o in changed] == ["both", "only"]
    assert changed[0]["metadata"]["ownerReferences"] == [{"uid": "u2", "name": "b"}]
    assert "ownerReferences" not in changed[1]["metadata"]
    assert len(both["metadata"]["ownerReferences"]) == 2, "the input was changed"


def test_propagation_policy_from_query_or_body():
    assert owners.propagation_policy({"propagationPolicy": "Orphan"}, None) == "Orphan"
    assert owners.propagation_policy({}, {"propagationPolicy": "Foreground"}) == "Foreground"
    assert owners.propagation_policy({}, {"orphanDependents": True}) == "Orphan"
    assert owners.propagation_policy({}, {}) == ""
    with pytest.raises(ValueError, match='Unsupported value: \'Later\''):
        owners.propagation_policy({"propagationPolicy": "Later"}, None)
