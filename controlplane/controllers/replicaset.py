"""The ReplicaSet controller: keeps `spec.replicas` pods of a template alive.

Pods are named `<rs>-<5 chars>`, labelled from the template and owned by the
ReplicaSet (controller ownerReference).  Too few: create; too many: delete
the least valuable first (unscheduled, pending, not ready, newest, most
restarted), as Kubernetes ranks them.  Creations and deletions the informer
has not shown yet are remembered ("expectations") so a stale cache never
makes the controller create or delete twice.  Each pod created or deleted is
an Event on the ReplicaSet (SuccessfulCreate "Created pod: X", ...).
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from base.jsoncopy import json_copy
from controlplane.api.selectors import label_selector_requirements, matches_labels
from controlplane.controllers.base import Controller
from controlplane.controllers.naming import generated_name
from controlplane.controllers.objects import (
    controller_ref,
    is_active,
    is_available,
    is_ready,
    is_terminating,
    key_of,
    owned_by,
    owner_reference,
    parse_time,
    restart_count,
    selector_matches,
    split_key,
)

EXPECTATION_TTL = 15.0
Selects = Callable[[object, object], bool]
BURST = 500


@dataclass(frozen=True)
class ReplicaPlan:
    create: int
    delete: tuple[dict, ...]


def owned_pods(rs: dict, pods: list[dict], selects: Selects = selector_matches) -> list[dict]:
    """selects(selector, labels): a ReplicaSet's label selector (a ReplicationController's
    map selector: objects.map_selector_matches)."""
    namespace = rs["metadata"]["namespace"]
    matches = _selector_test(rs["spec"].get("selector"), selects)
    # A pod relabelled out of the selector no longer counts (it is left running, as
    # a released pod is), so the ReplicaSet makes a replacement.
    return [p for p in pods if p["metadata"].get("namespace") == namespace and owned_by(p, rs)
            and matches(p["metadata"].get("labels"))]


def _selector_test(selector, selects: Selects) -> Callable[[object], bool]:
    """selects(selector, ·), with a label selector parsed once rather than for each
    pod (a thousand pods per reconcile)."""
    if selects is selector_matches:
        requirements = label_selector_requirements(selector)
        return lambda labels: bool(requirements) and matches_labels(requirements, labels)
    return lambda labels: selects(selector, labels)


def deletion_rank(pod: dict) -> tuple:
    """Sort key: pods to delete first sort first (controller.ActivePods ordering)."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase"), 0)
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    created_key = -(created.timestamp() if created else 0.0)
    return (1 if pod.get("spec", {}).get("nodeName") else 0, phase_rank,
            1 if is_ready(pod) else 0, -restart_count(pod), created_key, pod["metadata"]["name"])


def plan_replicas(rs: dict, pods: list[dict], selects: Selects = selector_matches
                  ) -> ReplicaPlan:
    """How many pods to create, or which to delete, for one ReplicaSet."""
    active = [p for p in owned_pods(rs, pods, selects) if is_active(p)]
    want = int(rs["spec"].get("replicas", 1))
    diff = len(active) - want
    if diff < 0:
        return ReplicaPlan(min(-diff, BURST), ())
    if diff > 0:
        return ReplicaPlan(0, tuple(sorted(active, key=deletion_rank)[:diff]))
    return ReplicaPlan(0, ())


