"""Validation of StatefulSets, DaemonSets, ControllerRevisions and ReplicationControllers.

Field paths and messages as pkg/apis/apps/validation (and, for the
ReplicationController, pkg/apis/core/validation). As upstream, a
StatefulSet's pod template is checked for its labels only (its volumeMounts
may name a volumeClaimTemplate, which is not a volume of the template); its
``serviceName`` is optional (Kubernetes 1.33+) but, when set, a DNS label,
since it becomes every pod's ``subdomain``. Pure functions over defaulted
object dicts.
"""

from __future__ import annotations

import re

from controlplane.api.errors import (
    FieldError,
    GoRaw,
    forbidden,
    invalid,
    not_supported,
    required,
)
from controlplane.api.selectors import label_selector_requirements, matches_labels
from controlplane.api.validation import (
    is_dns1123_label,
    regex_error,
    validate_labels,
    validate_metadata,
)
from controlplane.api.validation_netpol import not_supported_in_order
from controlplane.api.validation_selector import validate_label_selector
from controlplane.api.validation_workloads import (
    _go_selector,
    _nonnegative,
    validate_pod_spec,
)

STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
STS_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                 "'template', 'updateStrategy', 'revisionHistoryLimit', "
                 "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
RETENTION = ("Delete", "Retain")
PERCENT = re.compile(r"[0-9]+%")


def _spec(obj: dict) -> dict | None:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else None


def _template(spec: dict) -> dict:
    template = spec.get("template")
    return template if isinstance(template, dict) else {}


