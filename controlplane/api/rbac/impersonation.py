"""Impersonation headers (``kubectl --as``, ``--as-group``, ``--as-uid``), as
kube-apiserver's impersonation filter handles them.

Each thing impersonated is authorized for the requester first: verb
``impersonate`` on ``users`` (or, for ``system:serviceaccount:NS:NAME``, on
``serviceaccounts`` NAME in NS), ``groups``, ``uids``, ``userextras/KEY``. Any
refusal is the 403 Kubernetes gives (``users "bob" is forbidden: User "alice"
cannot impersonate resource "users" in API group "" at the cluster scope``).
A service account impersonated without groups gets its fixed groups; every
impersonated user gets ``system:authenticated``.
"""

from __future__ import annotations

from controlplane.api.errors import StatusError
from controlplane.api.rbac.attributes import Attributes, UserInfo
from controlplane.api.rbac.authorizer import Authorizer
from controlplane.api.rbac.index import SA_PREFIX, service_account_groups

EXTRA_PREFIX = "impersonate-extra-"


def _values(header: str | None) -> list[str]:
    return [v.strip() for v in header.split(",")] if header else []


def wants_impersonation(headers: dict) -> bool:
    return any(k.startswith("impersonate-") for k in headers)


def impersonate(authorizer: Authorizer, requester: UserInfo, headers: dict) -> UserInfo:
    """The user to act as; raises 403 when the requester may not impersonate it."""
    name = headers.get("impersonate-user", "").strip()
    groups = _values(headers.get("impersonate-group"))
    uid = headers.get("impersonate-uid", "").strip()
    extras = {k[len(EXTRA_PREFIX):]: _values(v) for k, v in headers.items()
              if k.startswith(EXTRA_PREFIX)}
    if not name:
        raise StatusError(500, "InternalError",
                          "Internal error occurred: requested impersonation of groups, uid or "
                          "extra without impersonating a user")
    checks = []
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SA_PREFIX):].split(":")
        checks.append(("serviceaccounts", "", namespace, sa))
        if not groups:
            groups = list(service_account_groups(namespace))
    else:
        checks.append(("users", "", "", name))
    checks += [("groups", "", "", group) for group in groups]
    checks += [("userextras", key, "", value) for key, values in extras.items()
               for value in values]
    if uid:
        checks.append(("uids", "", "", uid))
    for resource, sub, namespace, target in checks:
        group = "authentication.k8s.io" if resource in ("userextras", "uids") else ""
        authorizer.check(Attributes(requester, "impersonate", True, group, "v1", resource, sub,
                                    namespace, target))
    if name != "system:anonymous" and "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return UserInfo(name, tuple(groups), uid,
                    tuple((k, tuple(v)) for k, v in sorted(extras.items())))
