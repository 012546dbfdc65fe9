"""The scheduler: binds each pod without a node to a schedulable, Ready node.

Filters as kube-scheduler's default plugins do — node Ready and not
unschedulable, NoSchedule/NoExecute taints tolerated, nodeSelector and
required node affinity matched, spec.nodeName honoured — then prefers the
node with the fewest pods of the same owner, then the fewest pods (spreading).
Pods bound but not yet seen back through the informer are "assumed" on their
node, so a burst of 50 pods spreads instead of piling onto one node.

The API has no pods/binding subresource; binding sets spec.nodeName with a
merge patch guarded by the pod's resourceVersion.  Each binding is a Scheduled
Event on the pod, each failed attempt a FailedScheduling one (kube-scheduler
writes them through events.k8s.io; these are the same Events in the core
shape).
"""
from __future__ import annotations

import threading
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

SCHEDULER_NAME = "default-scheduler"
RETRY_UNSCHEDULABLE = 5.0


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


def choose_node(pod: dict, nodes: list[dict], placed: list[tuple[str, str]]) -> Decision:
    """placed: (node name, owner uid or "") of every pod already on a node."""
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
    ref = controller_ref(pod)
    owner = ref.get("uid", "") if ref else ""

    def score(name: str) -> tuple:
        same = sum(1 for node, uid in placed if node == name and owner and uid == owner)
        total = sum(1 for node, _ in placed if node == name)
        return (same, total, name)
    return Decision(min(feasible, key=score))


class Scheduler(Controller):
    name = "scheduler"
    component = "default-scheduler"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self._assumed: dict[str, tuple[str, str]] = {}   # pod uid -> (node, owner uid)
        self._lock = threading.Lock()
        self.watch("pods", self._on_pod)
        self.watch("nodes", self._on_node)

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        uid = pod["metadata"].get("uid")
        if kind == "DELETED" or pod["spec"].get("nodeName"):
            with self._lock:
                self._assumed.pop(uid, None)
        if kind != "DELETED" and needs_scheduling(pod):
            self.queue.add(key_of(pod))

    def _on_node(self, kind: str, node: dict, old: dict | None) -> None:
        for pod in self.cached("pods"):
            if needs_scheduling(pod):
                self.queue.add(key_of(pod))

    def _placed(self) -> list[tuple[str, str]]:
        placed = []
        seen = set()
        for pod in self.cached("pods"):
            node = pod["spec"].get("nodeName")
            if node and not is_terminal(pod):
                ref = controller_ref(pod)
                placed.append((node, ref.get("uid", "") if ref else ""))
                seen.add(pod["metadata"].get("uid"))
        with self._lock:
            placed += [v for uid, v in self._assumed.items() if uid not in seen]
        return placed

    def reconcile(self, key: str) -> None:
        pod = self.get_cached("pods", key)
        if pod is None or not needs_scheduling(pod):
            return
        uid = pod["metadata"].get("uid")
        with self._lock:
            if uid in self._assumed:
                return
        decision = choose_node(pod, self.cached("nodes"), self._placed())
        namespace, name = split_key(key)
        if decision.node is None:
            self.recorder.event(pod, WARNING, "FailedScheduling", decision.message)
            self._mark_unschedulable(pod, decision.message)
            self.queue.add_after(key, RETRY_UNSCHEDULABLE)
            return
        ref = controller_ref(pod)
        with self._lock:
            self._assumed[uid] = (decision.node, ref.get("uid", "") if ref else "")
        try:
            self.client.patch("pods", name, {
                "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
                "spec": {"nodeName": decision.node}}, namespace)
        except ApiError as err:
            with self._lock:
                self._assumed.pop(uid, None)
            if err.not_found:
                return
            raise
        self.recorder.event(pod, NORMAL, "Scheduled",
                            f"Successfully assigned {namespace}/{name} to {decision.node}")

    def _mark_unschedulable(self, pod: dict, message: str) -> None:
        current = condition(pod, "PodScheduled") or {}
        if current.get("status") == "False" and current.get("message") == message:
            return
        self.client.patch("pods", pod["metadata"]["name"], {"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": None,
            "lastTransitionTime": now_rfc3339()}]}}, pod["metadata"]["namespace"],
            subresource="status")
