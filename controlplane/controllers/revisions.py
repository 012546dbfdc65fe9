"""ControllerRevisions: the pod-template history of StatefulSets and DaemonSets.

Both controllers record every pod template they have run as a
ControllerRevision owned by the set.  Its `data` is the strategic merge patch
that puts that template back (`{"spec": {"template": {..., "$patch":
"replace"}}}`, what `kubectl rollout undo` applies) and its `revision` a
number that grows with each new template; going back to an older template
renumbers that revision instead of adding one, and revisions no pod runs any
more beyond `revisionHistoryLimit` are deleted, oldest first.  The pure
functions here decide all of that; the controllers make the API calls.

Names are `<parent>-<hash>`.  A StatefulSet hashes the revision's data
(behaves as history.HashControllerRevision: FNV-1, then the collision count
in decimal) and labels the revision `controller.kubernetes.io/hash`; a
DaemonSet hashes the template as a Deployment does (naming.compute_hash) and
labels revision and pods `controller-revision-hash`.  As in naming.py, the
bytes hashed are svclab's canonical JSON, so a real cluster prints other
values of the same shape for the same template.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from base.jsoncopy import json_copy
from controlplane.controllers.naming import FNV32_OFFSET, FNV32_PRIME, safe_encode_string
from controlplane.controllers.objects import owned_by, owner_reference

REVISION_HASH_LABEL = "controller.kubernetes.io/hash"
CONTROLLER_REVISION_HASH = "controller-revision-hash"
DEFAULT_HISTORY_LIMIT = 10
NAME_PREFIX_MAX = 223          # so that `<prefix>-<hash>` stays within 253 characters


def template_patch(parent: dict) -> dict:
    """The revision data of a set: its pod template, as a replacing patch."""
    template = json_copy((parent.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: dict) -> dict:
    """The pod template a revision holds."""
    template = json_copy((((revision.get("data") or {}).get("spec") or {})
                              .get("template")) or {})
    template.pop("$patch", None)
    return template


def fnv32(data: bytes, start: int = FNV32_OFFSET) -> int:
    """FNV-1 (multiply, then xor), as Go's fnv.New32."""
    value = start
    for byte in data:
        value = (value * FNV32_PRIME) & 0xFFFFFFFF
        value ^= byte
    return value


def canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def hash_revision_data(data: dict, collision_count: int | None = None) -> str:
    value = fnv32(canonical(data))
    if collision_count is not None:
        value = fnv32(str(collision_count).encode(), value)
    return safe_encode_string(str(value))


def revision_name(prefix: str, hash_text: str) -> str:
    return f"{prefix[:NAME_PREFIX_MAX]}-{hash_text}"


def new_revision(parent: dict, data: dict, number: int, hash_text: str, hash_label: str,
                 annotations: dict | None = None) -> dict:
    """A ControllerRevision of `parent` (labels: its template's, plus the hash)."""
    meta = parent["metadata"]
    template_meta = ((parent.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    labels[hash_label] = hash_text
    revision_meta = {"name": revision_name(meta["name"], hash_text),
                     "namespace": meta["namespace"], "labels": labels,
                     "ownerReferences": [owner_reference(parent)]}
    if annotations:
        revision_meta["annotations"] = dict(annotations)
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": revision_meta,
            "data": data, "revision": number}


def revision_number(revision: dict) -> int:
    return int(revision.get("revision") or 0)


def owned_revisions(parent: dict, revisions: list[dict]) -> list[dict]:
    """The parent's revisions, oldest first (revision number, then age, then name)."""
    namespace = parent["metadata"]["namespace"]
    mine = [r for r in revisions if r["metadata"].get("namespace") == namespace
            and owned_by(r, parent) and not r["metadata"].get("deletionTimestamp")]
    return sorted(mine, key=lambda r: (revision_number(r),
                                       r["metadata"].get("creationTimestamp") or "",
                                       r["metadata"]["name"]))


@dataclass(frozen=True)
class RevisionStep:
    """What to do so that the set's template has the newest revision."""

    name: str                          # the update revision's name
    create: dict | None = None         # a revision to create
    renumber: int | None = None        # the existing revision `name` gets this number


def plan_update_revision(candidate: dict, owned: list[dict]) -> RevisionStep:
    """`candidate`: the revision the set's template would make now; `owned`: its
    revisions, oldest first.  An equal revision is reused (renumbered to be the newest
    when it is not: a rollback); otherwise the candidate is created."""
    equal = [r for r in owned if r.get("data") == candidate.get("data")]
    if not equal:
        return RevisionStep(candidate["metadata"]["name"], create=candidate)
    found = equal[-1]
    newest = max((revision_number(r) for r in owned if r is not found), default=0)
    if revision_number(found) <= newest:
        return RevisionStep(found["metadata"]["name"], renumber=newest + 1)
    return RevisionStep(found["metadata"]["name"])


def next_revision_number(owned: list[dict]) -> int:
    return max((revision_number(r) for r in owned), default=0) + 1


def history_to_delete(owned: list[dict], live: set[str], limit: int | None) -> list[str]:
    """Names of revisions to delete: those no pod runs and that are neither the current
    nor the update revision (`live` names them), beyond `limit`, oldest first."""
    limit = DEFAULT_HISTORY_LIMIT if limit is None else max(0, int(limit))
    idle = [r["metadata"]["name"] for r in owned if r["metadata"]["name"] not in live]
    return idle[:max(0, len(idle) - limit)]
