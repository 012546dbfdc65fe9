"""The Job controller's decisions: pods run to completion, failures counted: pure.

`plan_job` takes a Job and its pods and returns what upstream's
job_controller.go would do in one sync (Kubernetes 1.33+, where Jobs first
get an interim condition):

- up to `parallelism` pods run while `completions` are not reached (a Job
  without completions is done once one pod succeeded and none runs);
  Indexed Jobs give each pod a completion index (annotation and label
  `batch.kubernetes.io/job-completion-index`, hostname `<job>-<index>`,
  `JOB_COMPLETION_INDEX` in every container) and track `completedIndexes`;
- each failed pod counts; past `backoffLimit` failures (or, with
  restartPolicy OnFailure, container restarts) the Job fails: condition
  FailureTarget, its running pods deleted, then Failed, reason
  BackoffLimitExceeded (DeadlineExceeded past activeDeadlineSeconds);
- a replacement after failures waits 10 s, doubled per failure since the
  last success, at most 6 min (`backoff` scales these for the lab);
- success: SuccessCriteriaMet, then Complete (reason CompletionsReached)
  once no pod is terminating, with completionTime, so `kubectl wait
  --for=condition=complete` returns; suspend deletes the running pods.

Pods are counted from the pods that exist (the API has no finalizers, so
there is no job-tracking finalizer); the counters never go down, so a
finished pod deleted by hand stays counted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from base.jsoncopy import json_copy
from controlplane.controllers.objects import (
    condition,
    is_ready,
    is_terminal,
    is_terminating,
    owned_by,
    parse_time,
    selector_matches,
)
from controlplane.controllers.podtemplates import pod_from_template
from controlplane.controllers.replicaset import deletion_rank

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
BACKOFF_SECONDS = 10.0          # upstream DefaultJobPodFailureBackOff
BACKOFF_MAX_SECONDS = 360.0     # and MaxJobPodFailureBackOff
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
SUCCESS = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")


def stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime(RFC3339)


def completions_of(job: dict) -> int | None:
    spec = job.get("spec") or {}
    if spec.get("completions") is None:
        return None if spec.get("parallelism") is not None else 1
    return int(spec["completions"])


def parallelism_of(job: dict) -> int:
    value = (job.get("spec") or {}).get("parallelism")
    return 1 if value is None else int(value)


def backoff_limit_of(job: dict) -> int:
    value = (job.get("spec") or {}).get("backoffLimit")
    return 6 if value is None else int(value)


def is_indexed(job: dict) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def finished_condition(job: dict) -> str | None:
    """"Complete" or "Failed" when the Job has finished, else None."""
    for kind in ("Complete", "Failed"):
        found = condition(job, kind)
        if found is not None and found.get("status") == "True":
            return kind
    return None


def job_pods(job: dict, pods: list[dict]) -> list[dict]:
    namespace = job["metadata"]["namespace"]
    selector = (job.get("spec") or {}).get("selector")
    return [p for p in pods if p["metadata"].get("namespace") == namespace and owned_by(p, job)
            and (selector is None or selector_matches(selector, p["metadata"].get("labels")))]


def completion_index(pod: dict) -> int | None:
    text = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    return int(text) if text is not None and str(text).isdigit() else None


def finish_time(pod: dict, now: dt.datetime) -> dt.datetime:
    """getFinishedTime: the last container's finishedAt, else when it was deleted."""
    times = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for s in (pod.get("status") or {}).get("containerStatuses") or []]
    times = [t for t in times if t is not None]
    if times:
        return max(times)
    return parse_time(pod["metadata"].get("deletionTimestamp")) or now


def backoff_remaining(pods: list[dict], now: dt.datetime, base: float, cap: float) -> float:
    """Seconds before a replacement pod may be created (backoffRecord.getRemainingTime)."""
    phase = {id(p): (p.get("status") or {}).get("phase") for p in pods}
    finished = sorted((finish_time(p, now), phase[id(p)]) for p in pods
                      if phase[id(p)] in ("Succeeded", "Failed"))
    failures = []
    for when, what in finished:
        failures = [] if what == "Succeeded" else failures + [when]
    if not failures:
        return 0.0
    delay = min(cap, base * 2 ** (len(failures) - 1))
    return max(0.0, delay - (now - failures[-1]).total_seconds())


