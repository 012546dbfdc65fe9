"""An index of RBAC bindings by subject, so a request is authorized without scanning
every binding.

Built from one snapshot of the four RBAC kinds (pure: lists of dicts in, an
immutable index out). Bindings are filed under the users and groups they name
(a ServiceAccount subject is the user ``system:serviceaccount:NS:NAME``);
ClusterRoleBindings apply in every namespace and to non-resource URLs,
RoleBindings only in their namespace. ``grants`` answers, for one user in one
namespace, every (binding, rules) pair in the order kube-apiserver's
rule resolver visits them: ClusterRoleBindings first, then RoleBindings.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controlplane.api.rbac.attributes import UserInfo
from controlplane.api.rbac.rules import Rule, compile_rules

SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Grant:
    """One binding's grant to one subject: what RBAC's describers print."""

    binding_kind: str          # ClusterRoleBinding or RoleBinding
    binding: str
    namespace: str             # the RoleBinding's namespace ("" for a ClusterRoleBinding)
    role_kind: str
    role: str
    subject: str               # e.g. User "alice", ServiceAccount "sa/ns"

    def describe(self) -> str:
        name = self.binding + (f"/{self.namespace}" if self.namespace else "")
        return f'{self.binding_kind} "{name}" of {self.role_kind} "{self.role}" to {self.subject}'


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")


def _subject_key(subject: dict, binding_namespace: str) -> tuple[str, str, str] | None:
    """(index, key, description) of one subject: ("user"|"group", name, text)."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return "user", name, f'User "{name}"'
    if kind == "Group":
        return "group", name, f'Group "{name}"'
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return "user", service_account_user(namespace, name), \
            f'ServiceAccount "{name}/{namespace}"'
    return None


class RbacIndex:
    """Immutable after construction."""

    def __init__(self, roles: list[dict], clusterroles: list[dict], rolebindings: list[dict],
                 clusterrolebindings: list[dict]) -> None:
        self.roles = {(r["metadata"].get("namespace", ""), r["metadata"]["name"]):
                      compile_rules(r.get("rules")) for r in roles}
        self.clusterroles = {r["metadata"]["name"]: compile_rules(r.get("rules"))
                             for r in clusterroles}
        self.cluster: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        self.local: dict[tuple[str, str, str], list[Grant]] = defaultdict(list)
        for binding in sorted(clusterrolebindings, key=lambda b: b["metadata"]["name"]):
            self._file(binding, "ClusterRoleBinding", "")
        for binding in sorted(rolebindings, key=lambda b: (b["metadata"].get("namespace", ""),
                                                           b["metadata"]["name"])):
            self._file(binding, "RoleBinding", binding["metadata"].get("namespace", ""))

    def _file(self, binding: dict, kind: str, namespace: str) -> None:
        ref = binding.get("roleRef") or {}
        for subject in binding.get("subjects") or []:
            key = _subject_key(subject, namespace)
            if key is None:
                continue
            index, name, text = key
            grant = Grant(kind, binding["metadata"]["name"], namespace, ref.get("kind", ""),
                          ref.get("name", ""), text)
            if namespace:
                self.local[(namespace, index, name)].append(grant)
            else:
                self.cluster[(index, name)].append(grant)

    def rules_of(self, grant: Grant) -> tuple[Rule, ...] | None:
        """The rules a grant refers to; None when its role does not exist."""
        if grant.role_kind == "ClusterRole":
            return self.clusterroles.get(grant.role)
        if grant.role_kind == "Role":
            return self.roles.get((grant.namespace, grant.role))
        return None

    def grants(self, user: UserInfo, namespace: str) -> list[Grant]:
        out = list(self.cluster.get(("user", user.name), ()))
        for group in user.groups:
            out += self.cluster.get(("group", group), ())
        if namespace:
            out += self.local.get((namespace, "user", user.name), ())
            for group in user.groups:
                out += self.local.get((namespace, "group", group), ())
        return out


def missing_role_error(grant: Grant) -> str:
    """The resolver's not-found error for a binding whose role is gone."""
    if grant.role_kind == "ClusterRole":
        return f'clusterrole.rbac.authorization.k8s.io "{grant.role}" not found'
    return f'role.rbac.authorization.k8s.io "{grant.role}" not found'
