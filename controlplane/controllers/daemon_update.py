"""A DaemonSet's rolling update, node by node: pure, as upstream's daemon/update.go.

With maxSurge 0 (the default), old pods are deleted while at most
maxUnavailable nodes (default 1) are without an available up-to-date pod; the
next sync creates the new pod on each freed node.  An old pod that is not
available anyway may always be replaced.  With maxSurge, a new pod is
created next to the old one on up to maxSurge nodes at a time, and the old
pod is deleted once the new one is available.  A node with more than one
old or new pod is left to the manage loop and counted as unavailable.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from controlplane.controllers.daemonset import (
    daemon_pods_by_node,
    is_updated,
    node_should_run,
    surge_and_unavailable,
    template_generation,
)
from controlplane.controllers.objects import is_available, is_terminating


@dataclass(frozen=True)
class UpdateStep:
    delete: tuple[dict, ...] = ()      # old pods to delete
    create: tuple[str, ...] = ()       # nodes to surge a new pod onto


def updated_and_old(ds: dict, pods: list[dict], revision_hash: str
                    ) -> tuple[dict | None, dict | None, bool]:
    """findUpdatedPodsOnNode: (new pod, old pod, ok); not ok with two of either."""
    generation = template_generation(ds)
    new = old = None
    for pod in pods:
        if is_terminating(pod):
            continue
        if is_updated(pod, revision_hash, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def plan_rolling_update(ds: dict, nodes: list[dict], pods: list[dict], revision_hash: str,
                        now: dt.datetime) -> UpdateStep:
    by_node = daemon_pods_by_node(ds, pods)
    nodes_by_name = {n["metadata"]["name"]: n for n in nodes}
    desired = sum(1 for n in nodes if node_should_run(ds, n)[0])
    surge, unavailable = surge_and_unavailable(ds, desired)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)

    def available(pod: dict) -> bool:
        return is_available(pod, min_ready, now)
    if surge == 0:
        count, replace, candidates = 0, [], []
        for name in sorted(by_node):
            new, old, ok = updated_and_old(ds, by_node[name], revision_hash)
            if not ok or (new is None) == (old is None):
                count += 1
            elif new is not None:
                count += 0 if available(new) else 1
            elif not available(old):
                replace.append(old)
            elif count < unavailable:
                candidates.append(old)
        room = max(0, min(unavailable - count, len(candidates)))
        return UpdateStep(delete=tuple(replace + candidates[:room]))
    deletes, allowed, candidates, surging = [], [], [], 0
    for name in sorted(by_node):
        new, old, ok = updated_and_old(ds, by_node[name], revision_hash)
        if not ok:
            surging += 1
        elif old is None:
            continue
        elif new is None:
            node = nodes_by_name.get(name)
            should_run = node is not None and node_should_run(ds, node)[0]
            if not available(old):
                (allowed.append(name) if should_run else deletes.append(old))
            elif should_run and surging < surge:
                candidates.append(name)
        elif not available(new):
            surging += 1
        else:
            deletes.append(old)
    room = max(0, min(surge - surging, len(candidates)))
    return UpdateStep(delete=tuple(deletes), create=tuple(allowed + candidates[:room]))
