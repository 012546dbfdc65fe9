"""Authorization in the request path: what runs between authentication and the handler.

In kube-apiserver's order: impersonation (the requester must be allowed to
impersonate), then the authorizer on the request's attributes (plus the
``create`` check of a WebSocket upgrade to exec/attach/portforward), then the
node restriction for kubelets. ``admit`` returns the user the handler acts
for, or raises the 403 Status. The escalation check of RBAC writes needs the
object and runs in the handler (``escalation``); reviews use ``authorizer``.
"""

from __future__ import annotations

from controlplane.api.rbac import noderestriction
from controlplane.api.rbac.attributes import (
    Attributes,
    UserInfo,
    authenticated,
    request_attributes,
    websocket_create,
)
from controlplane.api.rbac.authorizer import Authorizer
from controlplane.api.rbac.escalation import EscalationCheck
from controlplane.api.rbac.impersonation import impersonate, wants_impersonation
from controlplane.api.store import Store

RBAC_KINDS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")


class RequestGate:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.authorizer = Authorizer(store)
        self.escalation = EscalationCheck(self.authorizer)

    def admit(self, authenticated_user, method: str, target: str, headers: dict,
              body: bytes = b"") -> tuple[UserInfo, Attributes]:
        """The user to act as and the request's attributes; 403 StatusError if refused.

        ``authenticated_user`` is what the authenticator found (name, groups, uid, extra).
        """
        user = authenticated(authenticated_user.name, tuple(authenticated_user.groups),
                             getattr(authenticated_user, "uid", ""),
                             tuple(getattr(authenticated_user, "extra", ())))
        if wants_impersonation(headers):
            user = impersonate(self.authorizer, user, headers)
        attrs = request_attributes(user, method, target)
        self.authorizer.check(attrs)
        upgrade = websocket_create(attrs, headers)
        if upgrade is not None:
            self.authorizer.check(upgrade)
        noderestriction.check(attrs, self.store, body)
        return user, attrs

    def check_write(self, user: UserInfo | None, plural: str, obj: dict) -> None:
        """The escalation check before an RBAC object is created or changed."""
        if user is None or plural not in RBAC_KINDS or not isinstance(obj, dict):
            return
        if plural in ("roles", "clusterroles"):
            self.escalation.check_role(user, plural, obj)
        else:
            self.escalation.check_binding(user, plural, obj)
