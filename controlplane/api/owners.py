"""Owner references, as the API server's delete options need them.

``kubectl delete --cascade=orphan`` sends ``propagationPolicy: Orphan``: the
owner's dependents must outlive it, so before the owner is removed each
dependent loses its ownerReference to that owner (upstream the garbage
collector does this while the owner carries the ``orphan`` finalizer; svclab
has no finalizers, so the API server does it in the same write as the
delete). Pure functions over object dicts.
"""

from __future__ import annotations

from base.jsoncopy import json_copy

PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")


def references(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def orphaned(dependents: list[dict], owner: dict) -> list[dict]:
    """Copies of the dependents that refer to ``owner``, without that reference
    (ownerReferences dropped when none is left)."""
    uid = owner["metadata"].get("uid")
    changed = []
    for obj in dependents:
        if not uid or not references(obj, uid):
            continue
        obj = json_copy(obj)
        meta = obj["metadata"]
        meta["ownerReferences"] = [r for r in meta["ownerReferences"] if r.get("uid") != uid]
        if not meta["ownerReferences"]:
            del meta["ownerReferences"]
        changed.append(obj)
    return changed


def propagation_policy(query: dict, options) -> str:
    """DeleteOptions.propagationPolicy from the query or the body (a dict); ''
    when unset. Raises ValueError for an unknown policy."""
    value = query.get("propagationPolicy")
    if value is None and isinstance(options, dict):
        value = options.get("propagationPolicy")
        if value is None and options.get("orphanDependents") is True:
            value = "Orphan"
    if value in (None, ""):
        return ""
    if value not in PROPAGATION_POLICIES:
        raise ValueError(f"propagationPolicy: Unsupported value: {value!r}: supported values: "
                         + ", ".join(f'"{p}"' for p in PROPAGATION_POLICIES))
    return value
