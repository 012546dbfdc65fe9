"""OpenAPI v3 schemas of the RBAC kinds and ServiceAccount, so `kubectl explain` can walk
their fields (``kubectl explain role.rules``, ``kubectl explain clusterrolebinding.subjects``).

Like openapi_netpol.py: descriptions are short and our own; structure, types and
list semantics follow rbac.authorization.k8s.io/v1 and core/v1.
"""

from __future__ import annotations

from controlplane.api.openapi_netpol import META, _array, _item, _object, _ref, _string
from controlplane.api.openapi_netpol import SCHEMAS as NETPOL_SCHEMAS

RBAC = "io.k8s.api.rbac.v1."
CORE = "io.k8s.api.core.v1."
RBAC_GROUP = "rbac.authorization.k8s.io"


def _strings(description: str) -> dict:
    return _array(_string("", default=""), description)


def _gvk(group: str, kind: str) -> list[dict]:
    return [{"group": group, "version": "v1", "kind": kind}]


def _top(description: str, group: str, kind: str, properties: dict,
         required: tuple[str, ...] = ()) -> dict:
    base = {"apiVersion": _string("The versioned schema of this object."),
            "kind": _string("The REST resource this object represents."),
            "metadata": _ref(META + "ObjectMeta", "Standard object's metadata.")}
    return {**_object(description, {**base, **properties}, required),
            "x-kubernetes-group-version-kind": _gvk(group, kind)}


RULES = _array(_item(RBAC + "PolicyRule"), "The rules of this role.")
SUBJECTS = _array(_item(RBAC + "Subject"), "Who the role is granted to.")
ROLE_REF = _ref(RBAC + "RoleRef", "The Role or ClusterRole granted; it cannot change.")

RBAC_SCHEMAS = {
    RBAC + "Role": _top("A namespaced set of rules, granted by RoleBindings in its namespace.",
                        RBAC_GROUP, "Role", {"rules": RULES}),
    RBAC + "ClusterRole": _top(
        "A cluster-wide set of rules, granted by ClusterRoleBindings everywhere or by "
        "RoleBindings in one namespace.", RBAC_GROUP, "ClusterRole",
        {"rules": RULES,
         "aggregationRule": _ref(RBAC + "AggregationRule",
                                 "When set, the controller fills rules from the ClusterRoles "
                                 "the selectors match.")}),
    RBAC + "RoleBinding": _top("Grants a Role or ClusterRole to subjects in one namespace.",
                               RBAC_GROUP, "RoleBinding",
                               {"roleRef": ROLE_REF, "subjects": SUBJECTS}, ("roleRef",)),
    RBAC + "ClusterRoleBinding": _top("Grants a ClusterRole to subjects in every namespace.",
                                      RBAC_GROUP, "ClusterRoleBinding",
                                      {"roleRef": ROLE_REF, "subjects": SUBJECTS},
                                      ("roleRef",)),
    RBAC + "PolicyRule": _object("Verbs allowed on resources (or on non-resource URLs).", {
        "verbs": _strings("get, list, watch, create, update, patch, delete, deletecollection, "
                          "... or * for every verb."),
        "apiGroups": _strings("API groups of the resources; \"\" is the core group, * all."),
        "resources": _strings("Resources (pods, pods/log, */scale) or * for all."),
        "resourceNames": _strings("When set, only the objects of these names."),
        "nonResourceURLs": _strings("Paths such as /healthz or /api/*; ClusterRoles only."),
    }, ("verbs",)),
    RBAC + "Subject": _object("A User, Group or ServiceAccount.", {
        "kind": _string("User, Group or ServiceAccount.", default=""),
        "apiGroup": _string("\"\" for ServiceAccount, rbac.authorization.k8s.io otherwise."),
        "name": _string("The subject's name.", default=""),
        "namespace": _string("A ServiceAccount's namespace."),
    }, ("kind", "name")),
    RBAC + "RoleRef": {**_object("The role a binding grants.", {
        "apiGroup": _string("rbac.authorization.k8s.io", default=""),
        "kind": _string("Role or ClusterRole (ClusterRole only in a ClusterRoleBinding).",
                        default=""),
        "name": _string("The role's name.", default=""),
    }, ("apiGroup", "kind", "name")), "x-kubernetes-map-type": "atomic"},
    RBAC + "AggregationRule": _object("Which ClusterRoles' rules are aggregated.", {
        "clusterRoleSelectors": _array(_item(META + "LabelSelector"),
                                       "ClusterRoles matching any selector contribute their "
                                       "rules."),
    }),
}

CORE_SCHEMAS = {
    CORE + "ServiceAccount": _top(
        "An identity for processes in pods: system:serviceaccount:NAMESPACE:NAME.", "",
        "ServiceAccount", {
            "secrets": _array({"type": "object"}, "Secrets pods of this account may use.",
                              atomic=False),
            "imagePullSecrets": _array({"type": "object"},
                                       "Secrets for pulling images of pods of this account."),
            "automountServiceAccountToken": {"type": "boolean",
                                             "description": "Whether pods get a token of "
                                                            "this account mounted."},
        }),
}

SHARED = {name: NETPOL_SCHEMAS[name] for name in (META + "ObjectMeta", META + "LabelSelector",
                                                  META + "LabelSelectorRequirement")}


def schemas_for(group: str, version: str) -> dict:
    """The detailed schemas published in one group-version's document."""
    if (group, version) == (RBAC_GROUP, "v1"):
        return {**SHARED, **RBAC_SCHEMAS}
    if (group, version) == ("", "v1"):
        return {META + "ObjectMeta": SHARED[META + "ObjectMeta"], **CORE_SCHEMAS}
    return {}
