"""Label selectors as metav1 validates them (ValidateLabelSelector).

One validator for every kind that carries a selector: Deployments,
ReplicaSets and NetworkPolicies (podSelector, namespaceSelector), with
Kubernetes' field paths and messages.
"""

from __future__ import annotations

from controlplane.api.errors import FieldError, forbidden, invalid, required
from controlplane.api.validation import is_label_value, is_qualified_name, validate_labels


def validate_label_selector(selector, path: str) -> list[FieldError]:
    """A metav1.LabelSelector: matchLabels, and every matchExpressions requirement."""
    if not isinstance(selector, dict):
        return [invalid(selector, path, "must be an object")]
    errs = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        return errs + [invalid(expressions, f"{path}.matchExpressions", "must be a list")]
    for i, expr in enumerate(expressions):
        errs += _validate_requirement(expr, f"{path}.matchExpressions[{i}]")
    return errs


def _validate_requirement(expr, path: str) -> list[FieldError]:
    if not isinstance(expr, dict):
        return [invalid(expr, path, "must be an object")]
    errs = []
    op, values = expr.get("operator", ""), expr.get("values") or []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(f"{path}.values",
                                 "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(f"{path}.values",
                                  "may not be specified when `operator` is 'Exists' or "
                                  "'DoesNotExist'"))
    else:
        errs.append(invalid(op, f"{path}.operator", "not a valid selector operator"))
    key = expr.get("key", "")
    errs += [invalid(key, f"{path}.key", m) for m in is_qualified_name(str(key))]
    for j, value in enumerate(values if isinstance(values, list) else [values]):
        if not isinstance(value, str):
            errs.append(invalid(value, f"{path}.values[{j}]", "must be a string"))
            continue
        errs += [invalid(value, f"{path}.values[{j}]", m) for m in is_label_value(value)]
    return errs
