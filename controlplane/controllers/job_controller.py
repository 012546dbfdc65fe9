"""The Job controller and the TTL-after-finished controller: they act on job.py.

The Job controller syncs one Job at a time: it creates and deletes the pods
`plan_job` asks for (named `<job>-<5 chars>`, or `<job>-<index>-<5 chars>`
for Indexed Jobs; Events "Created pod: X" / "Deleted pod: X"), writes the
status when it changed, records the Job's Events (Completed,
BackoffLimitExceeded, Suspended, ...) and comes back when a back-off or an
active deadline ends.  Creations and deletions the cache has not shown yet
are waited for, as for ReplicaSets.

The TTL controller deletes a finished Job `ttlSecondsAfterFinished` after
its Complete or Failed condition (its pods follow through the garbage
collector), as upstream's ttlafterfinished controller.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from base.kube.client import ApiError
from controlplane.controllers import job as jobs
from controlplane.controllers.base import Controller
from controlplane.controllers.naming import generated_name
from controlplane.controllers.objects import (
    condition,
    controller_ref,
    is_terminating,
    key_of,
    parse_time,
)
from controlplane.controllers.podtemplates import status_patch
from controlplane.controllers.replicaset import Expectations
from controlplane.events import NORMAL, WARNING

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobController(Controller):
    name = "job"
    component = "job-controller"
    reads = ("jobs", "pods")

    def __init__(self, client, informers, recorder=None, *, time_factor: float = 1.0,
                 clock: Clock = utc_now):
        super().__init__(client, informers, recorder)
        self.expectations = Expectations()
        self.backoff = (jobs.BACKOFF_SECONDS * time_factor, jobs.BACKOFF_MAX_SECONDS * time_factor)
        self.clock = clock
        self.watch("jobs", self._on_job)
        self.watch("pods", self._on_pod)

    def _on_job(self, kind: str, job: dict, old: dict | None) -> None:
        if kind == "DELETED":
            self.expectations.forget(key_of(job))
        self.queue.add(key_of(job))

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return
        key = f"{pod['metadata']['namespace']}/{ref['name']}"
        if kind == "ADDED":
            self.expectations.observe_create(key, pod["metadata"]["name"])
        if kind == "DELETED" or is_terminating(pod):
            self.expectations.observe_delete(key, pod["metadata"]["name"])
        self.queue.add(key)

    def reconcile(self, key: str) -> None:
        job = self.get_cached("jobs", key)
        if job is None or is_terminating(job):
            return
        if not self.expectations.satisfied(key):
            self.queue.add_after(key, 0.2)
            return
        namespace = job["metadata"]["namespace"]
        pods = [p for p in self.cached("pods") if p["metadata"].get("namespace") == namespace]
        step = jobs.plan_job(job, pods, self.clock(), backoff=self.backoff)
        base = job["metadata"]["name"]
        made = [(generated_name(base if index is None else f"{base}-{index}"), index)
                for index in step.create]
        if made or step.delete:
            self.expectations.expect(key, {name for name, _ in made},
                                     {p["metadata"]["name"] for p in step.delete})
        try:
            for pod in step.delete:
                self.delete_pod(job, pod)
            for name, index in made:
                self.create_pod(job, jobs.job_pod(job, name, index))
        except ApiError:
            self.expectations.forget(key)
            raise
        patch = status_patch(job.get("status"), step.status)
        if patch:
            self.client.patch("jobs", base, {"status": patch}, namespace, subresource="status")
        for kind, reason, message in step.events:
            self.recorder.event(job, NORMAL if kind == "Normal" else WARNING, reason, message)
        if step.requeue_after is not None:
            self.queue.add_after(key, step.requeue_after + 0.05)



def expiry(job: dict) -> dt.datetime | None:
    """When a finished Job with ttlSecondsAfterFinished may be deleted (else None)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = jobs.finished_condition(job)
    if ttl is None or finished is None:
        return None
    at = parse_time((job.get("status") or {}).get("completionTime")) or parse_time(
        (condition(job, finished) or {}).get("lastTransitionTime"))
    return None if at is None else at + dt.timedelta(seconds=int(ttl))


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    component = "ttl-after-finished-controller"
    reads = ("jobs",)

    def __init__(self, client, informers, recorder=None, *, clock: Clock = utc_now):
        super().__init__(client, informers, recorder)
        self.clock = clock
        self.watch("jobs", lambda kind, job, old: kind != "DELETED" and self.queue.add(
            key_of(job)))

    def reconcile(self, key: str) -> None:
        job = self.get_cached("jobs", key)
        if job is None or is_terminating(job):
            return
        at = expiry(job)
        if at is None:
            return
        left = (at - self.clock()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:         # the uid must still be the one that finished (a new Job may share the name)
            live = self.client.get("jobs", job["metadata"]["name"], job["metadata"]["namespace"])
            if live["metadata"].get("uid") == job["metadata"].get("uid") and expiry(live):
                self.client.delete("jobs", job["metadata"]["name"], job["metadata"]["namespace"])
        except ApiError as err:
            if not err.not_found:
                raise
