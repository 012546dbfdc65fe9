"""What the workload controllers share: pods from templates and status writes.

`pod_from_template` builds a pod as controller.GetPodFromTemplate does
(the template's labels, annotations, finalizers and spec; a controller
ownerReference).  `status_patch` turns a freshly computed status into the
merge patch that makes the stored one equal to it, clearing the fields that
Go's `omitempty` would leave out (a zero count, an empty string), so
`kubectl get -o yaml` shows what a real cluster shows.
"""
from __future__ import annotations

from base.jsoncopy import json_copy
from controlplane.controllers.objects import owner_reference


def pod_from_template(template: dict, owner: dict, name: str = "",
                      generate_name: str = "") -> dict:
    template = json_copy(template or {})
    meta = template.get("metadata") or {}
    pod_meta = {"namespace": owner["metadata"]["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [owner_reference(owner)]}
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate_name
    for field in ("annotations", "finalizers"):
        if meta.get(field):
            pod_meta[field] = json_copy(meta[field])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": template.get("spec") or {}}


def omit_empty(status: dict, keep: tuple[str, ...] = ()) -> dict:
    """`status` without the zero values omitempty drops (fields in `keep` stay)."""
    return {k: v for k, v in status.items()
            if k in keep or v not in (0, "", None, [], {})}


def status_patch(current: dict | None, desired: dict) -> dict | None:
    """The merge patch from `current` to `desired` (None: nothing to write)."""
    current = current or {}
    patch = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch or None

