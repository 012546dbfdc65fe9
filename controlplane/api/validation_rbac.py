"""Validation of RBAC objects and ServiceAccounts, with Kubernetes' field paths and messages.

The authorizer trusts what the API stores, so the rules kube-apiserver
enforces (pkg/apis/rbac/validation) are enforced here: names are path
segments (``system:node`` is a valid name), every rule has verbs, resource
rules name API groups and resources, non-resource URLs only in ClusterRoles
and never mixed with resources, bindings refer to a Role or ClusterRole of
``rbac.authorization.k8s.io`` and may not change that reference, subjects are
User, Group or ServiceAccount with a name (and, in a ClusterRoleBinding, a
ServiceAccount's namespace). Verb names are not checked: Kubernetes does not.

Pure functions over defaulted object dicts returning lists of FieldError.
"""

from __future__ import annotations

from controlplane.api.errors import FieldError, GoRaw, invalid, required
from controlplane.api.validation import is_dns1123_subdomain, validate_metadata
from controlplane.api.validation_netpol import not_supported_in_order
from controlplane.api.validation_selector import validate_label_selector

RBAC_GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def path_segment_errors(name: str) -> list[str]:
    """apimachinery's path.IsValidPathSegmentName (ValidateRBACName)."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _metadata(obj: dict, namespaced: bool, name_rule) -> list[FieldError]:
    """ObjectMeta validation with ``name_rule`` for metadata.name."""
    errs = [e for e in validate_metadata(obj, "subdomain", namespaced)
            if not (e.field == "metadata.name" and e.kind == "Invalid")]
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and name:
        errs += [invalid(name, "metadata.name", m) for m in name_rule(name)]
    return errs


def _strings(value, path: str) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [invalid(value, path, "must be a list of strings")]
    return []


def validate_policy_rule(rule, namespaced: bool, path: str) -> list[FieldError]:
    """ValidatePolicyRule."""
    if not isinstance(rule, dict):
        return [invalid(rule, path, "must be an object")]
    errs = []
    for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
        errs += _strings(rule.get(key), f"{path}.{key}")
    if errs:
        return errs
    if not rule.get("verbs"):
        errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            errs.append(invalid(urls, f"{path}.nonResourceURLs",
                                "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errs.append(invalid(urls, f"{path}.nonResourceURLs",
                                "rules cannot apply to both regular resources and "
                                "non-resource URLs"))
        return errs
    if not rule.get("apiGroups"):
        errs.append(required(f"{path}.apiGroups",
                             "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        errs.append(required(f"{path}.resources",
                             "resource rules must supply at least one resource"))
    return errs


def _rules(obj: dict, namespaced: bool) -> list[FieldError]:
    rules = obj.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [invalid(rules, "rules", "must be a list")]
    return [e for i, rule in enumerate(rules)
            for e in validate_policy_rule(rule, namespaced, f"rules[{i}]")]


def validate_role(role: dict) -> list[FieldError]:
    return _metadata(role, True, path_segment_errors) + _rules(role, True)


def validate_clusterrole(role: dict) -> list[FieldError]:
    errs = _metadata(role, False, path_segment_errors) + _rules(role, False)
    aggregation = role.get("aggregationRule")
    if aggregation is not None:
        path = "aggregationRule.clusterRoleSelectors"
        selectors = aggregation.get("clusterRoleSelectors") if isinstance(aggregation, dict) \
            else None
        if not selectors:
            errs.append(required(path, "at least one clusterRoleSelector required if "
                                       "aggregationRule is non-nil"))
        elif not isinstance(selectors, list):
            errs.append(invalid(selectors, path, "must be a list"))
        else:
            for i, selector in enumerate(selectors):
                errs += validate_label_selector(selector, f"{path}[{i}]")
    return errs


def validate_subject(subject, namespaced: bool, path: str) -> list[FieldError]:
    """ValidateRoleBindingSubject."""
    if not isinstance(subject, dict):
        return [invalid(subject, path, "must be an object")]
    errs = []
    name, kind = subject.get("name", ""), subject.get("kind", "")
    api_group = subject.get("apiGroup", "")
    if not name:
        errs.append(required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += [invalid(name, f"{path}.name", m) for m in is_dns1123_subdomain(str(name))]
        if api_group:
            errs.append(not_supported_in_order(api_group, f"{path}.apiGroup", ("",)))
        if not namespaced and not subject.get("namespace"):
            errs.append(required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if api_group != RBAC_GROUP:
            errs.append(not_supported_in_order(api_group, f"{path}.apiGroup", (RBAC_GROUP,)))
    else:
        errs.append(not_supported_in_order(kind, f"{path}.kind", SUBJECT_KINDS))
    return errs


def _binding(binding: dict, namespaced: bool) -> list[FieldError]:
    errs = _metadata(binding, namespaced, path_segment_errors)
    ref = binding.get("roleRef")
    if not isinstance(ref, dict):
        ref = {}
    if ref.get("apiGroup", "") != RBAC_GROUP:
        errs.append(not_supported_in_order(ref.get("apiGroup", ""), "roleRef.apiGroup",
                                           (RBAC_GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind", "") not in kinds:
        errs.append(not_supported_in_order(ref.get("kind", ""), "roleRef.kind", kinds))
    name = ref.get("name", "")
    if not name:
        errs.append(required("roleRef.name"))
    else:
        errs += [invalid(name, "roleRef.name", m) for m in path_segment_errors(str(name))]
    subjects = binding.get("subjects") or []
    if not isinstance(subjects, list):
        return errs + [invalid(subjects, "subjects", "must be a list")]
    for i, subject in enumerate(subjects):
        errs += validate_subject(subject, namespaced, f"subjects[{i}]")
    return errs


def validate_rolebinding(binding: dict) -> list[FieldError]:
    return _binding(binding, True)


def validate_clusterrolebinding(binding: dict) -> list[FieldError]:
    return _binding(binding, False)


def _role_ref_text(ref: dict) -> GoRaw:
    return GoRaw('rbac.RoleRef{APIGroup:"%s", Kind:"%s", Name:"%s"}'
                 % (ref.get("apiGroup", ""), ref.get("kind", ""), ref.get("name", "")))


def validate_binding_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateRoleBindingUpdate / ValidateClusterRoleBindingUpdate: roleRef is immutable."""
    if (new.get("roleRef") or {}) != (old.get("roleRef") or {}):
        return [invalid(_role_ref_text(new.get("roleRef") or {}), "roleRef",
                        "cannot change roleRef")]
    return []


def validate_serviceaccount(sa: dict) -> list[FieldError]:
    """ValidateServiceAccount: metadata (name a DNS subdomain), plus the field types the
    v1 decoder would refuse."""
    errs = _metadata(sa, True, is_dns1123_subdomain)
    automount = sa.get("automountServiceAccountToken")
    if automount is not None and not isinstance(automount, bool):
        errs.append(invalid(automount, "automountServiceAccountToken", "must be a boolean"))
    for key in ("secrets", "imagePullSecrets"):
        refs = sa.get(key)
        if refs is None:
            continue
        if not isinstance(refs, list):
            errs.append(invalid(refs, key, "must be a list"))
            continue
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict) or not isinstance(ref.get("name", ""), str):
                errs.append(invalid(ref, f"{key}[{i}]", "must be an object with a string name"))
    return errs
