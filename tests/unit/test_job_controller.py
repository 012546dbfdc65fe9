"""Jobs: completions and parallelism, failures and back-off, conditions, Indexed, TTL."""
from __future__ import annotations

import datetime as dt

import pytest

from base.waiting import wait_until as wait_for
from controlplane.controllers.job import (
    backoff_remaining,
    format_indexes,
    job_pod,
    parse_indexes,
    plan_job,
)
from controlplane.controllers.job_controller import expiry
from support.controller_harness import InProcessCluster

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
LABELS = {"batch.kubernetes.io/controller-uid": "job-uid", "batch.kubernetes.io/job-name": "pi",
          "controller-uid": "job-uid", "job-name": "pi"}


def job(completions=3, parallelism=2, status=None, **spec) -> dict:
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {"completions": completions, "parallelism": parallelism,
                     "backoffLimit": spec.pop("backoffLimit", 6),
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid":
                                                  "job-uid"}},
                     "template": {"metadata": {"labels": dict(LABELS)},
                                  "spec": {"restartPolicy": spec.pop("restartPolicy", "Never"),
                                           "containers": [{"name": "pi", "image": "perl"}]}},
                     **spec}}
    if status is not None:
        body["status"] = status
    return body


def pod(name: str, phase="Running", ready=True, finished: dt.datetime | None = None,
        index: int | None = None, terminating=False, restarts=0) -> dict:
    obj = job_pod(job(), name, index)
    obj["metadata"]["creationTimestamp"] = "2026-12-05T11:00:00Z"
    state = {"running": {}}
    if finished is not None:
        state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    obj["status"] = {"phase": phase,
                     "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                     "containerStatuses": [{"name": "pi", "state": state,
                                            "restartCount": restarts}]}
    if terminating:
        obj["metadata"]["deletionTimestamp"] = "2026-12-05T11:59:59Z"
    return obj


def done(name: str, minutes_ago: int = 5, index=None) -> dict:
    return pod(name, "Succeeded", False, NOW - dt.timedelta(minutes=minutes_ago), index)


def failed(name: str, seconds_ago: float = 600) -> dict:
    return pod(name, "Failed", False, NOW - dt.timedelta(seconds=seconds_ago))


def types(step) -> list[tuple[str, str]]:
    return [(c["type"], c.get("reason", "")) for c in step.status.get("conditions", [])]


def test_parallelism_pods_start_and_are_labelled_for_kubectl():
    step = plan_job(job(), [], NOW)
    assert step.create == (None, None)
    assert step.status["startTime"] == "2026-12-05T12:00:00Z"
    assert step.status["active"] == 2 and step.status["ready"] == 0
    assert step.status["uncountedTerminatedPods"] == {}
    made = job_pod(job(), "pi-abcde", None)
    assert made["metadata"]["labels"] == LABELS
    owner = made["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", "pi", True)


def test_completions_3_parallelism_2_runs_the_third_pod_last_then_completes():
    step = plan_job(job(), [pod("a"), done("b")], NOW)
    assert step.create == (None,)                   # 1 running + 1 new = 2 remaining
    step = plan_job(job(), [done("a"), done("b"), pod("c")], NOW)
    assert step.create == () and step.status["succeeded"] == 2
    step = plan_job(job(), [done("a"), done("b"), done("c")], NOW)
    assert types(step) == [("SuccessCriteriaMet", "CompletionsReached"),
                           ("Complete", "CompletionsReached")]
    assert step.status["conditions"][1]["message"] == "Reached expected number of succeeded pods"
    assert step.status["completionTime"] == "2026-12-05T12:00:00Z"
    assert step.events == (("Normal", "Completed", "Job completed"),)
    assert "active" not in step.status and step.status["succeeded"] == 3


def test_complete_waits_for_terminating_pods():
    status = {"startTime": "2026-12-05T11:00:00Z"}
    step = plan_job(job(1, 1, status), [done("a"), pod("b", terminating=True)], NOW)
    assert types(step) == [("SuccessCriteriaMet", "CompletionsReached")]
    assert step.events == () and "completionTime" not in step.status
    later = plan_job(job(1, 1, step.status), [done("a")], NOW)
    assert types(later) == [("SuccessCriteriaMet", "CompletionsReached"),
                            ("Complete", "CompletionsReached")]


