"""The StatefulSet controller: pods with stable names, made and removed in order.

A StatefulSet `web` with 3 replicas owns pods `web-0`, `web-1`, `web-2`, each
with `spec.hostname` its own name and `spec.subdomain` the governing Service
(so `web-0.nginx.<ns>.svc.cluster.local` resolves through a headless
Service), a `persistentVolumeClaim` volume `<template>-<pod>` per
volumeClaimTemplate (no claim is provisioned: the lab serves no
PersistentVolumeClaims), labelled `statefulset.kubernetes.io/pod-name`,
`apps.kubernetes.io/pod-index` and `controller-revision-hash` (the name of
the ControllerRevision it was made from).  `plan_statefulset` is pure and
follows upstream's stateful_set_control.go:

- OrderedReady (the default): pods are created one at a time in ordinal
  order, the next only when every lower one is Running and Ready (and
  available after minReadySeconds); on scale-down the highest ordinal goes
  first, one at a time, each after its successor is gone.  Parallel: all at
  once, both ways.
- A Failed or Succeeded pod is deleted and made again under the same name.
- RollingUpdate: pods whose revision is not the update revision are deleted
  from the highest ordinal down to `partition`, one at a time, each once
  the pods above it are healthy again; ordinals below the partition are
  (re)made from the current revision.  OnDelete: only pods that are deleted
  come back at the update revision.

Status counts as upstream does; currentRevision becomes the update revision
once every replica runs it and is ready.  Events are the pod-control ones:
"create Pod web-0 in StatefulSet web successful".
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from base.jsoncopy import json_copy
from base.kube.client import ApiError
from controlplane.controllers import revisions as rev
from controlplane.controllers.base import Controller
from controlplane.controllers.objects import (
    controller_ref,
    is_available,
    is_ready,
    is_terminating,
    key_of,
    owned_by,
    selector_matches,
)
from controlplane.controllers.podtemplates import omit_empty, pod_from_template, status_patch
from controlplane.controllers.replicaset import Expectations
from controlplane.events import NORMAL, WARNING

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
ORDINAL = re.compile(r"^(.*)-([0-9]+)$")
Revision = tuple[str, dict]        # (ControllerRevision name, pod template)


def parent_and_ordinal(name: str) -> tuple[str, int]:
    """getParentNameAndOrdinal: ("web", 2) for "web-2"; ("", -1) when there is none."""
    match = ORDINAL.match(name)
    if not match:
        return "", -1
    return match.group(1), int(match.group(2))


def ordinal_of(pod: dict) -> int:
    return parent_and_ordinal(pod["metadata"]["name"])[1]


def replicas_of(sts: dict) -> int:
    replicas = (sts.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def start_ordinal(sts: dict) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def update_strategy(sts: dict) -> dict:
    return (sts.get("spec") or {}).get("updateStrategy") or {"type": "RollingUpdate"}


def partition_of(sts: dict) -> int:
    strategy = update_strategy(sts)
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    return int((strategy.get("rollingUpdate") or {}).get("partition") or 0)


def is_running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod)


def is_running_and_available(pod: dict, min_ready: int, now: dt.datetime) -> bool:
    return is_running_and_ready(pod) and is_available(pod, min_ready, now)


def is_healthy(pod: dict) -> bool:
    return is_running_and_ready(pod) and not is_terminating(pod)


def pod_revision(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(rev.CONTROLLER_REVISION_HASH, "")


def set_pods(sts: dict, pods: list[dict]) -> list[dict]:
    """The set's pods: controlled by it, selected by it, named `<set>-<ordinal>`."""
    namespace, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
    selector = (sts.get("spec") or {}).get("selector")
    return [p for p in pods if p["metadata"].get("namespace") == namespace and owned_by(p, sts)
            and parent_and_ordinal(p["metadata"]["name"])[0] == name
            and selector_matches(selector, p["metadata"].get("labels"))]


def statefulset_pod(sts: dict, ordinal: int, revision: Revision) -> dict:
    """newStatefulSetPod: the template of `revision`, with the pod's identity."""
    name = f"{sts['metadata']['name']}-{ordinal}"
    pod = pod_from_template(revision[1], sts, name=name)
    pod["metadata"]["labels"].update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal),
                                      rev.CONTROLLER_REVISION_HASH: revision[0]})
    pod["spec"]["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        pod["spec"]["subdomain"] = service
    else:
        pod["spec"].pop("subdomain", None)
    claims = [c["metadata"]["name"] for c in (sts.get("spec") or {}).get(
        "volumeClaimTemplates") or [] if (c.get("metadata") or {}).get("name")]
    if claims:      # updateStorage: each claim template's volume, named for this pod
        pod["spec"]["volumes"] = [
            {"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{name}"}}
            for claim in claims] + [v for v in pod["spec"].get("volumes") or []
                                    if v.get("name") not in claims]
    return pod


def revision_for(sts: dict, ordinal: int, current: Revision, update: Revision) -> Revision:
    """newVersionedStatefulSetPod: below the partition, the current revision."""
    if ordinal < start_ordinal(sts) + partition_of(sts):
        return current
    return update


