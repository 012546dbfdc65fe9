"""The RBAC authorizer over the API server's store, with kube-apiserver's decisions and
403 messages.

``system:masters`` is always allowed (the apiserver's privileged-group
authorizer runs first). Everyone else is allowed what the rules of the roles
bound to them allow: ClusterRoleBindings everywhere, RoleBindings in their
namespace. The index (index.py) is rebuilt only when an RBAC object changed:
each request compares the store's revision with the last one seen and, when it
moved, looks in the store's change history for an RBAC write. Per user, groups
and namespace the resolved rules are cached, so the common request costs a
few dict lookups and set tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from controlplane.api.errors import StatusError
from controlplane.api.rbac.attributes import Attributes, UserInfo
from controlplane.api.rbac.index import Grant, RbacIndex, missing_role_error
from controlplane.api.rbac.rules import Rule
from controlplane.api.store import Store

RBAC_RESOURCES = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
PRIVILEGED_GROUP = "system:masters"
CACHE_SIZE = 4096


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Resolved:
    """One user's rules in one namespace, with the grant each came from."""

    rules: tuple[tuple[Rule, Grant], ...]
    errors: tuple[str, ...]          # bindings whose role does not exist


def forbidden_message(attrs: Attributes) -> str:
    """responsewriters' forbiddenMessage."""
    user = attrs.user.name
    if not attrs.resource_request:
        return f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    where = (f'in the namespace "{attrs.namespace}"' if attrs.namespace
             else "at the cluster scope")
    return (f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group '
            f'"{attrs.api_group}" {where}')


def forbidden(attrs: Attributes, reason: str = "") -> StatusError:
    """The 403 Status kube-apiserver answers (apierrors.NewForbidden around the message)."""
    message = forbidden_message(attrs) + (f": {reason}" if reason else "")
    if not attrs.resource_request:
        return StatusError(403, "Forbidden", f"forbidden: {message}", {})
    qualified = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
    head = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details = {"name": attrs.name, "kind": attrs.resource}
    if attrs.api_group:
        details["group"] = attrs.api_group
    return StatusError(403, "Forbidden", f"{head} is forbidden: {message}",
                       {k: v for k, v in details.items() if v})


class Authorizer:
    """Thread-safe; reads RBAC objects from ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._built = -1        # the newest RBAC change the index holds
        self._index = RbacIndex([], [], [], [])
        self._cache: dict[tuple[str, tuple[str, ...], str], Resolved] = {}

    # ---- the index, kept current ------------------------------------------
    def _rbac_written(self) -> int:
        return max(self.store.last_write(r) for r in RBAC_RESOURCES)

    def index(self) -> RbacIndex:
        """The RBAC objects as of now.  Every request asks, so the usual
        answer (no RBAC change since the index was built) takes no lock:
        under a burst of pod writes the store's lock is the daemon's
        busiest, and requests queued on it only to learn nothing changed."""
        if self._rbac_written() <= self._built:
            return self._index
        with self._lock, self.store.lock:
            written = self._rbac_written()
            if written > self._built:
                lists = [self.store.list(r, read_only=True)[0] for r in RBAC_RESOURCES]
                self._index = RbacIndex(*lists)
                self._cache = {}
                self._built = written
            return self._index

    def resolve(self, user: UserInfo, namespace: str) -> Resolved:
        """Every rule that applies to ``user`` in ``namespace`` ("" for cluster scope)."""
        index = self.index()
        key = (user.name, user.groups, namespace)
        found = self._cache.get(key)
        if found is not None:
            return found
        rules: list[tuple[Rule, Grant]] = []
        errors: list[str] = []
        for grant in index.grants(user, namespace):
            granted = index.rules_of(grant)
            if granted is None:
                errors.append(missing_role_error(grant))
                continue
            rules += [(rule, grant) for rule in granted]
        resolved = Resolved(tuple(rules), tuple(errors))
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            if self._index is index:
                self._cache[key] = resolved
        return resolved

    # ---- decisions ----------------------------------------------------------
    def authorize(self, attrs: Attributes) -> Decision:
        if PRIVILEGED_GROUP in attrs.user.groups:
            return Decision(True)
        resolved = self.resolve(attrs.user, attrs.namespace if attrs.resource_request else "")
        for rule, grant in resolved.rules:
            if rule.allows(attrs):
                return Decision(True, f"RBAC: allowed by {grant.describe()}")
        reason = ""
        if resolved.errors:
            joined = resolved.errors[0] if len(resolved.errors) == 1 \
                else "[" + ", ".join(resolved.errors) + "]"
            reason = f"RBAC: {joined}"
        return Decision(False, reason)

    def check(self, attrs: Attributes) -> None:
        """Raise the 403 Status when ``attrs`` is not allowed."""
        decision = self.authorize(attrs)
        if not decision.allowed:
            raise forbidden(attrs, decision.reason)
