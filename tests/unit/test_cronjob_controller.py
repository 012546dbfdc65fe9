"""CronJobs: schedules, Job names, concurrency policies, missed times, history, a clock."""
from __future__ import annotations

import datetime as dt

import pytest

from controlplane.controllers.cronjob import (
    CronJobController,
    job_name,
    most_recent,
    plan_cronjob,
    schedule_of,
)

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def cronjob(schedule="*/5 * * * *", status=None, **spec) -> dict:
    body = {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": "2026-12-05T11:58:00Z"},
            "spec": {"schedule": schedule,
                     "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                     "spec": {"template": {"spec": {
                                         "restartPolicy": "OnFailure",
                                         "containers": [{"name": "hello",
                                                         "image": "busybox"}]}}}},
                     **spec}}
    if status is not None:
        body["status"] = status
    return body


def job(name: str, finished: str | None = None, start="2026-12-05T12:00:00Z") -> dict:
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                        "ownerReferences": [{"kind": "CronJob", "name": "hello",
                                             "uid": "cj-uid", "controller": True}]},
           "status": {"startTime": start}}
    if finished:
        obj["status"]["conditions"] = [{"type": finished, "status": "True"}]
        if finished == "Complete":
            obj["status"]["completionTime"] = start.replace("00Z", "30Z")
    return obj


def ref(name: str) -> dict:
    return {"kind": "Job", "namespace": "default", "name": name, "uid": f"uid-{name}",
            "apiVersion": "batch/v1", "resourceVersion": ""}


def reasons(step) -> list[str]:
    return [e[1] for e in step.events]


# --- schedules ---------------------------------------------------------------------

@pytest.mark.parametrize("text, after, want", [
    ("*/5 * * * *", "2026-12-05T12:03:10", "2026-12-05T12:05:00"),
    ("0 * * * *", "2026-12-05T12:00:00", "2026-12-05T13:00:00"),
    ("30 6-16/4 * * 1-5", "2026-12-05T12:00:00", "2026-12-07T06:30:00"),   # Sat -> Mon
    ("0 0 1 JAN *", "2026-12-05T12:00:00", "2027-01-01T00:00:00"),
    ("0 9 * * MON,fri", "2026-12-05T12:00:00", "2026-12-07T09:00:00"),
    ("0 0 13 * 5", "2026-12-05T12:00:00", "2026-12-11T00:00:00"),        # 13th OR Friday
    ("0 0 */10 * *", "2026-12-05T12:00:00", "2026-12-11T00:00:00"),      # step: no star
    ("@hourly", "2026-12-05T12:59:59", "2026-12-05T13:00:00"),
    ("@weekly", "2026-12-05T12:00:00", "2026-12-06T00:00:00"),
    ("@every 90s", "2026-12-05T12:00:00.500000", "2026-12-05T12:01:30"),
])
def test_next_times_follow_cron_syntax(text, after, want):
    assert schedule_of(cronjob(text)).next_after(at(after)) == at(want)


def test_time_zone_schedules_in_local_time():
    schedule = schedule_of(cronjob("0 9 * * *", timeZone="Europe/Berlin"))
    assert schedule.next_after(at("2026-12-05T12:00:00")) == at("2026-12-06T08:00:00")


@pytest.mark.parametrize("text, message", [
    ("* * * *", "expected exactly 5 fields, found 4"),
    ("61 * * * *", "end of range (61) above maximum (59)"),
    ("x * * * *", "failed to parse int from x"),
])
def test_a_bad_schedule_is_an_event_saying_what_is_wrong(text, message):
    step = plan_cronjob(cronjob(text), [], at("2026-12-05T12:00:00"))
    assert step.create is None and step.requeue_after is None
    [(kind, reason, said)] = step.events
    assert (kind, reason) == ("Warning", "UnparseableSchedule") and message in said


def test_an_impossible_date_never_fires():
    assert schedule_of(cronjob("0 0 30 2 *")).next_after(at("2026-12-05T12:00:00")) is None
    assert plan_cronjob(cronjob("0 0 30 2 *"), [], at("2026-12-05T12:00:00")).create is None


# --- the controller's decisions ----------------------------------------------------

