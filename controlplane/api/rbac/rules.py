"""PolicyRules compiled to sets, and whether one allows a request (RBAC's RuleAllows).

A rule allows a resource request when the verb, the API group, the resource
(``pods``, ``pods/log`` for a subresource, ``*`` for all, ``*/scale`` for one
subresource of every resource) and, if the rule names any, the object's name
all match; a non-resource request when the verb and the path match a
``nonResourceURLs`` entry (exact, ``*``, or a prefix ending in ``*``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.rbac.attributes import Attributes

ALL = "*"


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]
    urls: tuple[str, ...]
    source: dict                       # the PolicyRule as written (for reviews and messages)

    @classmethod
    def compile(cls, rule: dict) -> Rule:
        return cls(frozenset(rule.get("verbs") or ()), frozenset(rule.get("apiGroups") or ()),
                   frozenset(rule.get("resources") or ()),
                   frozenset(rule.get("resourceNames") or ()),
                   tuple(rule.get("nonResourceURLs") or ()), rule)

    def allows(self, attrs: Attributes) -> bool:
        if attrs.verb not in self.verbs and ALL not in self.verbs:
            return False
        if not attrs.resource_request:
            return url_matches(self.urls, attrs.path)
        if attrs.api_group not in self.api_groups and ALL not in self.api_groups:
            return False
        if not resource_matches(self.resources, attrs.resource, attrs.subresource):
            return False
        return not self.resource_names or attrs.name in self.resource_names


def resource_matches(resources: frozenset[str], resource: str, subresource: str) -> bool:
    if ALL in resources:
        return True
    if not subresource:
        return resource in resources
    return f"{resource}/{subresource}" in resources or f"*/{subresource}" in resources


def url_matches(urls: tuple[str, ...], path: str) -> bool:
    for url in urls:
        if url == ALL or url == path:
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def compile_rules(rules) -> tuple[Rule, ...]:
    return tuple(Rule.compile(r) for r in rules or () if isinstance(r, dict))
