"""The escalation check on writes of Roles, ClusterRoles and their bindings.

As kube-apiserver's RBAC storage does: a user may create or change a role
only with rules they already hold (in the role's namespace), unless they may
``escalate`` on that role; a ClusterRole with an aggregationRule needs full
authority (``*`` on ``*.*``). A user may create a binding only to a role whose
rules they hold, unless they may ``bind`` that role. ``system:masters`` skips
the check. The refusal is Kubernetes' text::

    user "bob" (groups=["system:authenticated"]) is attempting to grant RBAC
    permissions not currently held:
    {APIGroups:[""], Resources:["pods"], Verbs:["delete"]}

``covers`` (rbac/validation's Covers) is pure.
"""

from __future__ import annotations

import json

from controlplane.api.errors import StatusError
from controlplane.api.rbac.attributes import Attributes, UserInfo
from controlplane.api.rbac.authorizer import PRIVILEGED_GROUP, Authorizer
from controlplane.api.rbac.rules import ALL

RBAC_GROUP = "rbac.authorization.k8s.io"
FULL_AUTHORITY = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                  {"verbs": ["*"], "nonResourceURLs": ["*"]}]


def breakdown(rule: dict) -> list[dict]:
    """One rule per group x resource x verb (x name), and per URL x verb."""
    out = []
    names = rule.get("resourceNames") or []
    for group in rule.get("apiGroups") or []:
        for resource in rule.get("resources") or []:
            for verb in rule.get("verbs") or []:
                base = {"apiGroups": [group], "resources": [resource], "verbs": [verb]}
                out += [{**base, "resourceNames": [n]} for n in names] if names else [base]
    for url in rule.get("nonResourceURLs") or []:
        out += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in rule.get("verbs") or []]
    return out


def _resources_cover(owner: list[str], wanted: list[str]) -> bool:
    if ALL in owner:
        return True
    for resource in wanted:
        if resource in owner:
            continue
        _, sep, sub = resource.partition("/")
        if sep and f"*/{sub}" in owner:
            continue
        return False
    return True


def _urls_cover(owner: list[str], wanted: list[str]) -> bool:
    for url in wanted:
        if not any(o == url or o == ALL or (o.endswith("*") and url.startswith(o.rstrip("*")))
                   for o in owner):
            return False
    return True


def rule_covers(owner: dict, sub: dict) -> bool:
    """ruleCovers: owner's rule includes everything of the (broken down) sub rule."""
    def has_all(key):
        have = owner.get(key) or []
        return ALL in have or all(v in have for v in sub.get(key) or [])
    names_ok = (not owner.get("resourceNames")) or (
        bool(sub.get("resourceNames")) and all(n in owner["resourceNames"]
                                               for n in sub["resourceNames"]))
    return (has_all("verbs") and has_all("apiGroups")
            and _resources_cover(owner.get("resources") or [], sub.get("resources") or [])
            and _urls_cover(owner.get("nonResourceURLs") or [], sub.get("nonResourceURLs") or [])
            and names_ok)


def covers(owner_rules: list[dict], rules: list[dict]) -> list[dict]:
    """The broken-down rules of ``rules`` no owner rule covers ([] = covered)."""
    return [sub for rule in rules for sub in breakdown(rule)
            if not any(rule_covers(owner, sub) for owner in owner_rules)]


def compact(rules: list[dict]) -> list[dict]:
    """CompactRules: simple rules of one group and resource (and name) merge their verbs."""
    out, simple = [], {}
    for rule in rules:
        names = rule.get("resourceNames") or []
        if (len(names) > 1 or rule.get("nonResourceURLs") or len(rule.get("apiGroups") or []) != 1
                or len(rule.get("resources") or []) != 1):
            out.append(rule)
            continue
        key = (rule["apiGroups"][0], rule["resources"][0], tuple(names))
        if key in simple:
            simple[key]["verbs"] = simple[key]["verbs"] + list(rule.get("verbs") or [])
        else:
            simple[key] = {**rule, "verbs": list(rule.get("verbs") or [])}
    return out + list(simple.values())


def _go_strings(values: list[str]) -> str:
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def compact_string(rule: dict) -> str:
    """rbacv1helpers.CompactString."""
    parts = [f"{label}:{_go_strings(rule[key])}"
             for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                                ("nonResourceURLs", "NonResourceURLs"),
                                ("resourceNames", "ResourceNames"), ("verbs", "Verbs"))
             if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


def escalation_error(user: UserInfo, missing: list[dict], errors: tuple[str, ...]) -> str:
    lines = sorted({compact_string(r) for r in compact(missing)})
    msg = (f"user {json.dumps(user.name)} (groups={_go_strings(list(user.groups))}) is "
           f"attempting to grant RBAC permissions not currently held:\n" + "\n".join(lines))
    if errors:
        msg += f"; resolution errors: [{' '.join(errors)}]"
    return msg


def _forbidden(resource: str, name: str, message: str) -> StatusError:
    return StatusError(403, "Forbidden",
                       f'{resource}.{RBAC_GROUP} "{name}" is forbidden: {message}',
                       {"name": name, "group": RBAC_GROUP, "kind": resource})


class EscalationCheck:
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def _may(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        return self.authorizer.authorize(Attributes(user, verb, True, RBAC_GROUP, "v1", resource,
                                                    "", namespace, name)).allowed

    def _confirm(self, user: UserInfo, namespace: str, rules: list[dict], resource: str,
                 name: str) -> None:
        resolved = self.authorizer.resolve(user, namespace)
        missing = covers([rule.source for rule, _ in resolved.rules], rules)
        if missing:
            raise _forbidden(resource, name, escalation_error(user, missing, resolved.errors))

    def check_role(self, user: UserInfo, resource: str, obj: dict) -> None:
        """Before a Role/ClusterRole is created or its rules change."""
        if PRIVILEGED_GROUP in user.groups:
            return
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", "") if resource == "roles" else "", \
            meta.get("name", "")
        if self._may(user, "escalate", resource, namespace, name):
            return
        self._confirm(user, namespace, [r for r in obj.get("rules") or [] if isinstance(r, dict)],
                      resource, name)
        if resource == "clusterroles" and obj.get("aggregationRule"):
            resolved = self.authorizer.resolve(user, "")
            if covers([rule.source for rule, _ in resolved.rules], FULL_AUTHORITY):
                raise _forbidden(resource, name, "must have cluster-admin privileges to use "
                                                 "the aggregationRule")

    def check_binding(self, user: UserInfo, resource: str, obj: dict) -> None:
        """Before a RoleBinding/ClusterRoleBinding is created or changed."""
        if PRIVILEGED_GROUP in user.groups:
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "") if resource == "rolebindings" else ""
        name = meta.get("name", "")
        ref = obj.get("roleRef") or {}
        role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        # `bind` is asked in the binding's namespace (so a RoleBinding may delegate binding
        # a ClusterRole in one namespace), cluster-wide for a ClusterRoleBinding.
        if self._may(user, "bind", role_resource, namespace, ref.get("name", "")):
            return
        index = self.authorizer.index()
        if role_resource == "clusterroles":
            compiled = index.clusterroles.get(ref.get("name", ""))
            missing_text = f'clusterrole.rbac.authorization.k8s.io "{ref.get("name", "")}"'
        else:
            compiled = index.roles.get((namespace, ref.get("name", "")))
            missing_text = f'role.rbac.authorization.k8s.io "{ref.get("name", "")}"'
        if compiled is None:
            raise _forbidden(resource, name, f"{missing_text} not found")
        self._confirm(user, namespace, [rule.source for rule in compiled], resource, name)