def test_a_finished_job_is_left_alone():
    finished = plan_job(job(1, 1), [done("a")], NOW).status
    step = plan_job(job(1, 1, finished), [done("a"), failed("b")], NOW)
    assert step.create == () and step.delete == () and step.status == finished


def test_failures_count_and_past_the_backoff_limit_the_job_fails():
    pods = [failed("a"), failed("b"), pod("c")]
    step = plan_job(job(3, 1, backoffLimit=1), pods, NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["c"]
    assert types(step) == [("FailureTarget", "BackoffLimitExceeded")]
    assert step.status["failed"] == 2 and step.status["terminating"] == 1
    later = plan_job(job(3, 1, step.status, backoffLimit=1), pods[:2], NOW)
    assert types(later) == [("FailureTarget", "BackoffLimitExceeded"),
                            ("Failed", "BackoffLimitExceeded")]
    assert later.events == (("Warning", "BackoffLimitExceeded",
                             "Job has reached the specified backoff limit"),)
    assert "completionTime" not in later.status


def test_backoff_limit_zero_fails_on_the_first_failure():
    step = plan_job(job(1, 1, backoffLimit=0), [failed("a")], NOW)
    assert types(step)[-1] == ("Failed", "BackoffLimitExceeded")


def test_restart_policy_on_failure_counts_container_restarts():
    step = plan_job(job(1, 1, backoffLimit=2, restartPolicy="OnFailure"),
                    [pod("a", restarts=2)], NOW)
    assert types(step) == [("FailureTarget", "BackoffLimitExceeded")]


def test_a_replacement_after_failures_waits_an_exponential_back_off():
    assert backoff_remaining([failed("a", 3)], NOW, 10, 360) == pytest.approx(7)
    assert backoff_remaining([failed("a", 30), failed("b", 3)], NOW, 10, 360) == pytest.approx(17)
    assert backoff_remaining([failed("a", 3), done("b", 0)], NOW, 10, 360) == 0
    step = plan_job(job(1, 1), [failed("a", 3)], NOW)
    assert step.create == () and step.requeue_after == pytest.approx(7)
    scaled = plan_job(job(1, 1), [failed("a", 3)], NOW, backoff=(1, 36))
    assert scaled.create == (None,) and scaled.status["failed"] == 1


def test_counters_never_go_down_when_finished_pods_are_deleted():
    step = plan_job(job(3, 1, {"succeeded": 2, "failed": 1,
                               "startTime": "2026-12-05T11:00:00Z"}), [], NOW)
    assert (step.status["succeeded"], step.status["failed"], step.create) == (2, 1, (None,))


def test_scale_down_of_parallelism_deletes_the_least_valuable_pods():
    pods = [pod("a"), pod("b", ready=False)]
    step = plan_job(job(5, 1), pods, NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["b"]


def test_work_queue_job_without_completions_finishes_after_one_success():
    step = plan_job(job(None, 2), [done("a"), pod("b")], NOW)
    assert step.create == () and types(step) == []
    step = plan_job(job(None, 2), [done("a"), done("b")], NOW)
    assert types(step)[-1] == ("Complete", "CompletionsReached")


def test_active_deadline_fails_the_job():
    status = {"startTime": "2026-12-05T11:59:00Z"}
    step = plan_job(job(1, 1, status, activeDeadlineSeconds=30), [pod("a")], NOW)
    assert types(step) == [("FailureTarget", "DeadlineExceeded")]
    waiting = plan_job(job(1, 1, status, activeDeadlineSeconds=90), [pod("a")], NOW)
    assert waiting.requeue_after == pytest.approx(30)


def test_suspend_deletes_running_pods_and_resume_restarts_the_clock():
    step = plan_job(job(2, 2, suspend=True), [pod("a"), pod("b")], NOW)
    assert len(step.delete) == 2 and types(step) == [("Suspended", "JobSuspended")]
    assert step.events == (("Normal", "Suspended", "Job suspended"),)
    resumed = plan_job(job(2, 2, step.status), [], NOW + dt.timedelta(minutes=1))
    assert resumed.create == (None, None) and types(resumed) == [("Suspended", "JobResumed")]
    assert resumed.status["conditions"][0]["status"] == "False"
    assert resumed.status["startTime"] == "2026-12-05T12:01:00Z"


def test_indexed_jobs_hand_out_each_index_once():
    indexed = job(4, 2, completionMode="Indexed")
    step = plan_job(indexed, [done("pi-0-x", index=0), pod("pi-2-y", index=2)], NOW)
    assert step.create == (1,) and step.status["completedIndexes"] == "0"
    made = job_pod(indexed, "pi-1-abcde", 1)
    assert made["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert made["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert made["spec"]["hostname"] == "pi-1"
    assert made["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {
        "fieldRef": {"fieldPath":
                     "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    finished = plan_job(indexed, [done(f"pi-{i}", index=i) for i in range(4)], NOW)
    assert finished.status["completedIndexes"] == "0-3" and types(finished)[-1][0] == "Complete"


def test_index_ranges_format_as_upstream():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes(set()) == "" and parse_indexes("") == set()


def test_ttl_after_finished_counts_from_completion():
    finished = job(1, 1, plan_job(job(1, 1), [done("a")], NOW).status,
                   ttlSecondsAfterFinished=100)
    assert expiry(finished) == NOW + dt.timedelta(seconds=100)
    assert expiry(job(1, 1, ttlSecondsAfterFinished=100)) is None


# --- in a running control plane (API server, controllers, kubelets; fake runtime) ---------

@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def manifest(completions=3, parallelism=2, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi",
                                                                   "namespace": "default"},
            "spec": {"completions": completions, "parallelism": parallelism, **spec,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "pi", "image": "perl"}]}}}}


