"""The Deployment controller: one ReplicaSet per pod-template revision, rolled.

A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the
one whose template equals the Deployment's (ignoring the hash label) is
"new", the rest are "old".  RollingUpdate scales new up within maxSurge and
old down while at least `replicas - maxUnavailable` pods stay available;
Recreate scales old to zero before new appears.  `compute_rollout` is pure:
it returns the step to take; the controller applies it, and the next event
brings the next step.  Status follows what `kubectl rollout status` reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from base.jsoncopy import json_copy
from base.kube.client import ApiError
from controlplane.controllers.base import Controller
from controlplane.controllers.naming import POD_TEMPLATE_HASH, compute_hash, template_for_hash
from controlplane.controllers.objects import (
    controller_ref,
    int_or_percent,
    is_terminating,
    key_of,
    now_rfc3339,
    owned_by,
    owner_reference,
    split_key,
)
from controlplane.events import NORMAL

REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


@dataclass(frozen=True)
class RolloutStep:
    create: dict | None = None                          # a ReplicaSet to create
    scale: tuple[tuple[str, int], ...] = ()             # (replicaset name, replicas)
    annotate: tuple[tuple[str, dict], ...] = ()         # (replicaset name, annotations)
    delete: tuple[str, ...] = ()                        # old replicasets beyond history
    collision: bool = False                             # bump status.collisionCount
    new_name: str = ""


def surge_and_unavailable(deploy: dict) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts."""
    spec = deploy["spec"]
    desired = int(spec.get("replicas", 1))
    if (spec.get("strategy") or {}).get("type") == "Recreate":
        return 0, desired
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = int_or_percent(ru.get("maxSurge", "25%"), desired, True)
    unavailable = int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def revision_of(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def same_template(rs: dict, deploy: dict) -> bool:
    return template_for_hash(rs["spec"].get("template")) == template_for_hash(
        deploy["spec"].get("template"))


def owned_replicasets(deploy: dict, replicasets: list[dict]) -> list[dict]:
    namespace = deploy["metadata"]["namespace"]
    return [rs for rs in replicasets if rs["metadata"].get("namespace") == namespace
            and owned_by(rs, deploy) and not is_terminating(rs)]


def split_new_old(deploy: dict, mine: list[dict]) -> tuple[dict | None, list[dict]]:
    new = next((rs for rs in sorted(mine, key=lambda r: r["metadata"]["creationTimestamp"])
                if same_template(rs, deploy)), None)
    old = [rs for rs in mine if rs is not new]
    return new, sorted(old, key=lambda r: (r["metadata"].get("creationTimestamp", ""),
                                           r["metadata"]["name"]))


def replicas_of(rs: dict) -> int:
    return int(rs["spec"].get("replicas", 0))


def new_replicaset(deploy: dict, template_hash: str, replicas: int, revision: int) -> dict:
    meta = deploy["metadata"]
    template = json_copy(deploy["spec"]["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = template_hash
    selector = json_copy(deploy["spec"]["selector"])
    selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = template_hash
    surge, _ = surge_and_unavailable(deploy)
    desired = int(deploy["spec"].get("replicas", 1))
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != REVISION and not k.startswith("kubectl.kubernetes.io/last-applied")}
    annotations.update({DESIRED: str(desired), MAX_REPLICAS: str(desired + surge),
                        REVISION: str(revision)})
    spec = {"replicas": replicas, "selector": selector, "template": template}
    if deploy["spec"].get("minReadySeconds"):
        spec["minReadySeconds"] = deploy["spec"]["minReadySeconds"]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{template_hash}", "namespace": meta["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": annotations,
                         "ownerReferences": [owner_reference(deploy)]},
            "spec": spec}


