"""ClusterRole aggregation, as a pure function: the rules an aggregated ClusterRole has.

For every selector of ``aggregationRule.clusterRoleSelectors``, the ClusterRoles
whose labels match (by name, never the role itself) contribute their rules in
order, each rule once — what kube-controller-manager's
clusterrole-aggregation controller writes into ``rules``. Used by that
controller (controlplane/controllers/clusterrole_aggregation.py) and by the
bootstrap policy, which creates admin, edit and view already filled.
"""

from __future__ import annotations

from controlplane.api.selectors import label_selector_requirements, matches_labels


def _selector_matches(selector: dict, labels: dict | None) -> bool:
    """An empty selector matches every ClusterRole (LabelSelectorAsSelector)."""
    return matches_labels(label_selector_requirements(selector), labels)


def aggregated_rules(role: dict, clusterroles: list[dict]) -> list[dict] | None:
    """The rules ``role`` should have, or None when it has no aggregationRule."""
    aggregation = role.get("aggregationRule")
    if not isinstance(aggregation, dict):
        return None
    name = role["metadata"]["name"]
    rules: list[dict] = []
    ordered = sorted(clusterroles, key=lambda r: r["metadata"]["name"])
    for selector in aggregation.get("clusterRoleSelectors") or []:
        if not isinstance(selector, dict):
            continue
        for other in ordered:
            if other["metadata"]["name"] == name or \
                    not _selector_matches(selector, other["metadata"].get("labels")):
                continue
            for rule in other.get("rules") or []:
                if rule not in rules:
                    rules.append(rule)
    return rules
