"""A pod worker finishes a pod's deletion even when the API server cannot be
reached at that moment (a node cut off from the VPC), as the kubelet's status
manager does: the DELETE is retried until it is done, not given up."""
from __future__ import annotations

import pytest

from base.kube.client import ApiError
from controlplane.kubelet import podworker
from controlplane.kubelet.podworker import PodWorker


class FlakyClient:
    """delete() fails with the given errors first, then succeeds."""

    def __init__(self, *failures: Exception):
        self.failures = list(failures)
        self.deletes: list[tuple] = []

    def delete(self, resource, name, namespace, grace_period=None):
        self.deletes.append((resource, name, namespace, grace_period))
        if self.failures:
            raise self.failures.pop(0)


class Runtime:
    def __init__(self):
        self.removed: list[tuple[str, str]] = []

    def remove_pod(self, namespace, name):
        self.removed.append((namespace, name))


class Kubelet:
    host_ip = "172.31.0.11"

    def __init__(self, client):
        self.client = client
        self.runtime = Runtime()


def terminating_pod() -> dict:
    return {"metadata": {"name": "web-1", "namespace": "default", "uid": "u-1",
                         "deletionTimestamp": "2026-12-06T10:00:00Z",
                         "deletionGracePeriodSeconds": 0},
            "spec": {"containers": []}}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(podworker, "SETUP_RETRY", 0.01)


def test_an_unreachable_api_server_delays_the_deletion_but_does_not_lose_it():
    client = FlakyClient(ConnectionRefusedError(111, "Connection refused"),
                         TimeoutError("timed out"),
                         ApiError(503, "ServiceUnavailable", "try again", "DELETE", "/pods"))
    kubelet = Kubelet(client)
    worker = PodWorker(kubelet, terminating_pod())
    worker._terminate()
    assert kubelet.runtime.removed == [("default", "web-1")]      # the host is gone once
    assert client.deletes == [("pods", "web-1", "default", 0)] * 4   # 3 failures, then done


def test_a_pod_already_deleted_ends_the_worker_without_retrying():
    client = FlakyClient(ApiError(404, "NotFound", "pods \"web-1\" not found", "DELETE", "/"))
    worker = PodWorker(Kubelet(client), terminating_pod())
    worker._terminate()
    assert len(client.deletes) == 1


def test_a_stopping_kubelet_stops_retrying():
    client = FlakyClient(*[ConnectionRefusedError(111, "refused")] * 1000)
    worker = PodWorker(Kubelet(client), terminating_pod())
    worker._teardown()
    worker.request_stop()
    worker._finish_deletion()
    assert len(client.deletes) == 0


def test_a_status_write_that_cannot_reach_the_api_is_retried_soon_and_the_worker_lives():
    """A settled pod sleeps until woken (RESYNC); a failed status write must not wait that
    long, and a socket error must not end the worker (a node cut off, then back)."""
    kubelet = Kubelet(FlakyClient())
    kubelet.done = []
    kubelet.worker_done = kubelet.done.append
    pod = terminating_pod()
    del pod["metadata"]["deletionTimestamp"]
    worker = PodWorker(kubelet, pod)
    worker._created = True
    ticks = []

    def tick():
        ticks.append(len(ticks))
        if len(ticks) <= 2:
            raise (ConnectionRefusedError(111, "Connection refused") if len(ticks) == 1
                   else ApiError(503, "ServiceUnavailable", "try again", "PATCH", "/pods"))
        worker.request_stop()
    worker._tick = tick
    worker._next_wait = lambda: podworker.RESYNC
    worker.start()
    worker.thread.join(3 * podworker.STATUS_RETRY + 2)
    assert not worker.thread.is_alive(), "a failed write waited for the resync period"
    assert ticks == [0, 1, 2] and kubelet.done == [worker]
