"""The work queue: one key at a time, no duplicates, back-off on failure; GC and collisions."""
from __future__ import annotations

import time

from controlplane.controllers.deployment import compute_rollout
from controlplane.controllers.gc import known_owner_refs
from controlplane.controllers.queue import WorkQueue


def test_a_key_is_handed_out_once_even_if_added_while_in_work():
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    assert queue.get(0.1) == "a"
    queue.add("a")                      # changed again while being reconciled
    assert queue.get(0.05) is None      # ... but not handed out twice at once
    queue.done("a")
    assert queue.get(0.1) == "a"
    queue.done("a")
    assert queue.get(0.05) is None


def test_failures_come_back_after_a_growing_back_off():
    queue = WorkQueue(base_delay=0.05, max_delay=1.0)
    added = time.monotonic()
    queue.add_rate_limited("k")
    assert queue.get(0.01) is None
    assert queue.get(1.0) == "k"
    assert time.monotonic() - added >= 0.05
    queue.done("k")
    added = time.monotonic()            # each delay counts from its own failure
    queue.add_rate_limited("k")         # second failure: twice the delay
    assert queue.get(1.0) == "k"
    assert time.monotonic() - added >= 0.1
    queue.forget("k")
    queue.shutdown()
    assert queue.get(1.0) is None


def test_a_name_taken_by_a_foreign_replicaset_bumps_the_collision_count():
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "d", "namespace": "default", "uid": "uid-d"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                       "template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "v1"}]}}}}
    first = compute_rollout(deploy, [])
    squatter = {"metadata": {"name": first.create["metadata"]["name"], "namespace": "default",
                             "uid": "other"}, "spec": {"replicas": 1, "template": {}}}
    assert compute_rollout(deploy, [squatter]).collision
    deploy["status"] = {"collisionCount": 1}
    retry = compute_rollout(deploy, [squatter])
    assert retry.create["metadata"]["name"] != squatter["metadata"]["name"]


def test_the_garbage_collector_follows_known_owner_kinds_only():
    obj = {"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1"},
        {"apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "2"}]}}
    assert [(r, ref["name"]) for r, ref in known_owner_refs(obj)] == [("replicasets", "rs")]
