"""The scheduler: binds each pod without a node to a schedulable, Ready node.

Filters as kube-scheduler's default plugins do — node Ready and not
unschedulable, NoSchedule/NoExecute taints tolerated, nodeSelector and
required node affinity matched, spec.nodeName honoured — then prefers the
node with the fewest pods of the same owner, then the fewest pods (spreading).

As kube-scheduler, it keeps its own cache of where pods are (`Placement`,
counted per node and per owner, so a decision costs O(nodes), not O(pods)),
and binds asynchronously: a pod is "assumed" on its node at once, the next
pod is scheduled against that, and the binding itself is written by a small
pool of binder threads.  A failed binding forgets the assumption and puts the
pod back in the queue.  So a burst of pods is limited by the API's write rate,
not by one round trip per pod.

The API has no pods/binding subresource; binding sets spec.nodeName with a
merge patch guarded by the pod's resourceVersion.  Each binding is a Scheduled
Event on the pod, each failed attempt a FailedScheduling one (kube-scheduler
writes them through events.k8s.io; these are the same Events in the core
shape).
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from base.kube.client import ApiError
from controlplane.controllers.base import Controller
from controlplane.controllers.objects import (
    condition,
    controller_ref,
    is_terminal,
    is_terminating,
    key_of,
    now_rfc3339,
    split_key,
)
from controlplane.events import NORMAL, WARNING

log = logging.getLogger("controlplane.controllers")
SCHEDULER_NAME = "default-scheduler"
RETRY_UNSCHEDULABLE = 5.0
BINDERS = 16


class Placement:
    """Where each pod is, bound or assumed: pod uid -> (node, owner uid or "").

    Counted as it changes, so `counts` is O(1).  Thread-safe: the informer's
    thread, the scheduling loop and the binders all write it."""

    def __init__(self):
        self._where: dict[str, tuple[str, str]] = {}
        self._on_node: Counter = Counter()
        self._of_owner: Counter = Counter()
        self._lock = threading.Lock()

    def place(self, uid: str, node: str, owner: str) -> None:
        with self._lock:
            self._remove(uid)
            self._where[uid] = (node, owner)
            self._on_node[node] += 1
            if owner:
                self._of_owner[node, owner] += 1

    def remove(self, uid: str) -> None:
        with self._lock:
            self._remove(uid)

    def _remove(self, uid: str) -> None:
        where = self._where.pop(uid, None)
        if where is None:
            return
        node, owner = where
        self._on_node[node] -= 1
        if owner:
            self._of_owner[node, owner] -= 1

    def counts(self, node: str, owner: str) -> tuple[int, int]:
        """(pods of `owner` on `node`, all pods on `node`)."""
        with self._lock:
            return (self._of_owner[node, owner] if owner else 0), self._on_node[node]


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""


def tolerates(toleration: dict, taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(pod: dict, node: dict) -> dict | None:
    tolerations = pod["spec"].get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _expression_matches(expr: dict, labels: dict) -> bool:
    key, operator = expr.get("key"), expr.get("operator")
    values = expr.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int(values[0])
        except (KeyError, ValueError, IndexError):
            return False
        return have > want if operator == "Gt" else have < want
    return False


def node_selected(pod: dict, node: dict) -> bool:
    labels = (node["metadata"].get("labels") or {})
    selector = pod["spec"].get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    for term in terms:   # terms are ORed, expressions within a term ANDed
        fields = {"metadata.name": node["metadata"]["name"]}
        if all(_expression_matches(e, labels) for e in term.get("matchExpressions") or []) and \
                all(_expression_matches(e, fields) for e in term.get("matchFields") or []):
            return True
    return False


def node_ready(node: dict) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def needs_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and not is_terminating(pod) and not is_terminal(pod)
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME)


def choose_node(pod: dict, nodes: list[dict], placed: Placement) -> Decision:
    """placed: every pod already on a node, or assumed there."""
    reasons: dict[str, int] = {}

    def reject(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1
    feasible = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        taint = untolerated_taint(pod, node)
        if not node_ready(node):
            reject("node(s) were not ready")
        elif (node.get("spec") or {}).get("unschedulable"):
            reject("node(s) were unschedulable")
        elif taint is not None:
            reject(f"node(s) had untolerated taint {{{taint.get('key')}: "
                   f"{taint.get('value', '')}}}")
        elif not node_selected(pod, node):
            reject("node(s) didn't match Pod's node affinity/selector")
        else:
            feasible.append(node["metadata"]["name"])
    if not feasible:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        return Decision(None, f"0/{len(nodes)} nodes are available: {detail}. "
                              "preemption: not eligible due to preemptionPolicy=Never.")
    owner = owner_uid(pod)
    return Decision(min(feasible, key=lambda name: (*placed.counts(name, owner), name)))


def owner_uid(pod: dict) -> str:
    ref = controller_ref(pod)
    return ref.get("uid", "") if ref else ""


class Scheduler(Controller):
    name = "scheduler"
    component = "default-scheduler"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.placement = Placement()
        self._assumed: set[str] = set()   # uids bound or binding, not yet seen bound
        self._lock = threading.Lock()
        self._binders = self.pool("scheduler-bind", BINDERS)
        self.watch("pods", self._on_pod)
        self.watch("nodes", self._on_node)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._binders.shutdown()

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        uid = pod["metadata"].get("uid")
        node = pod["spec"].get("nodeName")
        if kind == "DELETED" or is_terminal(pod):
            self.placement.remove(uid)
        elif node:
            self.placement.place(uid, node, owner_uid(pod))
        if kind == "DELETED" or node:
            with self._lock:
                self._assumed.discard(uid)
        if kind != "DELETED" and needs_scheduling(pod):
            self.queue.add(key_of(pod))

    def _on_node(self, kind: str, node: dict, old: dict | None) -> None:
        for pod in self.cached("pods"):
            if needs_scheduling(pod):
                self.queue.add(key_of(pod))

    def reconcile(self, key: str) -> None:
        pod = self.get_cached("pods", key)
        if pod is None or not needs_scheduling(pod):
            return
        uid = pod["metadata"].get("uid")
        with self._lock:
            if uid in self._assumed:
                return
        decision = choose_node(pod, self.cached("nodes"), self.placement)
        if decision.node is None:
            self.recorder.event(pod, WARNING, "FailedScheduling", decision.message)
            self._mark_unschedulable(pod, decision.message)
            self.queue.add_after(key, RETRY_UNSCHEDULABLE)
            return
        with self._lock:
            self._assumed.add(uid)
        self.placement.place(uid, decision.node, owner_uid(pod))
        self._binders.submit(self._bind, key, pod, decision.node)

    def _bind(self, key: str, pod: dict, node: str) -> None:
        """The binding cycle, on a binder thread: write spec.nodeName, or forget the assumption."""
        namespace, name = split_key(key)
        uid = pod["metadata"].get("uid")
        try:
            self.client.patch("pods", name, {
                "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
                "spec": {"nodeName": node}}, namespace)
        except Exception as err:   # the pod goes back to the queue, whatever broke
            with self._lock:
                seen_bound = uid not in self._assumed   # a write that did land, say
                self._assumed.discard(uid)
            if not seen_bound:
                self.placement.remove(uid)
            if isinstance(err, ApiError) and err.not_found:
                return
            if not isinstance(err, (ApiError, OSError)):
                log.exception("scheduler: binding %s to %s failed", key, node)
            self.queue.add_rate_limited(key)
            return
        self.recorder.event(pod, NORMAL, "Scheduled",
                            f"Successfully assigned {namespace}/{name} to {node}")
    def _mark_unschedulable(self, pod: dict, message: str) -> None:
        current = condition(pod, "PodScheduled") or {}
        if current.get("status") == "False" and current.get("message") == message:
            return
        self.client.patch("pods", pod["metadata"]["name"], {"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339()}]}}, pod["metadata"]["namespace"],
            subresource="status")