def test_the_job_of_a_scheduled_minute_is_named_after_it_and_owned():
    step = plan_cronjob(cronjob(), [], at("2026-12-05T12:00:20"))
    assert step.create["metadata"]["name"] == "hello-29941200" == job_name(
        cronjob(), at("2026-12-05T12:00:00"))
    assert step.create["metadata"]["labels"] == {"team": "a"}
    assert step.create["metadata"]["annotations"] == {
        "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-12-05T12:00:00Z"}
    owner = step.create["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "hello", True)
    assert step.create["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    assert step.status["lastScheduleTime"] == "2026-12-05T12:00:00Z"
    assert step.requeue_after == pytest.approx(280.1)


def test_scheduled_timestamp_is_written_in_the_cronjobs_time_zone():
    step = plan_cronjob(cronjob("0 13 * * *", timeZone="Europe/Berlin"), [],
                        at("2026-12-05T12:00:20"))
    assert step.create["metadata"]["annotations"][
        "batch.kubernetes.io/cronjob-scheduled-timestamp"] == "2026-12-05T13:00:00+01:00"


def test_nothing_before_the_first_time_and_each_time_once():
    assert plan_cronjob(cronjob(), [], at("2026-12-05T11:59:00")).create is None
    ran = {"lastScheduleTime": "2026-12-05T12:00:00Z", "active": [ref("hello-29941200")]}
    step = plan_cronjob(cronjob(status=ran), [job("hello-29941200")], at("2026-12-05T12:03:00"))
    assert step.create is None and step.events == ()
    later = plan_cronjob(cronjob(status=ran), [job("hello-29941200")], at("2026-12-05T12:05:01"))
    assert later.create["metadata"]["name"] == "hello-29941205"          # Allow: both run
    assert later.status["active"] == [ref("hello-29941200")]


def test_forbid_skips_while_a_job_runs_and_replace_deletes_it():
    ran = {"lastScheduleTime": "2026-12-05T12:00:00Z", "active": [ref("hello-29941200")]}
    running = [job("hello-29941200")]
    forbid = plan_cronjob(cronjob(status=ran, concurrencyPolicy="Forbid"), running,
                          at("2026-12-05T12:05:01"))
    assert forbid.create is None and reasons(forbid) == ["JobAlreadyActive"]
    replace = plan_cronjob(cronjob(status=ran, concurrencyPolicy="Replace"), running,
                           at("2026-12-05T12:05:01"))
    assert [(j["metadata"]["name"], why) for j, why in replace.delete] == [
        ("hello-29941200", "replace")]
    assert replace.create["metadata"]["name"] == "hello-29941205"
    assert "active" not in replace.status


def test_suspend_starts_nothing():
    step = plan_cronjob(cronjob(suspend=True), [], at("2026-12-05T12:30:00"))
    assert step.create is None and step.requeue_after is None


def test_finished_jobs_leave_active_and_count_as_successes():
    ran = {"lastScheduleTime": "2026-12-05T12:00:00Z", "active": [ref("hello-29941200")]}
    step = plan_cronjob(cronjob(status=ran), [job("hello-29941200", "Complete")],
                        at("2026-12-05T12:01:00"))
    assert "active" not in step.status
    assert step.status["lastSuccessfulTime"] == "2026-12-05T12:00:30Z"
    assert step.events == (("Normal", "SawCompletedJob",
                            "Saw completed job: hello-29941200, condition: Complete"),)


def test_unexpected_and_missing_jobs_are_reported():
    ran = {"lastScheduleTime": "2026-12-05T12:00:00Z", "active": [ref("hello-29941200")]}
    step = plan_cronjob(cronjob(status=ran), [job("stray")], at("2026-12-05T12:01:00"),
                        missing=frozenset({"uid-hello-29941200"}))
    assert reasons(step) == ["UnexpectedJob", "MissingJob"]
    assert "active" not in step.status
    kept = plan_cronjob(cronjob(status=ran), [], at("2026-12-05T12:01:00"))   # cache behind
    assert kept.status["active"] == [ref("hello-29941200")]


def test_only_the_latest_missed_time_starts_and_old_ones_are_reported():
    since = {"lastScheduleTime": "2026-12-04T00:00:00Z"}
    step = plan_cronjob(cronjob(status=since), [], at("2026-12-05T12:03:00"))
    assert step.create["metadata"]["name"] == job_name(cronjob(), at("2026-12-05T12:00:00"))
    assert reasons(step) == ["TooManyMissedTimes"]
    _, latest, missed = most_recent(cronjob(status=since), schedule_of(cronjob()),
                                    at("2026-12-05T12:03:00"), False)
    assert latest == at("2026-12-05T12:00:00") and missed == (36 * 60 - 2) // 5 + 1


def test_a_time_past_the_starting_deadline_is_missed():
    step = plan_cronjob(cronjob("0 * * * *", startingDeadlineSeconds=3600,
                                status={"lastScheduleTime": "2026-12-05T10:00:00Z"}), [],
                        at("2026-12-05T12:20:00"))
    assert step.create["metadata"]["name"] == job_name(cronjob(), at("2026-12-05T12:00:00"))
    late = plan_cronjob(cronjob("0 * * * *", startingDeadlineSeconds=60,
                                status={"lastScheduleTime": "2026-12-05T11:00:00Z"}), [],
                        at("2026-12-05T12:20:00"))
    assert late.create is None and reasons(late) == []     # nothing left inside the deadline
    missed = plan_cronjob(cronjob("0 * * * *", startingDeadlineSeconds=60,
                                  status={"lastScheduleTime": "2026-12-05T11:00:00Z"}), [],
                          at("2026-12-05T12:00:50"))
    assert missed.create is not None


def test_history_limits_delete_the_oldest_finished_jobs():
    jobs = [job(f"hello-{i}", "Complete", f"2026-12-05T1{i}:00:00Z") for i in range(5)] + [
        job("hello-f1", "Failed", "2026-12-05T10:30:00Z"),
        job("hello-f2", "Failed", "2026-12-05T11:30:00Z")]
    step = plan_cronjob(cronjob(suspend=True), jobs, at("2026-12-05T16:00:00"))
    assert [(j["metadata"]["name"], why) for j, why in step.delete] == [
        ("hello-0", "history"), ("hello-1", "history"), ("hello-f1", "history")]
    kept = plan_cronjob(cronjob(suspend=True, successfulJobsHistoryLimit=5,
                                failedJobsHistoryLimit=2), jobs, at("2026-12-05T16:00:00"))
    assert kept.delete == ()


def test_an_unknown_time_zone_is_an_event_not_a_crash():
    assert reasons(plan_cronjob(cronjob(timeZone="Mars/Olympus"), [],
                                at("2026-12-05T12:00:00"))) == ["UnknownTimeZone"]


# --- the controller's I/O, with a stub API and a moved clock ----------------------------

class StubInformer:
    def __init__(self, *objects):
        self.objects = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o
                        for o in objects}
        self.handlers = []

    def items(self):
        return list(self.objects.values())

    def get(self, key):
        return self.objects.get(key)


class StubApi:
    def __init__(self):
        self.calls = []

    def create(self, resource, obj, namespace=None):
        self.calls.append(("create", resource, obj["metadata"]["name"]))
        made = {**obj, "metadata": {**obj["metadata"], "uid": "new-uid",
                                    "resourceVersion": "7"}}
        return made

    def patch(self, resource, name, patch, namespace=None, subresource=None, kind="merge"):
        self.calls.append(("patch", resource, name, subresource, patch))

    def delete(self, resource, name, namespace=None, grace_period=None):
        self.calls.append(("delete", resource, name))

    def find(self, resource, name, namespace=None):
        return None


class Recorded:
    def __init__(self):
        self.events = []

    def event(self, obj, kind, reason, message, **_):
        self.events.append((kind, reason, message))


def test_the_controller_creates_the_job_and_records_it_in_status():
    api, recorder = StubApi(), Recorded()
    old = job("hello-29941195", "Complete", "2026-12-05T11:55:00Z")
    informers = {"cronjobs": StubInformer(cronjob(status={"active": [ref("hello-29941195")]})),
                 "jobs": StubInformer(old)}
    controller = CronJobController(api, informers, recorder,
                                   clock=lambda: at("2026-12-05T12:00:05"))
    controller.reconcile("default/hello")
    assert api.calls[0] == ("create", "jobs", "hello-29941200")
    _, _, _, subresource, patch = api.calls[1]
    assert subresource == "status"
    assert patch["status"]["lastScheduleTime"] == "2026-12-05T12:00:00Z"
    assert patch["status"]["lastSuccessfulTime"] == "2026-12-05T11:55:30Z"
    assert [r["name"] for r in patch["status"]["active"]] == ["hello-29941200"]
    assert patch["status"]["active"][0]["uid"] == "new-uid"
    assert [e[1] for e in recorder.events] == ["SawCompletedJob", "SuccessfulCreate"]
    assert recorder.events[1][2] == "Created job hello-29941200"
    assert len(controller.queue) == 1                     # back at the next scheduled time
