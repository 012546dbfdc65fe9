"""The DaemonSet controller: acts on daemonset.py's and daemon_update.py's decisions.

One key per DaemonSet; pods, ControllerRevisions and Nodes (a new node, or
one whose labels, taints or schedulability change) bring their sets back.
Each pass records the set's template as a ControllerRevision (named
`<set>-<hash>`, the hash the pods are labelled with), creates and deletes
pods for the manage loop or, when that has nothing to do, for the rolling
update, writes the status and trims the revision history.  Pods are named
`<set>-<5 chars>`; creations and deletions the cache has not shown yet are
waited for (expectations), as for ReplicaSets.  A failed daemon pod is
deleted with a FailedDaemonPod Event, and the next failure on that node
waits twice as long (1 s up to 15 min), as upstream's failed-pods back-off.
"""
from __future__ import annotations

import datetime as dt
import threading
import time

from base.jsoncopy import json_copy
from base.kube.client import ApiError
from controlplane.controllers import daemonset as dsu
from controlplane.controllers import revisions as rev
from controlplane.controllers.base import Controller
from controlplane.controllers.daemon_update import plan_rolling_update
from controlplane.controllers.naming import compute_hash, generated_name
from controlplane.controllers.objects import controller_ref, is_terminating, key_of
from controlplane.controllers.podtemplates import status_patch
from controlplane.controllers.replicaset import Expectations
from controlplane.events import WARNING

BACKOFF_START = 1.0
BACKOFF_MAX = 900.0


