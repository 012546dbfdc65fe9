"""The DaemonSet controller's decisions: one pod on every node that should run one.

Pure functions over plain API objects, as upstream's daemon_controller.go
and daemon/util decide (the controller, daemonset_controller.py, acts):

- A node should run the daemon pod when it matches the template's nodeName,
  nodeSelector and required node affinity and every NoSchedule/NoExecute
  taint is tolerated — with the tolerations every daemon pod gets
  (not-ready and unreachable NoExecute; disk-, memory-, pid-pressure and
  unschedulable NoSchedule; network-unavailable for hostNetwork pods).  So
  the control plane's `node-role.kubernetes.io/control-plane:NoSchedule`
  keeps daemon pods off it unless the template tolerates it.  A pod already
  there keeps running while no NoExecute taint is untolerated.
- Daemon pods are created for their node with a required node affinity
  `matchFields metadata.name In [node]` (the scheduler binds them), labelled
  `controller-revision-hash` and `pod-template-generation`.
- A failed daemon pod is deleted (and made again); surplus pods on a node
  go, the oldest stays; pods on nodes that must not run one go.
- Status: desiredNumberScheduled, currentNumberScheduled, numberMisscheduled,
  numberReady, updatedNumberScheduled, numberAvailable, numberUnavailable.
Rolling updates are in daemon_update.py.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from base.jsoncopy import json_copy
from controlplane.controllers.objects import (
    int_or_percent,
    is_available,
    is_ready,
    is_terminal,
    is_terminating,
    owned_by,
    selector_matches,
)
from controlplane.controllers.podtemplates import omit_empty, pod_from_template
from controlplane.controllers.revisions import CONTROLLER_REVISION_HASH
from controlplane.controllers.scheduler import node_selected, tolerates

TEMPLATE_GENERATION = "pod-template-generation"
GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
DEFAULT_TOLERATIONS = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
HOST_NETWORK_TOLERATION = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def template_generation(ds: dict) -> str | None:
    """The template generation pods are labelled with (the API's deprecated annotation,
    or the set's generation when the annotation is missing)."""
    annotations = ds["metadata"].get("annotations") or {}
    if GENERATION_ANNOTATION in annotations:
        return str(annotations[GENERATION_ANNOTATION])
    generation = ds["metadata"].get("generation")
    return str(generation) if generation is not None else None


def with_daemon_tolerations(spec: dict) -> dict:
    """util.AddOrUpdateDaemonPodTolerations: the pod spec with the default tolerations."""
    spec = json_copy(spec or {})
    tolerations = spec.setdefault("tolerations", [])
    wanted = list(DEFAULT_TOLERATIONS)
    if spec.get("hostNetwork"):
        wanted.append(HOST_NETWORK_TOLERATION)
    for key, effect in wanted:
        tolerations[:] = [t for t in tolerations
                          if not (t.get("key") == key and t.get("effect") == effect)]
        tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return spec


def node_affinity_for(affinity: dict | None, node: str) -> dict:
    """util.ReplaceDaemonSetPodNodeNameNodeAffinity: required terms become the one
    `metadata.name In [node]` field term; preferred terms stay."""
    affinity = json_copy(affinity or {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node]}]}]
    return affinity


