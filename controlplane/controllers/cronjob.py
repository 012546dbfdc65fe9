"""The CronJob controller: a Job per scheduled time, as upstream's cronjob_controllerv2.go.

`plan_cronjob` is pure (the time is passed in, so tests move a clock):

- the Job of a scheduled time is named `<cronjob>-<minutes since the epoch>`
  (so it is made once, whatever happens), carries the template's labels and
  annotations plus `batch.kubernetes.io/cronjob-scheduled-timestamp`, and
  is owned by the CronJob;
- only the most recent missed time is started; one older than
  startingDeadlineSeconds is a MissSchedule Event instead; more than 100
  missed times also a TooManyMissedTimes Event;
- concurrencyPolicy Allow starts regardless, Forbid skips while a Job runs
  (JobAlreadyActive), Replace deletes the running Jobs first; suspend starts
  nothing;
- status.active lists the running Jobs (finished ones leave it with a
  SawCompletedJob Event, vanished ones with MissingJob),
  lastScheduleTime / lastSuccessfulTime follow;
- finished Jobs beyond successfulJobsHistoryLimit (3) and
  failedJobsHistoryLimit (1) are deleted, oldest first.
The controller comes back 100 ms after the next scheduled time.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from base.jsoncopy import json_copy
from base.kube.client import ApiError
from controlplane.api import cron
from controlplane.controllers.base import Controller
from controlplane.controllers.job import finished_condition, stamp
from controlplane.controllers.objects import (
    controller_ref,
    is_terminating,
    key_of,
    owned_by,
    owner_reference,
    parse_time,
)
from controlplane.controllers.podtemplates import status_patch
from controlplane.events import NORMAL, WARNING

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
UNKNOWN_ZONE = "unknown time zone"
MANY_MISSED = 100
REQUEUE_PAD = 0.1


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule in its time zone (spec.timeZone, a TZ= prefix, or UTC)."""

    times: cron.Schedule
    tz: dt.tzinfo

    def next_after(self, when: dt.datetime) -> dt.datetime | None:
        return self.times.next(when.astimezone(self.tz))