def _template_labels(spec: dict) -> dict:
    labels = (_template(spec).get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def selector_errors(spec: dict, kind: str, required_selector: bool = True) -> list[FieldError]:
    """A LabelSelector that is valid, not empty and matches the template's labels."""
    selector = spec.get("selector")
    labels = _template_labels(spec)
    if not selector:
        return [required("spec.selector")] if required_selector else []
    errs = validate_label_selector(selector, "spec.selector")
    if errs:
        return errs
    reqs = label_selector_requirements(selector)
    if not reqs:
        return [invalid(_go_selector(selector), "spec.selector",
                        f"empty selector is invalid for {kind}")]
    if not matches_labels(reqs, labels):
        return [invalid(labels, "spec.template.metadata.labels",
                        "`selector` does not match template `labels`")]
    return []


def _restart_always(spec: dict, kind: str) -> list[FieldError]:
    pod = _template(spec).get("spec") or {}
    errs = []
    policy = pod.get("restartPolicy", "")
    if policy != "Always":
        errs.append(not_supported(policy, "spec.template.spec.restartPolicy", ("Always",)))
    if pod.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs


def int_or_percent_errors(value, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, str):
        if not PERCENT.fullmatch(value):
            return [invalid(value, path, regex_error("a valid percent string must be a numeric "
                                                     "string followed by an ending '%'",
                                                     "[0-9]+%", "1%", "93%"))]
        if int(value[:-1]) > 100:
            return [invalid(value, path, "must not be greater than 100%")]
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [invalid(value, path, "must be an integer or percentage (e.g '5%')")]
    return _nonnegative(value, path)


def _int_or_percent_value(value) -> int:
    if isinstance(value, str) and PERCENT.fullmatch(value):
        return int(value[:-1])
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def validate_statefulset(sts: dict) -> list[FieldError]:
    errs = validate_metadata(sts, "label", True)
    spec = _spec(sts)
    if spec is None:
        return errs + [required("spec")]
    name = spec.get("serviceName")
    if name:
        errs += [invalid(name, "spec.serviceName", m) for m in is_dns1123_label(str(name))]
    policy = spec.get("podManagementPolicy", "")
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid(policy, "spec.podManagementPolicy",
                            "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    stype = strategy.get("type", "") if isinstance(strategy, dict) else ""
    rolling = strategy.get("rollingUpdate") if isinstance(strategy, dict) else None
    if not stype:
        errs.append(required("spec.updateStrategy"))
    elif stype == "OnDelete":
        if rolling is not None:
            errs.append(invalid(rolling, "spec.updateStrategy.rollingUpdate",
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif stype == "RollingUpdate":
        if isinstance(rolling, dict):
            path = "spec.updateStrategy.rollingUpdate"
            errs += _nonnegative(rolling.get("partition", 0), f"{path}.partition")
            if rolling.get("maxUnavailable") is not None:
                value = rolling["maxUnavailable"]
                errs += int_or_percent_errors(value, f"{path}.maxUnavailable")
                if _int_or_percent_value(value) == 0:
                    errs.append(invalid(value, f"{path}.maxUnavailable", "cannot be 0"))
    else:
        errs.append(invalid(strategy, "spec.updateStrategy",
                            "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, dict):
        for key in ("whenDeleted", "whenScaled"):
            if retention.get(key) not in RETENTION:
                errs.append(not_supported_in_order(
                    retention.get(key), f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                    ("Retain", "Delete")))
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    if isinstance(spec.get("ordinals"), dict):
        errs += _nonnegative(spec["ordinals"].get("start", 0), "spec.ordinals.start")
    errs += selector_errors(spec, "statefulset")
    errs += validate_labels(_template_labels(spec), "spec.template.labels")
    for i, claim in enumerate(spec.get("volumeClaimTemplates") or []):
        if not isinstance(claim, dict) or not (claim.get("metadata") or {}).get("name"):
            errs.append(required(f"spec.volumeClaimTemplates[{i}].metadata.name"))
    return errs + _restart_always(spec, "StatefulSet")


def validate_statefulset_update(new: dict, old: dict) -> list[FieldError]:
    new_spec, old_spec = _spec(new) or {}, _spec(old) or {}
    strip = lambda spec: {k: v for k, v in spec.items() if k not in STS_MUTABLE}  # noqa: E731
    if strip(new_spec) != strip(old_spec):
        return [forbidden("spec", STS_FORBIDDEN)]
    return []


def validate_daemonset(ds: dict) -> list[FieldError]:
    errs = validate_metadata(ds, "subdomain", True)
    spec = _spec(ds)
    if spec is None:
        return errs + [required("spec")]
    errs += selector_errors(spec, "daemonset")
    errs += validate_labels(_template_labels(spec), "spec.template.metadata.labels")
    errs += validate_pod_spec(_template(spec).get("spec"), "spec.template.spec",
                              ("Always", "Never", "OnFailure"))
    errs += _restart_always(spec, "DaemonSet")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("templateGeneration"), "spec.templateGeneration")
    errs += _daemonset_strategy(spec.get("updateStrategy") or {})
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    return errs


def _daemonset_strategy(strategy: dict) -> list[FieldError]:
    path = "spec.updateStrategy"
    stype = strategy.get("type") if isinstance(strategy, dict) else None
    if stype == "OnDelete":
        return []
    if stype != "RollingUpdate":
        rolling = "nil" if strategy.get("rollingUpdate") is None else "0xc000000000"
        value = GoRaw(f'apps.DaemonSetUpdateStrategy{{Type:"{stype or ""}", '
                      f"RollingUpdate:(*apps.RollingUpdateDaemonSet)({rolling})}}")
        return [not_supported_in_order(value, path, ("RollingUpdate", "OnDelete"))]
    rolling = strategy.get("rollingUpdate")
    if not isinstance(rolling, dict):
        return [required(f"{path}.rollingUpdate")]
    path += ".rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = (int_or_percent_errors(unavailable, f"{path}.maxUnavailable")
            + int_or_percent_errors(surge, f"{path}.maxSurge"))
    has_unavailable = _int_or_percent_value(unavailable) != 0
    has_surge = _int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        errs.append(invalid(surge, f"{path}.maxSurge",
                            "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_selector_immutable(new: dict, old: dict) -> list[FieldError]:
    new_sel = (_spec(new) or {}).get("selector")
    old_sel = (_spec(old) or {}).get("selector")
    if new_sel != old_sel:
        return [invalid(_go_selector(new_sel or {}), "spec.selector", "field is immutable")]
    return []


def validate_controllerrevision(rev: dict) -> list[FieldError]:
    errs = validate_metadata(rev, "subdomain", True)
    if rev.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    revision = rev.get("revision", 0)
    if isinstance(revision, bool) or not isinstance(revision, int):
        errs.append(invalid(revision, "revision", "must be an integer"))
    else:
        errs += _nonnegative(revision, "revision")
    return errs


def validate_controllerrevision_update(new: dict, old: dict) -> list[FieldError]:
    if new.get("data") != old.get("data"):
        return [invalid(new.get("data"), "data", "field is immutable")]
    return []


def validate_replicationcontroller(rc: dict) -> list[FieldError]:
    errs = validate_metadata(rc, "subdomain", True)
    spec = _spec(rc)
    if spec is None:
        return errs + [required("spec")]
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = spec.get("selector")
    if selector is not None and not isinstance(selector, dict):
        return errs + [invalid(selector, "spec.selector", "must be a map of labels")]
    selector = selector or {}
    errs += validate_labels(selector, "spec.selector")
    if not selector:
        errs.append(required("spec.selector"))
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    template = spec.get("template")
    if not isinstance(template, dict):
        return errs + [required("spec.template")]
    labels = _template_labels(spec)
    if selector and not all(labels.get(k) == v for k, v in selector.items()):
        errs.append(invalid(labels, "spec.template.metadata.labels",
                            "`selector` does not match template `labels`"))
    errs += validate_labels(labels, "spec.template.metadata.labels")
    errs += validate_pod_spec(template.get("spec"), "spec.template.spec",
                              ("Always", "Never", "OnFailure"))
    return errs + _restart_always(spec, "ReplicationController")