def daemon_template(ds: dict, revision_hash: str) -> dict:
    """util.CreatePodTemplate: the template with tolerations, hash and generation labels."""
    template = json_copy((ds.get("spec") or {}).get("template") or {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    generation = template_generation(ds)
    if generation is not None:
        labels[TEMPLATE_GENERATION] = generation
    labels[CONTROLLER_REVISION_HASH] = revision_hash
    template["spec"] = with_daemon_tolerations(template.get("spec") or {})
    return template


def daemon_pod(ds: dict, node: str, revision_hash: str, name: str) -> dict:
    pod = pod_from_template(daemon_template(ds, revision_hash), ds, name=name)
    pod["spec"]["affinity"] = node_affinity_for(pod["spec"].get("affinity"), node)
    return pod


def node_should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should run a daemon pod, may keep one it has)."""
    spec = with_daemon_tolerations(((ds.get("spec") or {}).get("template") or {}).get("spec"))
    name = node["metadata"]["name"]
    if spec.get("nodeName") not in (None, "", name):
        return False, False
    if not node_selected({"spec": spec}, node):
        return False, False
    tolerations = spec.get("tolerations") or []

    def untolerated(effects: tuple[str, ...]) -> bool:
        return any(t.get("effect") in effects and not any(tolerates(x, t) for x in tolerations)
                   for t in (node.get("spec") or {}).get("taints") or [])
    if untolerated(("NoSchedule", "NoExecute")):
        return False, not untolerated(("NoExecute",))
    return True, True


def target_node(pod: dict) -> str:
    """util.GetTargetNodeName: where the pod runs, or is meant to (its affinity)."""
    if (pod.get("spec") or {}).get("nodeName"):
        return pod["spec"]["nodeName"]
    required = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In" \
                    and len(field.get("values") or []) == 1:
                return field["values"][0]
    return ""


def creation_order(pod: dict) -> tuple:
    """podByCreationTimestampAndPhase: scheduled pods first, then oldest, then name."""
    return (0 if (pod.get("spec") or {}).get("nodeName") else 1,
            pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"])


def daemon_pods_by_node(ds: dict, pods: list[dict]) -> dict[str, list[dict]]:
    """The set's pods per node; terminal pods being deleted are left out."""
    namespace = ds["metadata"]["namespace"]
    selector = (ds.get("spec") or {}).get("selector")
    found: dict[str, list[dict]] = {}
    for pod in pods:
        if pod["metadata"].get("namespace") != namespace or not owned_by(pod, ds) \
                or not selector_matches(selector, pod["metadata"].get("labels")):
            continue
        if is_terminal(pod) and is_terminating(pod):
            continue
        node = target_node(pod)
        if node:
            found.setdefault(node, []).append(pod)
    return {node: sorted(mine, key=creation_order) for node, mine in found.items()}


def is_updated(pod: dict, revision_hash: str, generation: str | None) -> bool:
    """util.IsPodUpdated: the template generation or the revision hash matches."""
    labels = pod["metadata"].get("labels") or {}
    return (generation is not None and labels.get(TEMPLATE_GENERATION) == generation) or \
        labels.get(CONTROLLER_REVISION_HASH) == revision_hash


def update_strategy(ds: dict) -> dict:
    return (ds.get("spec") or {}).get("updateStrategy") or {"type": "RollingUpdate"}


def surge_and_unavailable(ds: dict, desired: int) -> tuple[int, int]:
    """util.SurgeCount / UnavailableCount of `desired` nodes (both 0 with OnDelete); a
    rolling update allowing neither may still take one node down at a time."""
    strategy = update_strategy(ds)
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = int_or_percent(rolling.get("maxSurge"), desired, True)
    unavailable = int_or_percent(rolling.get("maxUnavailable", 1), desired, True)
    if desired > 0 and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def allows_surge(ds: dict) -> bool:
    return surge_and_unavailable(ds, 1)[0] > 0


@dataclass(frozen=True)
class DaemonStep:
    create: tuple[str, ...] = ()                   # nodes to create a pod for
    delete: tuple[tuple[dict, str], ...] = ()      # (pod, why): failed, surplus, misplaced,
    #                                                succeeded, update


def plan_nodes(ds: dict, nodes: list[dict], pods: list[dict], revision_hash: str,
               backing_off: frozenset[str] = frozenset()) -> DaemonStep:
    """manage(): which nodes need a daemon pod and which pods must go.  A failed pod on
    a node in `backing_off` is left for later (upstream's failed-pods back-off)."""
    by_node = daemon_pods_by_node(ds, pods)
    surge = allows_surge(ds)
    creates: list[str] = []
    deletes: list[tuple[dict, str]] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        should_run, keep = node_should_run(ds, node)
        mine = by_node.pop(name, [])
        if should_run and not mine:
            creates.append(name)
        elif keep:
            running = []
            for pod in mine:
                phase = (pod.get("status") or {}).get("phase")
                if is_terminating(pod):
                    continue
                if phase == "Failed":
                    if name not in backing_off:
                        deletes.append((pod, "failed"))
                elif phase == "Succeeded":
                    deletes.append((pod, "succeeded"))
                else:
                    running.append(pod)
            deletes += [(p, "surplus") for p in _surplus(ds, running, revision_hash, surge)]
        else:
            deletes += [(p, "misplaced") for p in mine if not is_terminating(p)]
    return DaemonStep(tuple(creates), tuple(deletes))


def _surplus(ds: dict, running: list[dict], revision_hash: str, surge: bool) -> list[dict]:
    """Pods beyond one per node (beyond one old and one new while surging)."""
    if not surge:
        return running[1:]
    new = [p for p in running if (p["metadata"].get("labels") or {}).get(
        CONTROLLER_REVISION_HASH) == revision_hash]
    old = [p for p in running if p not in new]
    extra = new[1:] + old[1:]
    if new and old:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        now = dt.datetime.now(dt.timezone.utc)
        if not is_ready(old[0]) or is_available(new[0], min_ready, now):
            extra.append(old[0])
    return extra


def daemonset_status(ds: dict, nodes: list[dict], pods: list[dict], revision_hash: str,
                     now: dt.datetime) -> dict:
    by_node = daemon_pods_by_node(ds, pods)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    generation = template_generation(ds)
    counts = dict.fromkeys(("desiredNumberScheduled", "currentNumberScheduled",
                            "numberMisscheduled", "numberReady", "updatedNumberScheduled",
                            "numberAvailable"), 0)
    for node in nodes:
        should_run, _ = node_should_run(ds, node)
        mine = by_node.get(node["metadata"]["name"]) or []
        if not should_run:
            counts["numberMisscheduled"] += 1 if mine else 0
            continue
        counts["desiredNumberScheduled"] += 1
        if not mine:
            continue
        counts["currentNumberScheduled"] += 1
        oldest = mine[0]
        if is_ready(oldest):
            counts["numberReady"] += 1
            counts["numberAvailable"] += 1 if is_available(oldest, min_ready, now) else 0
        counts["updatedNumberScheduled"] += 1 if is_updated(oldest, revision_hash,
                                                            generation) else 0
    status = {**counts,
              "numberUnavailable": counts["desiredNumberScheduled"] - counts["numberAvailable"],
              "observedGeneration": ds["metadata"].get("generation", 1)}
    collisions = (ds.get("status") or {}).get("collisionCount")
    if collisions is not None:
        status["collisionCount"] = collisions
    return omit_empty(status, keep=("desiredNumberScheduled", "currentNumberScheduled",
                                    "numberMisscheduled", "numberReady"))