def schedule_of(cronjob: dict) -> Schedule:
    """The CronJob's schedule; cron.CronError says why there is none."""
    spec = cronjob.get("spec") or {}
    times = cron.parse(spec.get("schedule") or "")
    zone = spec.get("timeZone") or times.zone
    if not zone:
        return Schedule(times, dt.timezone.utc)
    try:
        return Schedule(times, ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise cron.CronError(f"{UNKNOWN_ZONE} {zone}") from err


def job_name(cronjob: dict, scheduled: dt.datetime) -> str:
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def rfc3339(when: dt.datetime) -> str:
    """Go's time.RFC3339 in the time's own zone: `Z` for UTC, else `+01:00`."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S%z")
    if text.endswith("+0000") and when.utcoffset() == dt.timedelta(0):
        return text[:-5] + "Z"
    return text[:-2] + ":" + text[-2:]


def job_for(cronjob: dict, scheduled: dt.datetime, schedule: Schedule) -> dict:
    """getJobFromTemplate2: the Job of one scheduled time."""
    template = json_copy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    meta = template.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    annotations[SCHEDULED_ANNOTATION] = rfc3339(scheduled.astimezone(schedule.tz))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(cronjob, scheduled),
                         "namespace": cronjob["metadata"]["namespace"],
                         "labels": dict(meta.get("labels") or {}), "annotations": annotations,
                         "ownerReferences": [owner_reference(cronjob)]},
            "spec": template.get("spec") or {}}


def job_reference(job: dict) -> dict:
    meta = job["metadata"]
    return {"kind": "Job", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta.get("uid", ""), "apiVersion": "batch/v1",
            "resourceVersion": meta.get("resourceVersion", "")}


def most_recent(cronjob: dict, schedule: Schedule, now: dt.datetime, with_deadline: bool
                ) -> tuple[dt.datetime, dt.datetime | None, int]:
    """mostRecentScheduleTime: (earliest time considered, latest missed time, how many)."""
    status, spec = cronjob.get("status") or {}, cronjob.get("spec") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(
        cronjob["metadata"].get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if with_deadline and deadline is not None:
        earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
    first = schedule.next_after(earliest)
    if first is None or now < first:
        return earliest, None, 0
    second = schedule.next_after(first)
    if second is None or now < second:
        return earliest, first, 1
    interval = max(1, round((second - first).total_seconds()))
    missed = int((now - first).total_seconds()) // interval + 1
    # Jump close to now (an hourly CronJob down for a month is ~700 times), then walk.
    t = schedule.next_after(first + dt.timedelta(seconds=(missed - 2) * interval))
    latest = None
    while t is not None and t <= now:
        latest, t = t, schedule.next_after(t)
    return earliest, latest, missed


def next_run_in(cronjob: dict, schedule: Schedule, now: dt.datetime) -> float | None:
    """Seconds until 100 ms after the next scheduled time (nextScheduleTimeDuration)."""
    earliest, latest, _ = most_recent(cronjob, schedule, now, False)
    following = schedule.next_after(latest or earliest)
    if following is None:
        return None
    return max(0.0, (following - now).total_seconds()) + REQUEUE_PAD


@dataclass(frozen=True)
class CronStep:
    create: dict | None = None
    delete: tuple[tuple[dict, str], ...] = ()         # (job, "replace" | "history")
    status: dict = field(default_factory=dict)
    events: tuple[tuple[str, str, str], ...] = ()     # (type, reason, message)
    requeue_after: float | None = None


def plan_cronjob(cronjob: dict, jobs: list[dict], now: dt.datetime,
                 missing: frozenset[str] = frozenset()) -> CronStep:
    """`jobs`: the CronJob's own Jobs (cache); `missing`: uids of active Jobs that the
    API confirmed gone."""
    spec = cronjob.get("spec") or {}
    status = json_copy(cronjob.get("status") or {})
    active = list(status.get("active") or [])
    events: list[tuple[str, str, str]] = []
    known = {j["metadata"].get("uid") for j in jobs}
    for job in sorted(jobs, key=lambda j: j["metadata"]["name"]):
        uid, name = job["metadata"].get("uid"), job["metadata"]["name"]
        listed = any(ref.get("uid") == uid for ref in active)
        finished = finished_condition(job)
        if not listed and not finished:
            events.append(("Warning", "UnexpectedJob",
                           f"Saw a job that the controller did not create or forgot: {name}"))
        elif listed and finished:
            active = [ref for ref in active if ref.get("uid") != uid]
            events.append(("Normal", "SawCompletedJob",
                           f"Saw completed job: {name}, condition: {finished}"))
        if finished == "Complete":
            done = (job.get("status") or {}).get("completionTime")
            if done and (not status.get("lastSuccessfulTime") or
                         parse_time(done) > parse_time(status["lastSuccessfulTime"])):
                status["lastSuccessfulTime"] = done
    for ref in list(active):
        if ref.get("uid") not in known and ref.get("uid") in missing:
            events.append(("Normal", "MissingJob", f"Active job went missing: {ref.get('name')}"))
            active = [r for r in active if r is not ref]
    deletes = _history(spec, jobs)
    create, requeue = None, None
    try:
        schedule = schedule_of(cronjob)
    except cron.CronError as err:
        if str(err).startswith(UNKNOWN_ZONE):
            events.append(("Warning", "UnknownTimeZone",
                           f"invalid timeZone: {spec['timeZone']!r}: {err}"))
        else:
            events.append(("Warning", "UnparseableSchedule",
                           f"unparseable schedule: {spec.get('schedule', '')!r} : {err}"))
        schedule = None
    if schedule is not None and not spec.get("suspend"):
        requeue = next_run_in(cronjob, schedule, now)
        _, scheduled, missed = most_recent(cronjob, schedule, now, True)
        if scheduled is not None:
            if missed > MANY_MISSED:
                events.append(("Warning", "TooManyMissedTimes", "too many missed start times. "
                               "Set or decrease .spec.startingDeadlineSeconds or check clock "
                               "skew"))
            why_not = _why_not_start(cronjob, scheduled, active, now)
            if why_not is not None:
                events += [why_not] if why_not[1] else []
            else:
                if (spec.get("concurrencyPolicy") or "Allow") == "Replace":
                    running = {ref.get("uid") for ref in active}
                    deletes = [(j, "replace") for j in jobs
                               if j["metadata"].get("uid") in running] + [
                        d for d in deletes if d[0]["metadata"].get("uid") not in running]
                    active = []
                create = job_for(cronjob, scheduled, schedule)
                status["lastScheduleTime"] = stamp(scheduled)
                requeue = next_run_in({**cronjob, "status": status}, schedule, now)
    if active:
        status["active"] = active
    else:
        status.pop("active", None)
    return CronStep(create, tuple(deletes), status, tuple(events), requeue)


def _why_not_start(cronjob: dict, scheduled: dt.datetime, active: list[dict],
                   now: dt.datetime) -> tuple[str, str, str] | None:
    """None when the Job of `scheduled` is to be started; else the Event that says why
    not (an empty reason: nothing to say, it was started already)."""
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
        return ("Warning", "MissSchedule", "Missed scheduled time to start a job: "
                + scheduled.astimezone(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000"))
    if any(ref.get("name") == job_name(cronjob, scheduled) for ref in active) or \
            status.get("lastScheduleTime") == stamp(scheduled):
        return ("", "", "")
    if spec.get("concurrencyPolicy") == "Forbid" and active:
        return ("Normal", "JobAlreadyActive", "Not starting job because prior execution is "
                "running and concurrency policy is Forbid")
    return None


def _history(spec: dict, jobs: list[dict]) -> list[tuple[dict, str]]:
    """Finished Jobs beyond the history limits, oldest start first (byJobStartTime)."""
    out = []
    for kind, field_name, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                      ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(field_name, default)
        if limit is None:
            continue
        done = sorted((j for j in jobs if finished_condition(j) == kind),
                      key=lambda j: ((j.get("status") or {}).get("startTime") is None,
                                     (j.get("status") or {}).get("startTime") or "",
                                     j["metadata"]["name"]))
        out += [(j, "history") for j in done[:max(0, len(done) - int(limit))]]
    return out


class CronJobController(Controller):
    name = "cronjob"
    component = "cronjob-controller"
    reads = ("cronjobs", "jobs")

    def __init__(self, client, informers, recorder=None, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        super().__init__(client, informers, recorder)
        self.clock = clock
        self.watch("cronjobs", lambda kind, cj, old: self.queue.add(key_of(cj)))
        self.watch("jobs", self._on_job)

    def _on_job(self, kind: str, job: dict, old: dict | None) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata']['namespace']}/{ref['name']}")

    def reconcile(self, key: str) -> None:
        cronjob = self.get_cached("cronjobs", key)
        if cronjob is None or is_terminating(cronjob):
            return
        namespace = cronjob["metadata"]["namespace"]
        jobs = [j for j in self.cached("jobs")
                if j["metadata"].get("namespace") == namespace and owned_by(j, cronjob)]
        cached = {j["metadata"].get("uid") for j in jobs}
        missing = frozenset(ref.get("uid") for ref in (cronjob.get("status") or {}).get(
            "active") or [] if ref.get("uid") not in cached
            and self.client.find("jobs", ref.get("name", ""), namespace) is None)
        step = plan_cronjob(cronjob, jobs, self.clock(), missing)
        for kind, reason, message in step.events:
            self.recorder.event(cronjob, NORMAL if kind == "Normal" else WARNING, reason,
                                message)
        status = json_copy(step.status)
        for job, _ in step.delete:
            self._delete_job(cronjob, job)
        if step.create is not None:
            made = self._create_job(cronjob, step.create)
            if made is None:
                status = json_copy(cronjob.get("status") or {})   # someone else's Job
            elif not any(r.get("uid") == made["metadata"].get("uid")
                         for r in status.get("active") or []):
                status.setdefault("active", []).append(job_reference(made))
        patch = status_patch(cronjob.get("status"), status)
        if patch:
            self.client.patch("cronjobs", cronjob["metadata"]["name"], {"status": patch},
                              namespace, subresource="status")
        if step.requeue_after is not None:
            self.queue.add_after(key, step.requeue_after)

    def _create_job(self, cronjob: dict, job: dict) -> dict | None:
        try:
            made = self.client.create("jobs", job)
        except ApiError as err:
            if err.status != 409:
                self.recorder.event(cronjob, WARNING, "FailedCreate",
                                    f"Error creating job: {err.message}")
                raise
            made = self.client.get("jobs", job["metadata"]["name"],
                                   job["metadata"]["namespace"])
            return made if owned_by(made, cronjob) else None
        self.recorder.event(cronjob, NORMAL, "SuccessfulCreate",
                            f"Created job {made['metadata']['name']}")
        return made

    def _delete_job(self, cronjob: dict, job: dict) -> None:
        name = job["metadata"]["name"]
        try:
            self.client.delete("jobs", name, job["metadata"]["namespace"])
        except ApiError as err:
            if err.not_found:
                return
            self.recorder.event(cronjob, WARNING, "FailedDelete", f"Deleted job: {err.message}")
            raise
        self.recorder.event(cronjob, NORMAL, "SuccessfulDelete", f"Deleted job {name}")
