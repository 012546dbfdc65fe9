"""Events in the API: one storage served as core/v1 and events.k8s.io/v1, kubectl's table
columns, the field selectors `kubectl describe` and `kubectl events` send, and the TTL."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import random
import re

import pytest

from base.kube.client import ApiError
from controlplane.api import ApiServer, ApiServerError, tables
from controlplane.api.errors import StatusError
from controlplane.api.events import new_event
from controlplane.api.registry import ClusterConfig, Registry
from controlplane.api.resources import BY_PLURAL, lookup
from controlplane.api.selectors import parse_field_selector
from controlplane.api.store import Store
from controlplane.api.watch import WatchRequest, watch_events

CORE = lookup("", "v1", "events")
VIEW = lookup("events.k8s.io", "v1", "events")
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
POD_REF = {"kind": "Pod", "apiVersion": "v1", "namespace": "default", "name": "web-1",
           "uid": "11111111-2222-3333-4444-555555555555", "fieldPath": "spec.containers{nginx}"}


NANOS = itertools.count(int(NOW.timestamp()) * 10**9)


def kubelet_event(reason="Started", message="Container started", ref=POD_REF, **fields):
    event = new_event(ref, "Normal", reason, message, "kubelet", "ip-172-31-0-11", NOW,
                      next(NANOS))
    event.update(fields)
    return event


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


# ---- tables ----------------------------------------------------------------------------------

def test_kubectl_get_events_shows_the_servers_columns(client, kubectl):
    started = client.create("events", kubelet_event(count=3), "default")
    client.create("events", new_event({"kind": "Node", "name": "ip-172-31-0-12",
                                       "uid": "ip-172-31-0-12"}, "Normal", "Starting",
                                      "Starting kubelet.", "kubelet", "ip-172-31-0-12", NOW),
                  "default")
    out = rows(kubectl("get", "events"))
    assert out[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    by_reason = {r[2]: r for r in out[1:]}
    assert by_reason["Started"][1:] == ["Normal", "Started", "pod/web-1", "Container", "started"]
    assert by_reason["Starting"][1:] == ["Normal", "Starting", "node/ip-172-31-0-12",
                                         "Starting", "kubelet."]
    wide = kubectl("get", "events", "-o", "wide", "--field-selector", "reason=Started")
    header, line = wide.splitlines()
    assert re.split(r"\s{2,}", header.strip()) == [
        "LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
        "COUNT", "NAME"]
    assert re.split(r"\s{2,}", line.strip())[1:] == [
        "Normal", "Started", "pod/web-1", "spec.containers{nginx}", "kubelet, ip-172-31-0-11",
        "Container started", re.split(r"\s{2,}", line.strip())[7], "3",
        started["metadata"]["name"]]


def test_event_table_rows_follow_printevent():
    later = NOW + dt.timedelta(minutes=3)
    legacy = kubelet_event(lastTimestamp="2026-01-02T03:06:05Z", count=4)
    cells = tables.to_table("events", [legacy], "1", now=later)["rows"][0]["cells"]
    assert cells == ["60s", "Normal", "Started", "pod/web-1", "spec.containers{nginx}",
                     "kubelet, ip-172-31-0-11", "Container started", "3m", 4,
                     legacy["metadata"]["name"]]
    # an events.k8s.io-style Event: eventTime and series, no count, no source
    new_style = {"kind": "Event", "apiVersion": "events.k8s.io/v1",
                 "metadata": {"name": "web-1.1", "namespace": "default"},
                 "regarding": {"kind": "Pod", "name": "web-1"}, "reason": "Scheduled",
                 "note": "Successfully assigned default/web-1 to ip-172-31-0-11 ",
                 "type": "Normal", "reportingController": "default-scheduler",
                 "eventTime": "2026-01-02T03:04:05.123456Z",
                 "series": {"count": 2, "lastObservedTime": "2026-01-02T03:06:35.000000Z"}}
    cells = tables.to_table("events", [new_style], "1", now=later)["rows"][0]["cells"]
    assert cells[:4] == ["30s", "Normal", "Scheduled", "pod/web-1"]
    assert cells[5:9] == ["default-scheduler",
                          "Successfully assigned default/web-1 to ip-172-31-0-11", "2m59s", 2]


# ---- field selectors -------------------------------------------------------------------------

def test_field_selectors_of_kubectl_describe_and_kubectl_events(client, kubectl):
    client.create("events", kubelet_event(), "default")
    client.create("events", kubelet_event("Killing", "Stopping container nginx"), "default")
    other = dict(POD_REF, name="web-2", uid="other")
    web2 = client.create("events", kubelet_event(ref=other), "default")
    scheduler = new_event(dict(POD_REF, fieldPath=""), "Warning", "FailedScheduling",
                          "0/3 nodes are available", "default-scheduler", "", NOW)
    scheduler["source"] = {}          # events.k8s.io writers leave source empty
    client.create("events", scheduler, "default")

    def reasons(selector: str) -> list[str]:
        items, _ = client.list("events", "default", field_selector=selector)
        return sorted(e["reason"] for e in items)
    # kubectl describe pod: name, namespace and uid
    assert reasons(f"involvedObject.name=web-1,involvedObject.namespace=default,"
                   f"involvedObject.uid={POD_REF['uid']}") == ["FailedScheduling", "Killing",
                                                              "Started"]
    # kubectl events --for pod/web-2: kind and name
    assert reasons("involvedObject.kind=Pod,involvedObject.name=web-2") == ["Started"]
    assert reasons("reason=Killing") == ["Killing"]
    assert reasons("type=Warning") == ["FailedScheduling"]
    assert reasons("type!=Warning,involvedObject.name=web-1") == ["Killing", "Started"]
    assert reasons("source=kubelet") == ["Killing", "Started", "Started"]
    # "source" is source.component, or the reporting controller when there is none
    assert reasons("source=default-scheduler") == ["FailedScheduling"]
    assert reasons("involvedObject.fieldPath=spec.containers{nginx}") == [
        "Killing", "Started", "Started"]
    out = kubectl("get", "events", "--field-selector", "involvedObject.name=web-2", "-o", "name")
    assert out.split() == [f"event/{web2['metadata']['name']}"]


def test_events_k8s_io_selectors_are_translated_and_unknown_labels_refused():
    registry = fresh_registry()
    registry.create(CORE, "default", kubelet_event())
    items, _ = registry.list(VIEW, "default", (), parse_field_selector(
        "regarding.name=web-1,reportingController=kubelet"))
    assert [e["note"] for e in items] == ["Container started"]
    for rt, label in ((CORE, "regarding.name"), (VIEW, "involvedObject.name"),
                      (CORE, "message")):
        with pytest.raises(StatusError) as err:
            registry.list(rt, "default", (), parse_field_selector(f"{label}=x"))
        assert (err.value.code, err.value.message) == (400,
                                                       f"field label not supported: {label}")


# ---- events.k8s.io/v1 ------------------------------------------------------------------------

def test_events_k8s_io_serves_the_same_events(client, kubectl):
    core = client.create("events", kubelet_event(count=2), "default")
    name = core["metadata"]["name"]
    view = client.request("GET", f"/apis/events.k8s.io/v1/namespaces/default/events/{name}")
    assert view["apiVersion"] == "events.k8s.io/v1" and view["kind"] == "Event"
    assert view["regarding"] == POD_REF and view["note"] == "Container started"
    assert view["deprecatedSource"] == {"component": "kubelet", "host": "ip-172-31-0-11"}
    assert (view["deprecatedCount"], view["reportingController"]) == (2, "kubelet")
    assert view["deprecatedFirstTimestamp"] == "2026-01-02T03:04:05Z"
    assert not {"involvedObject", "message", "count", "source"} & set(view)
    assert view["metadata"] == core["metadata"]
    resources = kubectl("api-resources", "--api-group=events.k8s.io", "-o", "name").split()
    assert resources == ["events.events.k8s.io"]
    shown = json.loads(kubectl("get", "events.v1.events.k8s.io", name, "-o", "json"))
    assert shown["note"] == "Container started"


def new_style_event(**fields) -> dict:
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
             "metadata": {"name": "web-1.scheduled", "namespace": "default"},
             "regarding": {k: v for k, v in POD_REF.items() if k != "fieldPath"},
             "reason": "Scheduled", "action": "Binding", "type": "Normal",
             "note": "Successfully assigned default/web-1 to ip-172-31-0-11",
             "eventTime": "2026-01-02T03:04:05.000000Z",
             "reportingController": "default-scheduler",
             "reportingInstance": "default-scheduler-ip-172-31-0-10"}
    event.update(fields)
    return event


def test_an_event_written_through_events_k8s_io_is_read_through_core(client, kubectl):
    path = "/apis/events.k8s.io/v1/namespaces/default/events"
    client.request("POST", path, body=new_style_event())
    core = client.get("events", "web-1.scheduled", "default")
    assert core["apiVersion"] == "v1"
    assert core["involvedObject"]["name"] == "web-1" and core["reportingComponent"] == (
        "default-scheduler")
    assert core["message"] == "Successfully assigned default/web-1 to ip-172-31-0-11"
    # a repeat is a series; nothing else of the Event may change
    series = {"count": 2, "lastObservedTime": "2026-01-02T03:05:05.000000Z"}
    patched = client.request("PATCH", f"{path}/web-1.scheduled", body={"series": series},
                             content_type="application/merge-patch+json")
    assert patched["series"] == series
    with pytest.raises(ApiError) as err:
        client.request("PATCH", f"{path}/web-1.scheduled", body={"note": "changed"},
                       content_type="application/merge-patch+json")
    assert err.value.status == 422 and "message: Invalid value" in err.value.message
    assert "field is immutable" in err.value.message


@pytest.mark.parametrize("fields, complaint", [
    ({"eventTime": None}, "eventTime: Required value"),
    ({"type": "Info"}, "type: Invalid value"),
    ({"deprecatedCount": 3}, "count: Invalid value"),
    ({"action": None}, "action: Required value"),
    ({"reportingController": None}, "reportingController: Required value"),
    ({"series": {"count": 1, "lastObservedTime": "2026-01-02T03:04:05.000000Z"}},
     "series.count: Invalid value"),
])
def test_events_k8s_io_validates_as_strictly_as_upstream(client, fields, complaint):
    with pytest.raises(ApiError) as err:
        client.request("POST", "/apis/events.k8s.io/v1/namespaces/default/events",
                       body=new_style_event(**fields))
    assert err.value.status == 422 and complaint in err.value.message


def test_core_events_get_the_legacy_namespace_check(client):
    event = kubelet_event(ref=dict(POD_REF, namespace="kube-system"))
    event["metadata"]["namespace"] = "default"
    with pytest.raises(ApiError) as err:
        client.create("events", event, "default")
    assert "involvedObject.namespace: Invalid value" in err.value.message
    assert "does not match event.namespace" in err.value.message


# ---- time to live ----------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh_registry(clock=None, ttl: float = 3600.0) -> Registry:
    store = Store(clock=clock) if clock else Store()
    registry = Registry(store, ClusterConfig.from_info({"eventTTLSeconds": ttl}),
                        random.Random(1))
    registry.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": "default"}})
    return registry


def test_events_expire_an_hour_after_their_last_write_and_watchers_see_it():
    clock = Clock()
    registry = fresh_registry(clock)
    first = registry.create(CORE, "default", kubelet_event())
    name = first["metadata"]["name"]
    registry.create(CORE, "default", kubelet_event("Killing", "Stopping container nginx",
                                                   ref=dict(POD_REF, name="web-2")))
    clock.now += 1800
    registry.patch(CORE, "default", name, "application/strategic-merge-patch+json",
                   json.dumps({"count": 2}).encode())           # renews its hour
    watch = watch_events(registry.store, WatchRequest(CORE, "default", (), (),
                                                      first["metadata"]["resourceVersion"],
                                                      False, False, 1.0), lambda: False)
    clock.now += 1800
    assert [e["reason"] for e in registry.list(CORE, "default")[0]] == ["Started"]
    seen = [(kind, obj["reason"]) for kind, obj in watch]
    assert seen == [("ADDED", "Killing"), ("MODIFIED", "Started"), ("DELETED", "Killing")]
    clock.now += 1800
    assert registry.list(CORE, "default")[0] == []
    with pytest.raises(StatusError):
        registry.get(CORE, "default", name)
    assert registry.get(BY_PLURAL["namespaces"], "", "default")   # other types do not expire


def test_event_ttl_is_configurable(cluster_info, tmp_path):
    assert ClusterConfig.from_info({}).event_ttl == 3600.0
    assert ClusterConfig.from_info({"eventTTLSeconds": 90}).event_ttl == 90.0
    clock = Clock()
    registry = fresh_registry(clock, ttl=90)
    registry.create(CORE, "default", kubelet_event())
    clock.now += 90
    assert registry.list(CORE, "default")[0] == []
    for bad in (0, -5, "1h", True):
        with pytest.raises(ApiServerError) as err:
            ClusterConfig.from_info({"eventTTLSeconds": bad})
        assert str(err.value).startswith("eventTTLSeconds: must be a number of seconds > 0")
    info = copy.deepcopy(cluster_info)
    info["eventTTLSeconds"] = 0
    with pytest.raises(ApiServerError, match="eventTTLSeconds"):
        ApiServer(tmp_path / "state", info)