@dataclass(frozen=True)
class StatefulStep:
    create: tuple[dict, ...] = ()                  # pods to create, in order
    delete: tuple[tuple[dict, str], ...] = ()      # (pod, why): failed, succeeded,
    #                                                scale-down, update


def plan_statefulset(sts: dict, pods: list[dict], current: Revision, update: Revision,
                     now: dt.datetime) -> StatefulStep:
    """The pods to create and delete now (`pods`: the set's, see set_pods)."""
    spec = sts.get("spec") or {}
    monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    min_ready = int(spec.get("minReadySeconds") or 0)
    start, count = start_ordinal(sts), replicas_of(sts)
    slots: dict[int, dict] = {}
    condemned = []
    for pod in sorted(pods, key=ordinal_of):
        ordinal = ordinal_of(pod)
        if start <= ordinal < start + count and ordinal not in slots:
            slots[ordinal] = pod
        else:
            condemned.append(pod)
    condemned.sort(key=ordinal_of, reverse=True)
    creates: list[dict] = []
    deletes: list[tuple[dict, str]] = []

    def step() -> StatefulStep:
        return StatefulStep(tuple(creates), tuple(deletes))
    if is_terminating(sts):
        return step()
    # Pods made or removed in this pass stand in as new, not yet healthy pods.
    replicas: dict[int, dict] = {}
    for ordinal in range(start, start + count):
        pod = slots.get(ordinal)
        if pod is None:
            pod = statefulset_pod(sts, ordinal, revision_for(sts, ordinal, current, update))
            creates.append(pod)
            replicas[ordinal] = pod
            if monotonic:
                return step()
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                deletes.append((pod, phase.lower()))
            if monotonic:
                return step()
            replicas[ordinal] = statefulset_pod(sts, ordinal,
                                                revision_for(sts, ordinal, current, update))
            continue
        replicas[ordinal] = pod
        if monotonic and (is_terminating(pod) or
                          not is_running_and_available(pod, min_ready, now)):
            return step()
    unhealthy = [p for p in reversed(condemned) if not is_healthy(p)]
    first_unhealthy = unhealthy[0] if unhealthy else None
    for pod in condemned:
        if is_terminating(pod):
            if monotonic:
                return step()
            continue
        if monotonic and pod is not first_unhealthy and \
                not is_running_and_available(pod, min_ready, now):
            return step()
        deletes.append((pod, "scale-down"))
        if monotonic:
            return step()
    if update_strategy(sts).get("type", "RollingUpdate") != "RollingUpdate":
        return step()
    for ordinal in range(start + count - 1, start + partition_of(sts) - 1, -1):
        pod = replicas[ordinal]       # a stand-in has the update revision and no status
        if pod_revision(pod) != update[0] and not is_terminating(pod):
            deletes.append((pod, "update"))
            return step()
        if not is_healthy(pod):
            return step()
    return step()


def statefulset_status(sts: dict, pods: list[dict], current: str, update: str,
                       now: dt.datetime) -> dict:
    """computeReplicaStatus + completeRollingUpdate, over the set's pods."""
    min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
    created = [p for p in pods if (p.get("status") or {}).get("phase")]
    live = [p for p in created if not is_terminating(p)]
    status = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": len(created),
        "readyReplicas": sum(1 for p in created if is_running_and_ready(p)),
        "currentReplicas": sum(1 for p in live if pod_revision(p) == current),
        "updatedReplicas": sum(1 for p in live if pod_revision(p) == update),
        "availableReplicas": sum(1 for p in created
                                 if is_running_and_available(p, min_ready, now)),
        "currentRevision": current,
        "updateRevision": update,
    }
    collisions = (sts.get("status") or {}).get("collisionCount")
    if collisions is not None:
        status["collisionCount"] = collisions
    if update_strategy(sts).get("type", "RollingUpdate") == "RollingUpdate" and \
            status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
        status["currentReplicas"], status["currentRevision"] = status["updatedReplicas"], update
    return omit_empty(status, keep=("replicas", "availableReplicas", "observedGeneration"))