def compute_rollout(deploy: dict, replicasets: list[dict]) -> RolloutStep:
    """The next step of a Deployment's rollout, from the cached ReplicaSets."""
    spec = deploy["spec"]
    desired = int(spec.get("replicas", 1))
    mine = owned_replicasets(deploy, replicasets)
    new, old = split_new_old(deploy, mine)
    surge, unavailable = surge_and_unavailable(deploy)
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
    all_replicas = sum(replicas_of(rs) for rs in mine)
    old_replicas = sum(replicas_of(rs) for rs in old)
    history = _history_to_delete(deploy, old)
    if spec.get("paused"):
        return RolloutStep(new_name=new["metadata"]["name"] if new else "")
    if new is None:
        template_hash = compute_hash(spec["template"], (deploy.get("status") or {}).get(
            "collisionCount"))
        name = f"{deploy['metadata']['name']}-{template_hash}"
        if any(rs["metadata"]["name"] == name for rs in replicasets
               if rs["metadata"].get("namespace") == deploy["metadata"]["namespace"]):
            return RolloutStep(collision=True)
        if recreate:
            if old_replicas or any((rs.get("status") or {}).get("replicas") for rs in old):
                return RolloutStep(scale=tuple((rs["metadata"]["name"], 0) for rs in old
                                               if replicas_of(rs)), new_name=name)
            replicas = desired
        elif old_replicas == 0:
            replicas = desired
        else:
            replicas = max(0, min(desired + surge - all_replicas, desired))
        revision = max([revision_of(rs) for rs in mine] + [0]) + 1
        return RolloutStep(create=new_replicaset(deploy, template_hash, replicas, revision),
                           new_name=name, delete=history)
    name = new["metadata"]["name"]
    annotate = _new_annotations(deploy, new, mine, surge)
    if recreate:
        if old_replicas:
            return RolloutStep(scale=tuple((rs["metadata"]["name"], 0) for rs in old
                                           if replicas_of(rs)), new_name=name, annotate=annotate)
        if any((rs.get("status") or {}).get("replicas") for rs in old):
            return RolloutStep(new_name=name, annotate=annotate)   # old pods still running
        scale = ((name, desired),) if replicas_of(new) != desired else ()
        return RolloutStep(scale=scale, new_name=name, annotate=annotate, delete=history)
    # RollingUpdate: first the new ReplicaSet ...
    current = replicas_of(new)
    if current > desired:
        return RolloutStep(scale=((name, desired),), new_name=name, annotate=annotate)
    if current < desired:
        room = desired + surge - all_replicas
        if room > 0:
            return RolloutStep(scale=((name, current + min(room, desired - current)),),
                               new_name=name, annotate=annotate)
    # ... then the old ones, keeping desired - maxUnavailable pods available.
    scale = _scale_down_old(new, old, all_replicas, desired - unavailable)
    return RolloutStep(scale=scale, new_name=name, annotate=annotate,
                       delete=history if not scale else ())


def _scale_down_old(new: dict, old: list[dict], all_replicas: int,
                    min_available: int) -> tuple[tuple[str, int], ...]:
    if not sum(replicas_of(rs) for rs in old):
        return ()
    new_unavailable = replicas_of(new) - int((new.get("status") or {}).get("availableReplicas", 0))
    budget = all_replicas - min_available - new_unavailable
    if budget <= 0:
        return ()
    target = {rs["metadata"]["name"]: replicas_of(rs) for rs in old}
    for rs in old:   # unhealthy old replicas go first, they cost no availability
        name = rs["metadata"]["name"]
        unhealthy = target[name] - int((rs.get("status") or {}).get("availableReplicas", 0))
        cut = min(budget, max(0, unhealthy))
        target[name] -= cut
        budget -= cut
    available = sum(int((rs.get("status") or {}).get("availableReplicas", 0))
                    for rs in old + [new])
    remaining = min(budget, available - min_available)
    for rs in old:
        name = rs["metadata"]["name"]
        if remaining <= 0:
            break
        cut = min(target[name], remaining)
        target[name] -= cut
        remaining -= cut
    return tuple((rs["metadata"]["name"], target[rs["metadata"]["name"]]) for rs in old
                 if target[rs["metadata"]["name"]] != replicas_of(rs))


def _new_annotations(deploy: dict, new: dict, mine: list[dict], surge: int) -> tuple:
    desired = int(deploy["spec"].get("replicas", 1))
    annotations = new["metadata"].get("annotations") or {}
    want = {DESIRED: str(desired), MAX_REPLICAS: str(desired + surge)}
    top = max([revision_of(rs) for rs in mine if rs is not new] + [0])
    if revision_of(new) <= top:   # a rollback: the old template becomes the newest revision
        want[REVISION] = str(top + 1)
    changed = {k: v for k, v in want.items() if annotations.get(k) != v}
    return ((new["metadata"]["name"], changed),) if changed else ()


def _history_to_delete(deploy: dict, old: list[dict]) -> tuple[str, ...]:
    limit = int(deploy["spec"].get("revisionHistoryLimit", 10))
    idle = [rs for rs in old if replicas_of(rs) == 0
            and not (rs.get("status") or {}).get("replicas")]
    idle.sort(key=revision_of)
    return tuple(rs["metadata"]["name"] for rs in idle[:max(0, len(idle) - limit)])


