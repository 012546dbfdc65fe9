"""The Event recorder: what a component's events become in the API (one Event per
object/reason/message, with a count), and that recording never hurts the caller."""
from __future__ import annotations

import copy
import datetime as dt
import logging
import threading

import pytest

from base.kube.client import ApiError
from base.waiting import wait_until
from controlplane import events as recording
from controlplane.api.events import new_event
from controlplane.events import (
    AGGREGATE_INTERVAL,
    AGGREGATE_MAX_EVENTS,
    NORMAL,
    WARNING,
    EventCorrelator,
    EventRecorder,
    container_path,
    node_reference,
    reference,
)

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
       "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}


class FakeEventsApi:
    """The events endpoint of an API server, in memory; `failures` are raised first, in
    order, one per call."""

    def __init__(self):
        self.stored: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple] = []
        self.failures: list[Exception] = []

    def create(self, resource, obj, namespace=None):
        self._call(("create", resource, namespace, copy.deepcopy(obj)))
        key = (namespace, obj["metadata"]["name"])
        if key in self.stored:
            raise ApiError(409, "AlreadyExists", f"events {key[1]!r} already exists")
        self.stored[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    def patch(self, resource, name, patch, namespace=None, subresource=None, kind="merge"):
        self._call(("patch", resource, namespace, name, dict(patch), kind))
        if (namespace, name) not in self.stored:
            raise ApiError(404, "NotFound", f'events "{name}" not found')
        self.stored[(namespace, name)].update(patch)
        return copy.deepcopy(self.stored[(namespace, name)])

    def _call(self, call: tuple) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api():
    return FakeEventsApi()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def recorder(api, clock):
    rec = EventRecorder(api, "kubelet", "ip-172-31-0-11", clock=clock).start()
    yield rec
    rec.stop(5.0)


def written(rec: EventRecorder) -> None:
    assert rec.flush(10.0), "the recorder did not write its queue"


def test_an_event_is_the_object_reference_source_and_timestamps_kubectl_reads(recorder, api):
    recorder.event(POD, NORMAL, "Started", "Container started",
                   field_path=container_path("nginx"))
    written(recorder)
    [(verb, resource, namespace, event)] = api.calls
    assert (verb, resource, namespace) == ("create", "events", "shop")
    assert event["involvedObject"] == {"kind": "Pod", "apiVersion": "v1", "namespace": "shop",
                                       "name": "web-1", "uid": "u-1", "resourceVersion": "7",
                                       "fieldPath": "spec.containers{nginx}"}
    assert event["metadata"]["name"].startswith("web-1.")
    int(event["metadata"]["name"].split(".", 1)[1], 16)       # <object>.<hex nanoseconds>
    assert event["source"] == {"component": "kubelet", "host": "ip-172-31-0-11"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("kubelet",
                                                                         "ip-172-31-0-11")
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2023-11-14T22:13:20Z"
    assert (event["type"], event["reason"], event["count"]) == ("Normal", "Started", 1)


def test_the_same_event_again_is_one_event_with_a_count_patched(recorder, api, clock):
    message = "Back-off restarting failed container nginx in pod web-1_shop(u-1)"
    for _ in range(3):
        recorder.event(POD, WARNING, "BackOff", message)
        written(recorder)
        clock.now += 7
    [event] = api.stored.values()
    assert event["count"] == 3
    assert event["firstTimestamp"] == "2023-11-14T22:13:20Z"
    assert event["lastTimestamp"] == "2023-11-14T22:13:34Z"
    patches = [c for c in api.calls if c[0] == "patch"]
    assert [(p[3], p[4], p[5]) for p in patches] == [
        (event["metadata"]["name"], {"count": 2, "lastTimestamp": "2023-11-14T22:13:27Z",
                                     "message": message}, "strategic"),
        (event["metadata"]["name"], {"count": 3, "lastTimestamp": "2023-11-14T22:13:34Z",
                                     "message": message}, "strategic")]


def test_another_message_reason_or_object_is_another_event(recorder, api):
    recorder.event(POD, NORMAL, "Killing", "Stopping container nginx")
    recorder.event(POD, NORMAL, "Killing", "Stopping container sidecar")
    recorder.event(POD, NORMAL, "Pulled", "Stopping container nginx")
    recorder.event(node_reference("ip-172-31-0-11"), NORMAL, "Killing", "Stopping container nginx")
    written(recorder)
    assert [c[0] for c in api.calls] == ["create"] * 4
    node_event = api.calls[-1][3]
    # a cluster-scoped object's Events live in "default"; the kubelet names its node by name
    assert api.calls[-1][2] == "default"
    assert node_event["involvedObject"] == {"kind": "Node", "name": "ip-172-31-0-11",
                                            "uid": "ip-172-31-0-11"}


def test_an_expired_event_is_created_again_with_its_count(recorder, api):
    recorder.event(POD, WARNING, "Unhealthy", "Readiness probe failed: refused")
    written(recorder)
    api.stored.clear()                          # the API server's TTL removed it
    recorder.event(POD, WARNING, "Unhealthy", "Readiness probe failed: refused")
    written(recorder)
    assert [c[0] for c in api.calls] == ["create", "patch", "create"]
    [event] = api.stored.values()
    assert event["count"] == 2


def test_ten_messages_for_one_object_and_reason_are_combined_for_ten_minutes(clock):
    correlator = EventCorrelator(clock)

    def correlate(message: str):
        when = dt.datetime.fromtimestamp(clock.now, dt.timezone.utc)
        return correlator.correlate(new_event(reference(POD), WARNING, "Unhealthy", message,
                                              "kubelet", "n1", when))
    results = [correlate(f"Readiness probe failed: try {i}") for i in range(AGGREGATE_MAX_EVENTS)]
    assert all(r.patch is None for r in results)
    assert [r.event["message"] for r in results[:-1]] == [
        f"Readiness probe failed: try {i}" for i in range(AGGREGATE_MAX_EVENTS - 1)]
    combined = results[-1].event
    assert combined["message"] == "(combined from similar events): Readiness probe failed: try 9"
    correlator.update_state(results[-1].key, combined)
    again = correlate("Readiness probe failed: try 10")
    assert again.event["metadata"]["name"] == combined["metadata"]["name"]
    assert again.patch == {"count": 2, "lastTimestamp": combined["lastTimestamp"],
                           "message": "(combined from similar events): Readiness probe failed: "
                                      "try 10"}
    clock.now += AGGREGATE_INTERVAL + 1
    assert correlate("Readiness probe failed: try 11").event["message"] == (
        "Readiness probe failed: try 11")


def test_recording_never_raises_into_or_blocks_the_caller(api, clock, caplog):
    idle = EventRecorder(api, "replicaset-controller", clock=clock, queue_size=2)   # not started
    with caplog.at_level(logging.WARNING, logger="controlplane.events"):
        idle.event(None, NORMAL, "SuccessfulCreate", "Created pod: x")
        idle.event({"metadata": "not a map"}, NORMAL, "SuccessfulCreate", "Created pod: x")
        for i in range(4):
            idle.event(POD, NORMAL, "SuccessfulCreate", f"Created pod: web-{i}")
    assert idle.dropped == 2
    assert sum("too many queued events" in r.message for r in caplog.records) == 1
    assert sum("cannot make an event" in r.message for r in caplog.records) == 2
    idle.stop(1.0)


def test_a_transport_failure_is_retried_and_logged_once(api, clock, caplog, monkeypatch):
    monkeypatch.setattr(recording, "RETRY_SECONDS", 0.01)
    rec = EventRecorder(api, "default-scheduler", clock=clock).start()
    try:
        api.failures = [ConnectionRefusedError("refused")] * (recording.WRITE_TRIES + 1)
        with caplog.at_level(logging.INFO, logger="controlplane.events"):
            rec.event(POD, NORMAL, "Scheduled", "Successfully assigned shop/web-1 to n1")
            rec.event(POD, NORMAL, "Scheduled", "Successfully assigned shop/web-1 to n2")
            written(rec)
        # the first event was given up after WRITE_TRIES tries, the second made it
        assert [e["message"] for e in api.stored.values()] == [
            "Successfully assigned shop/web-1 to n2"]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
        assert any("writing events again" in r.getMessage() for r in caplog.records)
        # a rejection is not retried, and the next event is written as usual
        api.failures = [ApiError(422, "Invalid", "bad event")]
        rec.event(POD, NORMAL, "Scheduled", "Successfully assigned shop/web-1 to n3")
        rec.event(POD, NORMAL, "Scheduled", "Successfully assigned shop/web-1 to n4")
        written(rec)
        assert [c[3]["message"] for c in api.calls[-2:]] == [
            "Successfully assigned shop/web-1 to n3", "Successfully assigned shop/web-1 to n4"]
    finally:
        rec.stop(5.0)


def test_stop_ends_the_worker_even_when_the_api_is_away(api, clock, monkeypatch):
    monkeypatch.setattr(recording, "RETRY_SECONDS", 30.0)
    rec = EventRecorder(api, "kubelet", "n1", clock=clock).start()
    api.failures = [OSError("no route to host")] * 100
    for i in range(5):
        rec.event(POD, NORMAL, "Pulled", f"image {i}")
    wait_until("a first write attempt", lambda: api.calls)
    rec.stop(0.5)
    assert "events-kubelet-n1" not in {t.name for t in threading.enumerate()}


def test_references():
    assert reference(POD, "spec.containers{nginx}")["fieldPath"] == "spec.containers{nginx}"
    ref = {"kind": "Node", "name": "n1", "uid": "n1", "apiVersion": "v1"}
    assert reference(ref) == ref
    assert container_path("app") == "spec.containers{app}"