def running(cluster) -> list[str]:
    return sorted(p["metadata"]["name"] for p in cluster.pods("job-name=pi")
                  if p["status"].get("phase") == "Running")


def finish_one(cluster, code: int) -> None:
    name = wait_for("a running pod", lambda: running(cluster))[0]
    wait_for("its container", lambda: cluster.runtime.running("default", name))
    cluster.runtime.exit_container("default", name, "pi", code)
    wait_for(f"{name} to finish", lambda: name not in running(cluster))


def test_completions_3_parallelism_2_completes_with_conditions_and_events(cluster):
    cluster.client.create("jobs", manifest())
    wait_for("2 running pods", lambda: len(running(cluster)) == 2)
    pod = cluster.pods("job-name=pi")[0]
    job = cluster.get("jobs", "pi")
    selector = job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"]
    assert pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == selector
    assert pod["metadata"]["labels"]["job-name"] == "pi"
    for _ in range(3):
        assert len(running(cluster)) <= 2
        finish_one(cluster, 0)

    def complete():
        found = cluster.get("jobs", "pi")
        return found if any(c["type"] == "Complete" and c["status"] == "True"
                            for c in (found.get("status") or {}).get("conditions") or []) \
            else None
    status = wait_for("the Complete condition", complete, 10)["status"]
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    assert status["succeeded"] == 3 and "active" not in status and status["completionTime"]

    def reasons():           # the recorder writes Events in the background
        found = [e["reason"] for e in cluster.client.list("events", "default")[0]
                 if e["involvedObject"]["kind"] == "Job"]
        return found if "Completed" in found else None
    assert wait_for("the Completed Event", reasons).count("SuccessfulCreate") == 3


def test_backoff_limit_0_fails_on_the_first_failed_pod(cluster):
    cluster.client.create("jobs", manifest(2, 1, backoffLimit=0))
    finish_one(cluster, 1)

    def failed():
        conditions = (cluster.get("jobs", "pi").get("status") or {}).get("conditions") or []
        return [(c["type"], c["reason"]) for c in conditions] if any(
            c["type"] == "Failed" for c in conditions) else None
    assert wait_for("the Failed condition", failed, 10) == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert cluster.get("jobs", "pi")["status"]["failed"] == 1
    assert len(cluster.pods("job-name=pi")) == 1                  # no replacement
