"""Graceful pod deletion: a pod on a node is marked, not removed, until its kubelet deletes it.

As in Kubernetes: DELETE sets metadata.deletionTimestamp (now + grace) and
deletionGracePeriodSeconds, `kubectl get` shows Terminating, and the object
stays until a delete with gracePeriodSeconds=0 (the kubelet's, or --force).
Pods never scheduled, or finished, go at once.
"""
from __future__ import annotations

import datetime as dt
import random
import subprocess
import time

import pytest

from controlplane.api.bootstrap import bootstrap
from controlplane.api.registry import ClusterConfig, Registry
from controlplane.api.resources import BY_PLURAL
from controlplane.api.store import Store

PODS = BY_PLURAL["pods"]
NODE = "ip-172-31-0-11"


@pytest.fixture
def registry(cluster_info) -> Registry:
    reg = Registry(Store(), ClusterConfig.from_info(cluster_info), random.Random(7))
    bootstrap(reg, cluster_info)
    return reg


def pod(name: str, node: str | None = NODE, grace: int | None = None) -> dict:
    spec = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": name}, "spec": spec}


def parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def test_a_scheduled_pod_is_marked_with_its_grace_period(registry):
    registry.create(PODS, "default", pod("p"))
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    marked = registry.delete(PODS, "default", "p")
    meta = registry.get(PODS, "default", "p")["metadata"]
    assert meta == marked["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30
    assert 29 <= (parse(meta["deletionTimestamp"]) - before).total_seconds() <= 31


def test_grace_can_only_shorten_and_zero_removes(registry):
    registry.create(PODS, "default", pod("p", grace=60))
    registry.delete(PODS, "default", "p", grace_period=10)
    registry.delete(PODS, "default", "p", grace_period=20)
    assert registry.get(PODS, "default", "p")["metadata"]["deletionGracePeriodSeconds"] == 10
    registry.delete(PODS, "default", "p", grace_period=2)
    assert registry.get(PODS, "default", "p")["metadata"]["deletionGracePeriodSeconds"] == 2
    registry.delete(PODS, "default", "p", grace_period=0)
    assert registry.store.get("pods", "default", "p") is None


def test_unscheduled_or_finished_pods_go_at_once(registry):
    registry.create(PODS, "default", pod("pending", node=None))
    registry.delete(PODS, "default", "pending")
    assert registry.store.get("pods", "default", "pending") is None
    registry.create(PODS, "default", pod("done"))
    finished = registry.get(PODS, "default", "done")
    finished["status"]["phase"] = "Succeeded"
    registry.update(PODS, "default", "done", finished, "status")
    registry.delete(PODS, "default", "done")
    assert registry.store.get("pods", "default", "done") is None


def test_updates_keep_the_deletion_mark(registry):
    registry.create(PODS, "default", pod("p"))
    registry.delete(PODS, "default", "p")
    current = registry.get(PODS, "default", "p")
    current["status"]["phase"] = "Running"
    registry.update(PODS, "default", "p", current, "status")
    relabelled = registry.get(PODS, "default", "p")
    relabelled["metadata"]["labels"] = {"a": "b"}
    relabelled["metadata"].pop("deletionTimestamp")
    registry.update(PODS, "default", "p", relabelled)
    assert registry.get(PODS, "default", "p")["metadata"]["deletionTimestamp"] == \
        current["metadata"]["deletionTimestamp"]


def test_kubectl_delete_waits_while_the_pod_is_terminating(kubectl, api_server):
    kubectl("run", "web", "--image=nginx", "--overrides",
            '{"spec": {"nodeName": "%s"}}' % NODE)
    deleting = subprocess.Popen(kubectl.argv("delete", "pod", "web", "--timeout=30s"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=kubectl.cwd, env=kubectl.env())
    try:
        deadline = time.monotonic() + 20
        while "Terminating" not in kubectl("get", "pod", "web", "--no-headers"):
            assert time.monotonic() < deadline, "the pod never showed Terminating"
            time.sleep(0.05)
        assert deleting.poll() is None          # kubectl waits while the pod terminates
        # The kubelet's (or a user's forced) grace-0 delete ends it.
        kubectl("delete", "pod", "web", "--grace-period=0", "--force")
        out, err = deleting.communicate(timeout=30)
    finally:
        if deleting.poll() is None:
            deleting.kill()
            deleting.communicate()
    assert deleting.returncode == 0, err
    assert 'pod "web" deleted' in out
    assert kubectl.run("get", "pod", "web").returncode != 0