class StatefulSetController(Controller):
    name = "statefulset"
    component = "statefulset-controller"
    reads = ("statefulsets", "pods", "controllerrevisions")

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.expectations = Expectations()
        self.watch("statefulsets", self._on_set)
        self.watch("pods", self._on_pod)
        self.watch("controllerrevisions", self._on_owned)

    def _on_set(self, kind: str, sts: dict, old: dict | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(sts))
        self.queue.add(key_of(sts))

    def _on_owned(self, kind: str, obj: dict, old: dict | None) -> None:
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{obj['metadata']['namespace']}/{ref['name']}")

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "StatefulSet":
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        if kind == "ADDED":
            self.expectations.observe_create(key, pod["metadata"]["name"])
        if kind == "DELETED" or is_terminating(pod):
            self.expectations.observe_delete(key, pod["metadata"]["name"])
        self.queue.add(key)

    def reconcile(self, key: str) -> None:
        sts = self.get_cached("statefulsets", key)
        if sts is None:
            return
        if not self.expectations.satisfied(key):
            self.queue.add_after(key, 0.2)
            return
        owned = rev.owned_revisions(sts, self.cached("controllerrevisions"))
        update = self._update_revision(sts, owned)
        if update is None:
            return
        by_name = {r["metadata"]["name"]: r for r in owned}
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = by_name.get(current_name) if current_name else None
        current_rev = (current_name, rev.template_of(current)) if current else update
        pods = set_pods(sts, self.cached("pods"))
        now = dt.datetime.now(dt.timezone.utc)
        step = plan_statefulset(sts, pods, current_rev, update, now)
        self._act(sts, key, step)
        self._write_status(sts, pods, current_rev[0], update[0], now)
        live = {current_rev[0], update[0]} | {pod_revision(p) for p in pods}
        for name in rev.history_to_delete(owned, live, sts["spec"].get("revisionHistoryLimit")):
            self._delete("controllerrevisions", name, sts["metadata"]["namespace"])

    def _update_revision(self, sts: dict, owned: list[dict]) -> Revision | None:
        """The revision of the set's template now: found, renumbered or created."""
        data = rev.template_patch(sts)
        collisions = (sts.get("status") or {}).get("collisionCount")
        candidate = rev.new_revision(sts, data, rev.next_revision_number(owned),
                                     rev.hash_revision_data(data, collisions),
                                     rev.REVISION_HASH_LABEL)
        step = rev.plan_update_revision(candidate, owned)
        if step.renumber is not None:
            found = json_copy(next(r for r in owned if r["metadata"]["name"] == step.name))
            found["revision"] = step.renumber
            self.client.update("controllerrevisions", found)
        elif step.create is not None:
            try:
                self.client.create("controllerrevisions", step.create)
            except ApiError as err:
                if err.status != 409:
                    raise
                existing = self.client.get("controllerrevisions", step.name,
                                           sts["metadata"]["namespace"])
                if existing.get("data") != data:     # a hash collision: hash again
                    self.client.patch("statefulsets", sts["metadata"]["name"],
                                      {"status": {"collisionCount": int(collisions or 0) + 1}},
                                      sts["metadata"]["namespace"], subresource="status")
                    return None
        return step.name, rev.template_of({"data": data})

    def _act(self, sts: dict, key: str, step: StatefulStep) -> None:
        if not step.create and not step.delete:
            return
        self.expectations.expect(key, {p["metadata"]["name"] for p in step.create},
                                 {p["metadata"]["name"] for p, _ in step.delete})
        set_name = sts["metadata"]["name"]
        try:
            for pod, why in step.delete:
                name = pod["metadata"]["name"]
                if why in ("failed", "succeeded"):
                    reason = "RecreatingFailedPod" if why == "failed" else \
                        "RecreatingTerminatedPod"
                    self.recorder.event(sts, WARNING, reason,
                                        f"StatefulSet {key} is recreating "
                                        f"{'failed' if why == 'failed' else 'terminated'} "
                                        f"Pod {name}")
                if self._delete("pods", name, pod["metadata"]["namespace"], sts, "Pod"):
                    self.recorder.event(sts, NORMAL, "SuccessfulDelete",
                                        f"delete Pod {name} in StatefulSet {set_name} "
                                        f"successful")
            for pod in step.create:
                self._create_pod(sts, pod)
        except ApiError:
            self.expectations.forget(key)
            raise

    def _create_pod(self, sts: dict, pod: dict) -> None:
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        try:
            self.client.create("pods", pod)
        except ApiError as err:
            if err.status != 409:    # already there: a cache behind; the retry sees it
                self.recorder.event(sts, WARNING, "FailedCreate",
                                    f"create Pod {name} in StatefulSet {set_name} failed "
                                    f"error: {err.message}")
            raise
        self.recorder.event(sts, NORMAL, "SuccessfulCreate",
                            f"create Pod {name} in StatefulSet {set_name} successful")

    def _delete(self, resource: str, name: str, namespace: str, owner: dict | None = None,
                what: str = "") -> bool:
        try:
            self.client.delete(resource, name, namespace)
        except ApiError as err:
            if err.not_found:
                return False
            if owner is not None:
                self.recorder.event(owner, WARNING, "FailedDelete",
                                    f"delete {what} {name} in StatefulSet "
                                    f"{owner['metadata']['name']} failed error: {err.message}")
            raise
        return True

    def _write_status(self, sts: dict, pods: list[dict], current: str, update: str,
                      now: dt.datetime) -> None:
        status = statefulset_status(sts, pods, current, update, now)
        patch = status_patch(sts.get("status"), status)
        if patch:
            self.client.patch("statefulsets", sts["metadata"]["name"], {"status": patch},
                              sts["metadata"]["namespace"], subresource="status")
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready and status.get("availableReplicas", 0) < status.get("readyReplicas", 0):
            self.queue.add_after(key_of(sts), 1.0)
