"""Label and field selectors: parsing the query-string form and matching.

Pure functions. Requirements are (key, operator, values) triples, operators
being ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!`` (does not exist).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.api import events
from controlplane.api.errors import bad_request


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        raise ValueError(self.op)


_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*"
                     r"(?:(notin|in)\s*\(([^)]*)\)|(==|=|!=)\s*([A-Za-z0-9_.-]*))?\s*$")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    reqs = []
    for part in _split_top(text):
        m = _SET_RE.match(part)
        if not m:
            raise bad_request(f"unable to parse requirement: {part!r}")
        neg, key, setop, setvals, eqop, eqval = m.groups()
        if neg:
            if setop or eqop:
                raise bad_request(f"unable to parse requirement: {part!r}")
            reqs.append(Requirement(key, "!"))
        elif setop:
            values = tuple(v.strip() for v in setvals.split(",") if v.strip())
            reqs.append(Requirement(key, setop, values))
        elif eqop:
            reqs.append(Requirement(key, "!=" if eqop == "!=" else "=", (eqval,)))
        else:
            reqs.append(Requirement(key, "exists"))
    return tuple(reqs)


def parse_field_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text:
        return ()
    reqs = []
    for part in text.split(","):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m.groups()
        reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
    return tuple(reqs)


def matches_labels(reqs: tuple[Requirement, ...], labels: dict | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def field_value(obj: dict, dotted: str) -> str:
    """The string value of a field path as field selectors see it ('' when unset).

    Events are selected by their selectable fields (``source`` is the reporting
    component, not a path), in either of their two vocabularies.
    """
    if obj.get("kind") == "Event":
        return events.selectable_fields(obj).get(dotted, "")
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def matches_fields(reqs: tuple[Requirement, ...], obj: dict) -> bool:
    return all(r.matches({r.key: field_value(obj, r.key)}) for r in reqs)


def label_selector_requirements(selector: dict | None) -> tuple[Requirement, ...]:
    """Requirements of a metav1.LabelSelector object (matchLabels + matchExpressions)."""
    if not selector:
        return ()
    reqs = [Requirement(k, "=", (v,))
            for k, v in sorted((selector.get("matchLabels") or {}).items())]
    op_map = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr.get("key", ""), op_map.get(expr.get("operator"), "?"),
                                tuple(expr.get("values") or ())))
    return tuple(reqs)


def selector_string(selector: dict | None) -> str:
    """``metav1.LabelSelectorAsSelector(sel).String()``; '<none>' when empty."""
    reqs = label_selector_requirements(selector)
    if not reqs:
        return "<none>"
    parts = []
    for r in sorted(reqs, key=lambda r: r.key):
        if r.op == "=":
            parts.append(f"{r.key}={r.values[0]}")
        elif r.op in ("in", "notin"):
            parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
        elif r.op == "exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)


def format_labels(labels: dict | None) -> str:
    """``labels.FormatLabels``: k=v pairs sorted, '<none>' when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