def pod_from_template(rs: dict, name: str) -> dict:
    template = json_copy(rs["spec"].get("template") or {})
    meta = template.get("metadata") or {}
    pod_meta = {"name": name, "namespace": rs["metadata"]["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [owner_reference(rs)]}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": template.get("spec") or {}}


def replicaset_status(rs: dict, pods: list[dict], now: dt.datetime,
                      selects: Selects = selector_matches, terminating: bool = True) -> dict:
    """terminating: report terminatingReplicas (ReplicaSets do; ReplicationControllers not)."""
    owned = owned_pods(rs, pods, selects)
    mine = [p for p in owned if is_active(p)]
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(rs["spec"].get("minReadySeconds", 0))
    status = {
        "replicas": len(mine),
        "fullyLabeledReplicas": sum(1 for p in mine if all(
            (p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())),
        "readyReplicas": sum(1 for p in mine if is_ready(p)),
        "availableReplicas": sum(1 for p in mine if is_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    going = sum(1 for p in owned if is_terminating(p))
    if going and terminating:
        status["terminatingReplicas"] = going
    return status


class Expectations:
    """Pods this controller created or deleted that the informer has not shown yet."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[set[str], set[str], float]] = {}

    def expect(self, key: str, creates: set[str], deletes: set[str]) -> None:
        with self._lock:
            self._pending[key] = (set(creates), set(deletes), time.monotonic())

    def observe_create(self, key: str, name: str) -> None:
        with self._lock:
            if key in self._pending:
                self._pending[key][0].discard(name)

    def observe_delete(self, key: str, name: str) -> None:
        with self._lock:
            if key in self._pending:
                self._pending[key][0].discard(name)
                self._pending[key][1].discard(name)

    def satisfied(self, key: str) -> bool:
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                return True
            creates, deletes, since = entry
            if (not creates and not deletes) or time.monotonic() - since > EXPECTATION_TTL:
                del self._pending[key]
                return True
            return False

    def forget(self, key: str) -> None:
        with self._lock:
            self._pending.pop(key, None)


class ReplicaSetController(Controller):
    """Also the ReplicationController's: replicationcontroller.py overrides the kind below."""

    name = "replicaset"
    component = "replicaset-controller"
    resource = "replicasets"
    owner_kind = "ReplicaSet"
    selects = staticmethod(selector_matches)
    reports_terminating = True

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.expectations = Expectations()
        self.watch(self.resource, self._on_replicaset)
        self.watch("pods", self._on_pod)

    def _on_replicaset(self, kind: str, rs: dict, old: dict | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(rs))
        self.queue.add(key_of(rs))

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.owner_kind:
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        name = pod["metadata"]["name"]
        if kind == "ADDED":
            self.expectations.observe_create(key, name)
        if kind == "DELETED" or is_terminating(pod):
            self.expectations.observe_delete(key, name)
        self.queue.add(key)

    def reconcile(self, key: str) -> None:
        rs = self.get_cached(self.resource, key)
        if rs is None or is_terminating(rs):
            return
        if not self.expectations.satisfied(key):
            self.queue.add_after(key, 0.2)
            return
        namespace, _ = split_key(key)
        pods = [p for p in self.cached("pods") if p["metadata"].get("namespace") == namespace]
        plan = plan_replicas(rs, pods, self.selects)
        names = [generated_name(rs["metadata"]["name"]) for _ in range(plan.create)]
        doomed = [pod["metadata"]["name"] for pod in plan.delete]
        if names or doomed:
            # Expect before acting: the informer may report a pod before create() returns.
            self.expectations.expect(key, set(names), set(doomed))
        # A plan creates or deletes, never both.  Pods not written will never be
        # observed: stop expecting them (upstream lowers its expectations so).
        unmade, create_error = self.create_pods(rs, [pod_from_template(rs, n) for n in names])
        kept, delete_error = self.delete_pods(rs, list(plan.delete))
        for pod in unmade + kept:
            self.expectations.observe_delete(key, pod["metadata"]["name"])
        if create_error or delete_error:
            raise create_error or delete_error
        if not plan.create and not plan.delete:
            self._write_status(rs, pods)

    def _write_status(self, rs: dict, pods: list[dict]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        status = replicaset_status(rs, pods, now, self.selects, self.reports_terminating)
        current = rs.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()) or (
                "terminatingReplicas" in current and "terminatingReplicas" not in status):
            status.setdefault("terminatingReplicas", None)
            self.client.patch(self.resource, rs["metadata"]["name"], {"status": status},
                              rs["metadata"]["namespace"], subresource="status")
        min_ready = int(rs["spec"].get("minReadySeconds", 0))
        if min_ready and status["availableReplicas"] < status["readyReplicas"]:
            self.queue.add_after(key_of(rs), 1.0)