def format_indexes(indexes: set[int]) -> str:
    """The completedIndexes format: "0-2,4"."""
    out, ordered = [], sorted(indexes)
    start = prev = None
    for i in ordered + [None]:
        if start is not None and (i is None or i != prev + 1):
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(out)


def parse_indexes(text: str | None) -> set[int]:
    found = set()
    for part in (text or "").split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            found.update(range(int(low), int(high) + 1))
        elif part.strip():
            found.add(int(part))
    return found


def job_pod(job: dict, name: str, index: int | None) -> dict:
    """The pod for a Job (for an Indexed Job, for its completion index)."""
    pod = pod_from_template((job.get("spec") or {}).get("template") or {}, job, name=name)
    if index is None:
        return pod
    pod["metadata"].setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
    pod["metadata"]["labels"][COMPLETION_INDEX] = str(index)
    pod["spec"]["hostname"] = f"{job['metadata']['name']}-{index}"
    for kind in ("initContainers", "containers"):
        for container in pod["spec"].get(kind) or []:
            env = [e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
            env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}})
            container["env"] = env
    return pod


def new_condition(kind: str, reason: str, message: str, now: dt.datetime) -> dict:
    return {"type": kind, "status": "True", "lastProbeTime": stamp(now),
            "lastTransitionTime": stamp(now), "reason": reason, "message": message}


@dataclass(frozen=True)
class JobStep:
    create: tuple[int | None, ...] = ()     # one entry per pod: its index (None: not Indexed)
    delete: tuple[dict, ...] = ()
    status: dict = field(default_factory=dict)
    events: tuple[tuple[str, str, str], ...] = ()     # (type, reason, message)
    requeue_after: float | None = None


def _restarts_past_limit(job: dict, active: list[dict]) -> bool:
    """pastBackoffLimitOnFailure: restartPolicy OnFailure counts container restarts."""
    template_spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(int(s.get("restartCount") or 0) for p in active
                   for kind in ("initContainerStatuses", "containerStatuses")
                   for s in (p.get("status") or {}).get(kind) or [])
    limit = backoff_limit_of(job)
    return restarts > 0 if limit == 0 else restarts >= limit


