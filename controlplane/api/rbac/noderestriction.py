"""NodeRestriction's spirit for kubelets (``system:node:NAME`` in ``system:nodes``).

RBAC's system:node role lets every kubelet write nodes and pods; as
kube-apiserver's NodeRestriction admission plugin does, a kubelet may change
only its own Node object and only pods bound to it (``spec.nodeName`` its own
name). A refusal is a 403 in the admission plugin's words, e.g.
``nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"``.
"""

from __future__ import annotations

import json

from controlplane.api.errors import StatusError
from controlplane.api.rbac.attributes import Attributes
from controlplane.api.store import Store

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
WRITES = ("create", "update", "patch", "delete", "deletecollection")


def node_name(attrs: Attributes) -> str:
    """The kubelet's node name, or "" when the user is not a node."""
    user = attrs.user
    if NODES_GROUP in user.groups and user.name.startswith(NODE_PREFIX):
        return user.name[len(NODE_PREFIX):]
    return ""


def _refuse(resource: str, name: str, message: str) -> StatusError:
    head = f'{resource} "{name}"' if name else resource
    return StatusError(403, "Forbidden", f"{head} is forbidden: {message}",
                       {k: v for k, v in (("name", name), ("kind", resource)) if v})


def _body_node(body: bytes) -> str:
    try:
        obj = json.loads(body.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return ""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return spec.get("nodeName", "") if isinstance(spec, dict) else ""


def check(attrs: Attributes, store: Store, body: bytes = b"") -> None:
    """Raise 403 when a kubelet writes another node's Node or pods not bound to it."""
    node = node_name(attrs)
    if not node or not attrs.resource_request or attrs.verb not in WRITES \
            or attrs.api_group != "":
        return
    if attrs.resource == "nodes":
        if attrs.name != node:
            raise _refuse("nodes", attrs.name,
                          f'node "{node}" is not allowed to modify node "{attrs.name}"')
        return
    if attrs.resource != "pods":
        return
    if attrs.verb == "create":
        if _body_node(body) != node:
            raise _refuse("pods", attrs.name, f'node "{node}" can only create pods with '
                                              f"spec.nodeName set to itself")
        return
    pod = store.get("pods", attrs.namespace, attrs.name, read_only=True) if attrs.name else None
    bound = ((pod or {}).get("spec") or {}).get("nodeName", "")
    if pod is None or bound == node:
        return
    if attrs.verb == "delete":
        message = f'node "{node}" can only delete pods with spec.nodeName set to itself'
    elif attrs.subresource == "status":
        message = f'node "{node}" can only update pod status for pods with spec.nodeName ' \
                  f"set to itself"
    else:
        message = f'node "{node}" can only modify pods with spec.nodeName set to itself'
    raise _refuse("pods", attrs.name, message)
