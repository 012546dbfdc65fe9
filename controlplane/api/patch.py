"""PATCH bodies: JSON merge patch, strategic merge patch and JSON patch.

Pure functions over JSON dicts. Strategic merge follows k8s.io/apimachinery
strategicpatch for what kubectl's client-side apply sends: lists merged by
their patchMergeKey (containers by name, service ports by port, ...), and
the ``$patch``, ``$setElementOrder/``, ``$retainKeys`` and
``$deleteFromPrimitiveList/`` directives.
"""

from __future__ import annotations

from base.jsoncopy import json_copy
from controlplane.api.errors import StatusError, bad_request

# list field -> patchMergeKey (by field name; "ports" depends on context)
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "conditions": "type", "addresses": "type", "hostAliases": "ip",
    "ownerReferences": "uid", "podIPs": "ip", "hostIPs": "ip",
    "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}
MERGED_PRIMITIVE_LISTS = {"finalizers"}
CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def merge_key(path: tuple[str, ...], field: str) -> str | None:
    if field == "ports":
        if path and path[-1] in CONTAINER_LISTS:
            return "containerPort"
        if path == ("spec",):
            return "port"       # Service spec.ports
        return None
    if field == "addresses" and path != ("status",):
        return None           # only Node status.addresses merge by type
    return MERGE_KEYS.get(field)


def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    result = json_copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _order_by(items: list, order: list, key: str | None) -> list:
    if key is None:
        rank = {repr(v): i for i, v in enumerate(order)}
        ident = repr
    else:
        rank = {repr(o.get(key)) if isinstance(o, dict) else repr(o): i
                for i, o in enumerate(order)}

        def ident(item):
            return repr(item.get(key)) if isinstance(item, dict) else repr(item)
    known = sorted((i for i in items if ident(i) in rank), key=lambda i: rank[ident(i)])
    unknown = [i for i in items if ident(i) not in rank]
    return known + unknown


def _merge_list(original: list, patch: list, path: tuple[str, ...], field: str) -> list:
    key = merge_key(path, field)
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [json_copy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if field in MERGED_PRIMITIVE_LISTS:
        result = list(original)
        for item in patch:
            if item not in result:
                result.append(item)
        return result
    if key is None or not all(isinstance(p, dict) for p in patch):
        return json_copy(patch)
    result = [json_copy(o) for o in original]
    for item in patch:
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((i for i, o in enumerate(result)
                      if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, path + (field,))
    return result


def _strip_directives(obj):
    if isinstance(obj, dict):
        return {k: _strip_directives(v) for k, v in obj.items()
                if not k.startswith("$") and v is not None}
    if isinstance(obj, list):
        return [_strip_directives(v) for v in obj]
    return obj


def strategic_merge(original, patch, path: tuple[str, ...] = ()):
    """Apply a strategic merge patch to ``original`` and return the result."""
    if not isinstance(patch, dict):
        return json_copy(patch)
    if not isinstance(original, dict):
        original = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    result = json_copy(original)
    orders, deletions = {}, {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletions[key.split("/", 1)[1]] = value
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value, path + (key,))
        elif isinstance(value, list):
            current = result.get(key) if isinstance(result.get(key), list) else []
            result[key] = _merge_list(current, value, path, key)
        else:
            result[key] = value
    for field, values in deletions.items():
        if isinstance(result.get(field), list):
            result[field] = [v for v in result[field] if v not in values]
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _order_by(result[field], order, merge_key(path, field))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container_and_key(doc, parts: list[str], for_add: bool = False):
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(part)
    return cur, parts[-1]


def _get(doc, parts):
    cur = doc
    for part in parts:
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


def json_patch(doc, operations) -> dict:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = json_copy(doc)
    for op in operations:
        try:
            kind, parts = op["op"], _pointer(op["path"])
            if kind in ("move", "copy"):
                value = json_copy(_get(doc, _pointer(op["from"])))
                if kind == "move":
                    parent, key = _container_and_key(doc, _pointer(op["from"]))
                    del parent[int(key) if isinstance(parent, list) else key]
                kind, op = "add", {"value": value}
            if kind == "test":
                if _get(doc, parts) != op["value"]:
                    raise StatusError(422, "Invalid", f"testing value {op['path']} failed")
                continue
            if not parts:
                doc = json_copy(op["value"])
                continue
            parent, key = _container_and_key(doc, parts)
            if kind == "add":
                if isinstance(parent, list):
                    index = len(parent) if key == "-" else int(key)
                    if not 0 <= index <= len(parent):
                        raise IndexError(key)
                    parent.insert(index, json_copy(op["value"]))
                else:
                    parent[key] = json_copy(op["value"])
            elif kind == "remove":
                if isinstance(parent, list):
                    del parent[int(key)]
                else:
                    del parent[key]
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(key)] = json_copy(op["value"])
                else:
                    if key not in parent:
                        raise KeyError(key)
                    parent[key] = json_copy(op["value"])
            else:
                raise bad_request(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise StatusError(422, "Invalid",
                              f"the server rejected our request due to an error in our request: "
                              f"jsonpatch {op.get('op', '?')} operation does not apply: "
                              f"doc is missing path: \"{op.get('path', '')}\": {exc}") from exc
    return doc