def plan_job(job: dict, pods: list[dict], now: dt.datetime, *,
             backoff: tuple[float, float] = (BACKOFF_SECONDS, BACKOFF_MAX_SECONDS)) -> JobStep:
    """One sync of a Job (`pods`: the namespace's; the Job's are picked out)."""
    status = json_copy(job.get("status") or {})
    if finished_condition(job):
        return JobStep(status=status)
    spec = job.get("spec") or {}
    mine = job_pods(job, pods)
    active = [p for p in mine if not is_terminal(p) and not is_terminating(p)]
    terminating = sum(1 for p in mine if is_terminating(p) and not is_terminal(p))
    phases = [(p.get("status") or {}).get("phase") for p in mine]
    completions = completions_of(job)
    done_indexes = set()
    if is_indexed(job):
        done_indexes = parse_indexes(status.get("completedIndexes")) | {
            completion_index(p) for p in mine if (p.get("status") or {}).get("phase") ==
            "Succeeded" and completion_index(p) is not None}
        done_indexes = {i for i in done_indexes if completions is None or i < completions}
        succeeded = len(done_indexes)
    else:
        succeeded = max(int(status.get("succeeded") or 0), phases.count("Succeeded"))
    failed = max(int(status.get("failed") or 0), phases.count("Failed"))
    suspended = bool(spec.get("suspend"))
    conditions = list(status.get("conditions") or [])
    kinds = {c.get("type") for c in conditions if c.get("status") == "True"}
    events: list[tuple[str, str, str]] = []
    creates: list[int | None] = []
    deletes: list[dict] = []
    requeue = None
    if "startTime" not in status and not suspended:
        status["startTime"] = stamp(now)
    failure = next(((c.get("reason", ""), c.get("message", "")) for c in conditions
                    if c.get("type") == "FailureTarget" and c.get("status") == "True"), None)
    if failure is None and "SuccessCriteriaMet" not in kinds:
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        if failed > backoff_limit_of(job) or _restarts_past_limit(job, active):
            failure = BACKOFF_EXCEEDED
        elif deadline is not None and started is not None and not suspended:
            left = float(deadline) - (now - started).total_seconds()
            if left <= 0:
                failure = DEADLINE_EXCEEDED
            else:
                requeue = left
    if failure is not None:
        deletes = active
        if "FailureTarget" not in kinds:
            conditions.append(new_condition("FailureTarget", *failure, now))
        if not active and not terminating:
            conditions.append(new_condition("Failed", *failure, now))
            events.append(("Warning", *failure))
    elif "SuccessCriteriaMet" not in kinds:
        creates, deletes, wait = _manage(job, mine, active, succeeded, done_indexes, now,
                                         backoff)
        requeue = wait if wait is not None else requeue
        conditions, new_events = _suspension(conditions, suspended, now)
        events += new_events
        if "Resumed" in {e[1] for e in new_events}:
            status["startTime"] = stamp(now)
    running = len(active) - len(deletes) + len(creates)
    if failure is None and "SuccessCriteriaMet" not in kinds and running == 0 and (
            succeeded >= completions if completions is not None else succeeded > 0):
        conditions.append(new_condition("SuccessCriteriaMet", *SUCCESS, now))
        kinds.add("SuccessCriteriaMet")
    if failure is None and "SuccessCriteriaMet" in kinds and not terminating:
        conditions.append(new_condition("Complete", *SUCCESS, now))
        status["completionTime"] = stamp(now)
        events.append(("Normal", "Completed", "Job completed"))
    status.update({"active": running, "succeeded": succeeded, "failed": failed,
                   "terminating": terminating + len(deletes),
                   "ready": sum(1 for p in active if is_ready(p) and p not in deletes),
                   "uncountedTerminatedPods": {}})
    if is_indexed(job):
        status["completedIndexes"] = format_indexes(done_indexes)
    for name in ("active", "succeeded", "failed"):
        if not status[name]:
            del status[name]
    if conditions:
        status["conditions"] = conditions
    return JobStep(tuple(creates), tuple(deletes), status, tuple(events), requeue)


def _manage(job: dict, mine: list[dict], active: list[dict], succeeded: int,
            done_indexes: set[int], now: dt.datetime, backoff: tuple[float, float]):
    """manageJob: (indexes to create, pods to delete, seconds to wait before creating)."""
    if (job.get("spec") or {}).get("suspend"):
        return [], sorted(active, key=deletion_rank), None
    completions = completions_of(job)
    if completions is None:
        want = len(active) if succeeded > 0 else parallelism_of(job)
    else:
        want = max(0, min(completions - succeeded, parallelism_of(job)))
    if len(active) > want:
        return [], sorted(active, key=deletion_rank)[:len(active) - want], None
    if len(active) == want:
        return [], [], None
    wait = backoff_remaining(mine, now, *backoff)
    if wait > 0:
        return [], [], wait
    count = want - len(active)
    if not is_indexed(job):
        return [None] * count, [], None
    running = {completion_index(p) for p in active}
    pending = [i for i in range(completions or 0) if i not in done_indexes and i not in running]
    return pending[:count], [], None


def _suspension(conditions: list[dict], suspended: bool, now: dt.datetime
                ) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """The Suspended condition and its Events (JobSuspended / JobResumed)."""
    current = next((c for c in conditions if c.get("type") == "Suspended"), None)
    if suspended and (current is None or current.get("status") != "True"):
        updated = [c for c in conditions if c is not current]
        updated.append(new_condition("Suspended", "JobSuspended", "Job suspended", now))
        return updated, [("Normal", "Suspended", "Job suspended")]
    if not suspended and current is not None and current.get("status") == "True":
        resumed = {**new_condition("Suspended", "JobResumed", "Job resumed", now),
                   "status": "False"}
        return [resumed if c is current else c for c in conditions], [
            ("Normal", "Resumed", "Job resumed")]
    return conditions, []
