"""Defaulting of the workload kinds beyond Deployment/ReplicaSet.

StatefulSet, DaemonSet and ControllerRevision (apps/v1), Job and CronJob
(batch/v1), ReplicationController (core/v1) and Lease (coordination.k8s.io/v1),
as their SetDefaults_* functions in pkg/apis/*/v1/defaults.go set them, plus
a Job's generated selector (the job strategy's PrepareForCreate). Each
function returns a new dict; the input is not changed.
"""

from __future__ import annotations

import uuid

from base.jsoncopy import json_copy
from controlplane.api import defaults

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_UID_SELECTOR = "batch.kubernetes.io/controller-uid"


def pod_template(template) -> dict:
    """A pod template with its metadata and defaulted spec (shared by every kind here)."""
    template = template if isinstance(template, dict) else {}
    template.setdefault("metadata", {})
    spec = template.setdefault("spec", {})
    if isinstance(spec, dict):
        defaults.pod_spec(spec)
    return template


def _int_or_percent_default(obj: dict, key: str, value) -> None:
    if obj.get(key) is None:
        obj[key] = value


def statefulset(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        if not strategy.get("type"):
            strategy["type"] = "RollingUpdate"
            strategy.setdefault("rollingUpdate", {})
        if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
            strategy["rollingUpdate"].setdefault("partition", 0)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    if isinstance(policy, dict):
        policy.setdefault("whenDeleted", "Retain")
        policy.setdefault("whenScaled", "Retain")
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec["template"] = pod_template(spec.get("template"))
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            if isinstance(claim.get("spec"), dict):
                claim["spec"].setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {"phase": "Pending"})
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("replicas", 0)
        status.setdefault("availableReplicas", 0)
    return obj


def daemonset(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            if isinstance(rolling, dict):
                _int_or_percent_default(rolling, "maxUnavailable", 1)
                _int_or_percent_default(rolling, "maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec["template"] = pod_template(spec.get("template"))
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        for key in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                    "numberReady"):
            status.setdefault(key, 0)
    return obj


def controllerrevision(obj: dict) -> dict:
    obj = json_copy(obj)
    obj.pop("status", None)
    obj.setdefault("revision", 0)
    return obj


def _job_spec(spec: dict) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy",
                    "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in (rule or {}).get("onPodConditions") or []:
            if isinstance(pattern, dict):
                pattern.setdefault("status", "True")


def _generate_selector(obj: dict, spec: dict) -> None:
    """The job strategy's generateSelector, on create only: labels naming the job and
    its uid on the pod template, and a selector on the uid."""
    meta = obj["metadata"]
    meta.setdefault("uid", str(uuid.uuid4()))
    labels = spec["template"]["metadata"].setdefault("labels", {})
    if not isinstance(labels, dict):
        return
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, meta.get("name", ""))
    for key in JOB_UID_LABELS:
        labels.setdefault(key, meta["uid"])
    selector = spec.setdefault("selector", {})
    if isinstance(selector, dict):
        match = selector.setdefault("matchLabels", {})
        if isinstance(match, dict):
            match.setdefault(JOB_UID_SELECTOR, meta["uid"])


def job(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    _job_spec(spec)
    spec["template"] = pod_template(spec.get("template"))
    meta = obj.setdefault("metadata", {})
    creating = "generation" not in meta     # the registry sets it after validating a create
    if creating and spec.get("manualSelector") is not True:
        _generate_selector(obj, spec)
    template_labels = spec["template"]["metadata"].get("labels")
    if template_labels and not meta.get("labels"):
        meta["labels"] = json_copy(template_labels)
    obj.setdefault("status", {})
    return obj


def cronjob(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    template = spec.setdefault("jobTemplate", {})
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        job_spec = template.setdefault("spec", {})
        if isinstance(job_spec, dict):
            job_spec["template"] = pod_template(job_spec.get("template"))
    obj.setdefault("status", {})
    return obj


def replicationcontroller(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    template = spec.get("template")
    if isinstance(template, dict):
        spec["template"] = pod_template(template)
        labels = template["metadata"].get("labels")
        if labels:
            if not spec.get("selector"):
                spec["selector"] = json_copy(labels)
            meta = obj.setdefault("metadata", {})
            if not meta.get("labels"):
                meta["labels"] = json_copy(labels)
    spec.setdefault("replicas", 1)
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("replicas", 0)
    return obj


def lease(obj: dict) -> dict:
    obj = json_copy(obj)
    obj.pop("status", None)
    obj.setdefault("spec", {})
    return obj