def deployment_status(deploy: dict, replicasets: list[dict], new_name: str,
                      created: bool = False) -> dict:
    mine = owned_replicasets(deploy, replicasets)
    desired = int(deploy["spec"].get("replicas", 1))
    _, unavailable = surge_and_unavailable(deploy)

    def total(field_name: str, sets: list[dict]) -> int:
        return sum(int((rs.get("status") or {}).get(field_name, 0)) for rs in sets)
    new = [rs for rs in mine if rs["metadata"]["name"] == new_name]
    status = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": total("replicas", mine),
        "updatedReplicas": total("replicas", new),
        "readyReplicas": total("readyReplicas", mine),
        "availableReplicas": total("availableReplicas", mine),
    }
    spec_total = sum(replicas_of(rs) for rs in mine)
    status["unavailableReplicas"] = max(0, spec_total - status["availableReplicas"])
    collisions = (deploy.get("status") or {}).get("collisionCount")
    if collisions is not None:
        status["collisionCount"] = collisions
    complete = (status["updatedReplicas"] == desired and status["replicas"] == desired
                and status["availableReplicas"] == desired and bool(new))
    if status["availableReplicas"] >= desired - unavailable:
        available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        available = ("False", "MinimumReplicasUnavailable",
                     "Deployment does not have minimum availability.")
    if complete:
        progressing = ("True", "NewReplicaSetAvailable",
                       f'ReplicaSet "{new_name}" has successfully progressed.')
    elif created:
        progressing = ("True", "NewReplicaSetCreated", f'Created new replica set "{new_name}"')
    else:
        progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_name}" is progressing.')
    old = {c["type"]: c for c in (deploy.get("status") or {}).get("conditions") or []}
    now = now_rfc3339()
    conditions = []
    for kind, (state, reason, message) in (("Available", available),
                                            ("Progressing", progressing)):
        before = old.get(kind) or {}
        same = before.get("status") == state and before.get("reason") == reason \
            and before.get("message") == message
        conditions.append({"type": kind, "status": state, "reason": reason, "message": message,
                           "lastUpdateTime": before.get("lastUpdateTime", now) if same else now,
                           "lastTransitionTime": before.get("lastTransitionTime", now)
                           if before.get("status") == state else now})
    status["conditions"] = conditions
    return status


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.watch("deployments", lambda kind, obj, old: self.queue.add(key_of(obj)))
        self.watch("replicasets", self._on_replicaset)

    def _on_replicaset(self, kind: str, rs: dict, old: dict | None) -> None:
        ref = controller_ref(rs)
        if ref is not None and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    def reconcile(self, key: str) -> None:
        deploy = self.get_cached("deployments", key)
        if deploy is None or is_terminating(deploy):
            return
        namespace, name = split_key(key)
        replicasets = self.cached("replicasets")
        step = compute_rollout(deploy, replicasets)
        if step.collision:
            count = int((deploy.get("status") or {}).get("collisionCount", 0)) + 1
            self.client.patch("deployments", name, {"status": {"collisionCount": count}},
                              namespace, subresource="status")
            return
        created = None
        if step.create is not None:
            try:
                created = self.client.create("replicasets", step.create)
            except ApiError as err:
                if err.status != 409:
                    raise
            if created is not None and replicas_of(created) > 0:
                self.recorder.event(deploy, NORMAL, "ScalingReplicaSet",
                                    f"Scaled up replica set {created['metadata']['name']} "
                                    f"from 0 to {replicas_of(created)}")
            revision = step.create["metadata"]["annotations"][REVISION]
            self._set_revision(deploy, revision)
        for rs_name, rs_annotations in step.annotate:
            self.client.patch("replicasets", rs_name,
                              {"metadata": {"annotations": rs_annotations}}, namespace)
            if REVISION in rs_annotations:
                self._set_revision(deploy, rs_annotations[REVISION])
        current = {rs["metadata"]["name"]: replicas_of(rs) for rs in replicasets
                   if rs["metadata"].get("namespace") == namespace}
        for rs_name, replicas in step.scale:
            self.client.patch("replicasets", rs_name, {"spec": {"replicas": replicas}}, namespace)
            before = current.get(rs_name, 0)
            if before != replicas:
                self.recorder.event(deploy, NORMAL, "ScalingReplicaSet",
                                    f"Scaled {'up' if replicas > before else 'down'} replica set "
                                    f"{rs_name} from {before} to {replicas}")
        for rs_name in step.delete:
            try:
                self.client.delete("replicasets", rs_name, namespace)
            except ApiError as err:
                if not err.not_found:
                    raise
        if created is not None:
            self._write_status(deploy, replicasets + [created], step.new_name, created=True)
        elif step.new_name:
            self._write_status(deploy, replicasets, step.new_name)

    def _set_revision(self, deploy: dict, revision: str) -> None:
        if (deploy["metadata"].get("annotations") or {}).get(REVISION) != revision:
            self.client.patch("deployments", deploy["metadata"]["name"],
                              {"metadata": {"annotations": {REVISION: revision}}},
                              deploy["metadata"]["namespace"])

    def _write_status(self, deploy: dict, replicasets: list[dict], new_name: str,
                      created: bool = False) -> None:
        status = deployment_status(deploy, replicasets, new_name, created)
        current = deploy.get("status") or {}
        if _comparable(current) != _comparable(status):
            self.client.patch("deployments", deploy["metadata"]["name"], {"status": status},
                              deploy["metadata"]["namespace"], subresource="status")


def _comparable(status: dict) -> dict:
    out = {k: v for k, v in status.items() if k != "conditions"}
    out["conditions"] = [(c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                         for c in status.get("conditions") or []]
    return out