class DaemonSetController(Controller):
    name = "daemonset"
    component = "daemonset-controller"
    reads = ("daemonsets", "pods", "controllerrevisions", "nodes")

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.expectations = Expectations()
        self._lock = threading.Lock()
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}   # -> (until, delay)
        self.watch("daemonsets", self._on_set)
        self.watch("pods", self._on_pod)
        self.watch("controllerrevisions", self._on_revision)
        self.watch("nodes", self._on_node)

    # --- events in -------------------------------------------------------------

    def _on_set(self, kind: str, ds: dict, old: dict | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(ds))
        self.queue.add(key_of(ds))

    def _owner_key(self, obj: dict) -> str | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        return f"{obj['metadata']['namespace']}/{ref['name']}"

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        key = self._owner_key(pod)
        if key is None:
            return
        if kind == "ADDED":
            self.expectations.observe_create(key, pod["metadata"]["name"])
        if kind == "DELETED" or is_terminating(pod):
            self.expectations.observe_delete(key, pod["metadata"]["name"])
        self.queue.add(key)

    def _on_revision(self, kind: str, obj: dict, old: dict | None) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _on_node(self, kind: str, node: dict, old: dict | None) -> None:
        if kind == "MODIFIED" and old is not None and \
                node["metadata"].get("labels") == old["metadata"].get("labels") and \
                node.get("spec") == old.get("spec"):
            return                      # a heartbeat: nothing a DaemonSet looks at
        for ds in self.cached("daemonsets"):
            self.queue.add(key_of(ds))

    # --- reconcile -------------------------------------------------------------

    def reconcile(self, key: str) -> None:
        ds = self.get_cached("daemonsets", key)
        if ds is None or is_terminating(ds):
            return
        if not self.expectations.satisfied(key):
            self.queue.add_after(key, 0.2)
            return
        owned = rev.owned_revisions(ds, self.cached("controllerrevisions"))
        revision_hash = self._current_revision(ds, owned)
        if revision_hash is None:
            return
        namespace = ds["metadata"]["namespace"]
        nodes = self.cached("nodes")
        pods = [p for p in self.cached("pods") if p["metadata"].get("namespace") == namespace]
        step = dsu.plan_nodes(ds, nodes, pods, revision_hash, self._backing_off(key))
        creates, deletes = list(step.create), list(step.delete)
        if not creates and not deletes:
            update = plan_rolling_update(ds, nodes, pods, revision_hash,
                                         dt.datetime.now(dt.timezone.utc))
            creates, deletes = list(update.create), [(p, "update") for p in update.delete]
        self._act(ds, key, creates, deletes, revision_hash)
        self._write_status(ds, nodes, pods, revision_hash)
        live = {rev.revision_name(ds["metadata"]["name"], revision_hash)} | {
            rev.revision_name(ds["metadata"]["name"], h) for h in
            ((p["metadata"].get("labels") or {}).get(rev.CONTROLLER_REVISION_HASH)
             for pods_on_node in dsu.daemon_pods_by_node(ds, pods).values()
             for p in pods_on_node) if h}
        for name in rev.history_to_delete(owned, live, ds["spec"].get("revisionHistoryLimit")):
            try:
                self.client.delete("controllerrevisions", name, namespace)
            except ApiError as err:
                if not err.not_found:
                    raise

    def _current_revision(self, ds: dict, owned: list[dict]) -> str | None:
        """constructHistory: the revision hash of the set's template (its revision found,
        renumbered or created); None after bumping collisionCount."""
        data = rev.template_patch(ds)
        collisions = (ds.get("status") or {}).get("collisionCount")
        revision_hash = compute_hash(ds["spec"].get("template") or {}, collisions)
        candidate = rev.new_revision(ds, data, rev.next_revision_number(owned), revision_hash,
                                     rev.CONTROLLER_REVISION_HASH,
                                     ds["metadata"].get("annotations"))
        step = rev.plan_update_revision(candidate, owned)
        if step.create is not None:
            try:
                self.client.create("controllerrevisions", step.create)
            except ApiError as err:
                if err.status != 409:
                    raise
                existing = self.client.get("controllerrevisions", step.name,
                                           ds["metadata"]["namespace"])
                if existing.get("data") != data:      # a hash collision: hash again
                    self.client.patch("daemonsets", ds["metadata"]["name"],
                                      {"status": {"collisionCount": int(collisions or 0) + 1}},
                                      ds["metadata"]["namespace"], subresource="status")
                    return None
            return revision_hash
        found = next(r for r in owned if r["metadata"]["name"] == step.name)
        if step.renumber is not None:
            found = json_copy(found)
            found["revision"] = step.renumber
            self.client.update("controllerrevisions", found)
        return (found["metadata"].get("labels") or {}).get(rev.CONTROLLER_REVISION_HASH,
                                                           revision_hash)

    def _backing_off(self, key: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            return frozenset(node for (ds_key, node), (until, _) in self._backoff.items()
                             if ds_key == key and until > now)

    def _note_failure(self, key: str, node: str) -> None:
        now = time.monotonic()
        with self._lock:
            until, delay = self._backoff.get((key, node), (0.0, 0.0))
            delay = BACKOFF_START if until + 2 * BACKOFF_MAX < now or not delay \
                else min(BACKOFF_MAX, delay * 2)
            self._backoff[(key, node)] = (now + delay, delay)
        self.queue.add_after(key, delay)

    def _act(self, ds: dict, key: str, creates: list[str], deletes: list[tuple[dict, str]],
             revision_hash: str) -> None:
        if not creates and not deletes:
            return
        names = {node: generated_name(ds["metadata"]["name"]) for node in creates}
        self.expectations.expect(key, set(names.values()),
                                 {p["metadata"]["name"] for p, _ in deletes})
        try:
            for pod, why in deletes:
                if why == "failed":
                    node = dsu.target_node(pod)
                    self.recorder.event(ds, WARNING, "FailedDaemonPod",
                                        f"Found failed daemon pod {pod['metadata']['namespace']}/"
                                        f"{pod['metadata']['name']} on node {node}, "
                                        f"will try to kill it")
                    self._note_failure(key, node)
                self.delete_pod(ds, pod)
            for node, name in names.items():
                self.create_pod(ds, dsu.daemon_pod(ds, node, revision_hash, name))
        except ApiError:
            self.expectations.forget(key)
            raise

    def _write_status(self, ds: dict, nodes: list[dict], pods: list[dict],
                      revision_hash: str) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        status = dsu.daemonset_status(ds, nodes, pods, revision_hash, now)
        patch = status_patch(ds.get("status"), status)
        if patch:
            self.client.patch("daemonsets", ds["metadata"]["name"], {"status": patch},
                              ds["metadata"]["namespace"], subresource="status")
        if ds["spec"].get("minReadySeconds") and \
                status.get("numberAvailable", 0) < status.get("numberReady", 0):
            self.queue.add_after(key_of(ds), 1.0)
