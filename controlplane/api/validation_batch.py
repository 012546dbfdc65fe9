"""Validation of Jobs and CronJobs (batch/v1), paths and messages as pkg/apis/batch/validation.

A Job's pods must not restart in place (``restartPolicy`` Never or
OnFailure), its counts are non-negative, an Indexed Job needs
``completions``; unless ``manualSelector`` is set, its selector and pod
labels are the generated ones (checked on create; on update selector and
template are immutable, as upstream). A CronJob's ``schedule`` parses as
standard cron (``controlplane/api/cron.py``), its ``timeZone`` is a known
IANA zone, its name leaves room for the 11-character suffix of its Jobs.
Pure functions over defaulted object dicts.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controlplane.api import cron
from controlplane.api.defaults_workloads import JOB_NAME_LABELS, JOB_UID_LABELS
from controlplane.api.errors import FieldError, invalid, not_supported, required
from controlplane.api.selectors import label_selector_requirements, matches_labels
from controlplane.api.validation import is_dns1123_label, validate_labels, validate_metadata
from controlplane.api.validation_netpol import not_supported_in_order
from controlplane.api.validation_selector import validate_label_selector
from controlplane.api.validation_workloads import _go_selector, _nonnegative, validate_pod_spec

COMPLETION_MODES = ("Indexed", "NonIndexed")
CONCURRENCY = ("Allow", "Forbid", "Replace")
MAX_INDEXED_PARALLELISM = 100000
REPLACEMENT = ("Failed", "TerminatingOrFailed")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _job_spec(spec: dict, path: str) -> list[FieldError]:
    """validateJobSpec: what a Job and a CronJob's jobTemplate share."""
    errs = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += _nonnegative(spec.get(key), f"{path}.{key}")
    mode = spec.get("completionMode")
    if mode is not None and mode not in COMPLETION_MODES:
        errs.append(not_supported_in_order(mode, f"{path}.completionMode",
                                           ("NonIndexed", "Indexed")))
    if mode == "Indexed":
        if spec.get("completions") is None:
            errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
        parallelism = spec.get("parallelism")
        if isinstance(parallelism, int) and parallelism > MAX_INDEXED_PARALLELISM:
            errs.append(invalid(parallelism, f"{path}.parallelism",
                                f"must be less than or equal to {MAX_INDEXED_PARALLELISM} "
                                "when completion mode is Indexed"))
    elif spec.get("backoffLimitPerIndex") is not None:
        errs.append(required(f"{path}.completionMode",
                             "when backoffLimitPerIndex is specified, completionMode must be "
                             "Indexed"))
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None and replacement not in REPLACEMENT:
        errs.append(not_supported(replacement, f"{path}.podReplacementPolicy", REPLACEMENT))
    template = _dict(spec.get("template"))
    tpath = f"{path}.template"
    errs += validate_labels((template.get("metadata") or {}).get("labels"),
                            f"{tpath}.metadata.labels")
    pod = template.get("spec")
    errs += validate_pod_spec(pod, f"{tpath}.spec", ("Always", "Never", "OnFailure"))
    policy = _dict(pod).get("restartPolicy", "")
    if policy in ("Always", ""):
        errs.append(required(f"{tpath}.spec.restartPolicy",
                             'valid values: "OnFailure", "Never"'))
    elif spec.get("podFailurePolicy") and policy != "Never":
        errs.append(invalid(policy, f"{tpath}.spec.restartPolicy",
                            'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _has_label(labels: dict, key: str, want: str) -> list[FieldError]:
    """ValidateHasLabel on spec.template.metadata."""
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [required(path, f"must be '{want}'")]
    if labels[key] != want:
        return [invalid(labels, path, f"must be '{want}'")]
    return []


def _generated_selector(job: dict) -> list[FieldError]:
    """validateGeneratedSelector: the labels and selector generateSelector put there."""
    spec = _dict(job.get("spec"))
    if spec.get("manualSelector") is True:
        return []
    meta = _dict(job.get("metadata"))
    uid, name = meta.get("uid", ""), meta.get("name", "")
    if not uid:
        return [required("metadata.uid")]
    labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
    errs = []
    for key in (JOB_UID_LABELS[1], JOB_NAME_LABELS[1], JOB_UID_LABELS[0], JOB_NAME_LABELS[0]):
        errs += _has_label(labels, key, uid if "uid" in key else name)
    expected = {JOB_UID_LABELS[0]: uid, JOB_NAME_LABELS[0]: name,
                JOB_UID_LABELS[1]: uid, JOB_NAME_LABELS[1]: name}
    selector = spec.get("selector")
    if isinstance(selector, dict) and not validate_label_selector(selector, "spec.selector"):
        if not matches_labels(label_selector_requirements(selector), expected):
            errs.append(invalid(_go_selector(selector), "spec.selector",
                                "`selector` not auto-generated"))
    return errs


def validate_job(job: dict) -> list[FieldError]:
    errs = validate_metadata(job, "subdomain", True)
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return errs + [required("spec")]
    if "generation" not in _dict(job.get("metadata")):     # a create (see defaults_workloads)
        errs += _generated_selector(job)
    errs += _job_spec(spec, "spec")
    selector = spec.get("selector")
    if not selector:
        errs.append(required("spec.selector"))
    else:
        sel_errs = validate_label_selector(selector, "spec.selector")
        errs += sel_errs
        labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
        if not sel_errs and not matches_labels(label_selector_requirements(selector), labels):
            errs.append(invalid(labels, "spec.template.metadata.labels",
                                "`selector` does not match template `labels`"))
    name, completions = _dict(job.get("metadata")).get("name"), spec.get("completions")
    if (spec.get("completionMode") == "Indexed" and isinstance(completions, int)
            and completions > 0 and isinstance(name, str)):
        hostname = f"{name}-{completions - 1}"
        if is_dns1123_label(hostname):
            errs.append(invalid(name, "metadata.name", "will not able to create pod with "
                                                       f"invalid DNS label: {hostname}"))
    return errs


def validate_job_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateJobSpecUpdate: selector and template immutable (the template may change
    while the Job is suspended and has not started), completions too unless Indexed
    with parallelism following it."""
    new_spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    errs = []
    if new_spec.get("selector") != old_spec.get("selector"):
        errs.append(invalid(_go_selector(_dict(new_spec.get("selector"))), "spec.selector",
                            "field is immutable"))
    if new_spec.get("completions") != old_spec.get("completions") and not (
            new_spec.get("completionMode") == "Indexed"
            and new_spec.get("completions") == new_spec.get("parallelism")):
        errs.append(invalid(new_spec.get("completions"), "spec.completions",
                            "field is immutable"))
    if new_spec.get("completionMode") != old_spec.get("completionMode"):
        errs.append(invalid(new_spec.get("completionMode"), "spec.completionMode",
                            "field is immutable"))
    started = _dict(old.get("status")).get("startTime")
    if new_spec.get("template") != old_spec.get("template") and (
            not old_spec.get("suspend") or started):
        errs.append(invalid(new_spec.get("template"), "spec.template", "field is immutable"))
    return errs


def _schedule(spec: dict, old_spec: dict | None) -> list[FieldError]:
    schedule = spec.get("schedule")
    path = "spec.schedule"
    if not schedule:
        return [required(path)]
    if not isinstance(schedule, str):
        return [invalid(schedule, path, "must be a string")]
    errs = []
    try:
        cron.parse(schedule)
    except cron.CronError as exc:
        errs.append(invalid(schedule, path, str(exc)))
    allow_tz = old_spec is not None and "TZ" in str(old_spec.get("schedule", ""))
    if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
        errs.append(invalid(schedule, path,
                            "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    elif not allow_tz and "TZ" in schedule:
        errs.append(invalid(schedule, path,
                            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return errs


def _time_zone(zone) -> list[FieldError]:
    path = "spec.timeZone"
    if zone is None:
        return []
    if not isinstance(zone, str) or not zone:
        return [invalid(zone, path, "timeZone must be nil or non-empty string")]
    for part in zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not part.replace("_", "a").replace(
                "-", "a").replace("+", "a").isalnum():
            return [invalid(zone, path, f"unknown time zone {zone}")]
    if zone.lower() == "local":
        return [invalid(zone, path, "timeZone must be an explicit time zone as defined in "
                                    "https://www.iana.org/time-zones")]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return [invalid(zone, path, f"unknown time zone {zone}")]
    return []


def _cronjob_spec(cj: dict, old: dict | None) -> list[FieldError]:
    spec = _dict(cj.get("spec"))
    old_spec = _dict(old.get("spec")) if old is not None else None
    errs = _schedule(spec, old_spec)
    errs += _nonnegative(spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds")
    if old_spec is None or old_spec.get("timeZone") != spec.get("timeZone"):
        errs += _time_zone(spec.get("timeZone"))
    policy = spec.get("concurrencyPolicy", "")
    if not policy:
        errs.append(required("spec.concurrencyPolicy"))
    elif policy not in CONCURRENCY:
        errs.append(not_supported(policy, "spec.concurrencyPolicy", CONCURRENCY))
    template = _dict(spec.get("jobTemplate"))
    job_spec = _dict(template.get("spec"))
    errs += _job_spec(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        errs.append(invalid(_go_selector(_dict(job_spec["selector"])),
                            "spec.jobTemplate.spec.selector", "`selector` will be auto-generated"))
    if job_spec.get("manualSelector") is True:
        errs.append(not_supported_in_order(True, "spec.jobTemplate.spec.manualSelector",
                                           ("nil", "false")))
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += _nonnegative(spec.get(key), f"spec.{key}")
    return errs


def validate_cronjob(cj: dict) -> list[FieldError]:
    errs = validate_metadata(cj, "subdomain", True)
    if not isinstance(cj.get("spec"), dict):
        return errs + [required("spec")]
    name = _dict(cj.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > 52:
        errs.append(invalid(name, "metadata.name", "must be no more than 52 characters"))
    return errs + _cronjob_spec(cj, None)
