"""Pure building blocks: allocators, patches, selectors, protobuf decoding, tables, watch resume."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from controlplane.api import patch, protobuf, tables
from controlplane.api.allocators import (
    AllocationError,
    IPRange,
    PortRange,
    allocate_ip,
    allocate_port,
)
from controlplane.api.errors import StatusError
from controlplane.api.resources import BY_PLURAL
from controlplane.api.selectors import matches_labels, parse_label_selector, selector_string
from controlplane.api.store import Store
from controlplane.api.watch import WatchRequest, watch_events


def test_ip_allocator_is_pure_and_checks_range_and_conflicts():
    rng, used = IPRange.parse("10.96.0.0/12"), frozenset({"10.96.0.1"})
    ip, after = allocate_ip(rng, used, None, random.Random(1))
    assert used == frozenset({"10.96.0.1"}) and after == used | {ip}
    assert rng.contains(ip) and ip not in used
    with pytest.raises(AllocationError,
                       match=r"the provided IP \(10.0.0.1\) is not in the valid range"):
        allocate_ip(rng, used, "10.0.0.1", random.Random(1))
    with pytest.raises(AllocationError, match="provided IP is already allocated"):
        allocate_ip(rng, used, "10.96.0.1", random.Random(1))


def test_small_service_range_never_hands_out_dns_address_dynamically():
    rng, used, rand = IPRange.parse("10.96.0.0/24"), frozenset(), random.Random(3)
    for _ in range(200):
        ip, used = allocate_ip(rng, used, None, rand)
    assert "10.96.0.10" not in used and "10.96.0.1" not in used


def test_port_allocator_range_and_conflict():
    rng = PortRange.parse("30000-32767")
    port, used = allocate_port(rng, frozenset(), None, random.Random(2))
    assert 30000 <= port <= 32767 and used == {port}
    with pytest.raises(AllocationError, match="The range of valid ports is 30000-32767"):
        allocate_port(rng, used, 80, random.Random(2))
    with pytest.raises(AllocationError, match="provided port is already allocated"):
        allocate_port(rng, used, port, random.Random(2))


def test_strategic_merge_merges_containers_by_name_and_ports_by_key():
    original = {"spec": {"containers": [{"name": "a", "image": "x:1",
                                         "ports": [{"containerPort": 80}]},
                                        {"name": "b", "image": "y:1"}],
                         "ports": [{"port": 80, "targetPort": 8080},
                                   {"port": 443, "targetPort": 8443}]}}
    result = patch.strategic_merge(original, {"spec": {
        "containers": [{"name": "b", "image": "y:2"}, {"name": "a", "$patch": "delete"}],
        "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
        "ports": [{"port": 443, "targetPort": 9443}]}})
    assert result["spec"]["containers"] == [{"name": "b", "image": "y:2"}]
    assert result["spec"]["ports"] == [{"port": 443, "targetPort": 9443},
                                       {"port": 80, "targetPort": 8080}]
    assert original["spec"]["containers"][1]["image"] == "y:1"


def test_strategic_merge_null_deletes_and_replace_directive():
    assert patch.strategic_merge({"a": 1, "b": {"c": 2}},
                                 {"a": None, "b": {"$patch": "replace", "d": 3}}) == {
        "b": {"d": 3}}


def test_json_merge_and_json_patch():
    assert (patch.json_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}})
            == {"a": {"c": 2, "d": 3}})
    doc = {"spec": {"ports": [{"port": 80}]}}
    out = patch.json_patch(doc, [{"op": "add", "path": "/spec/ports/-", "value": {"port": 81}},
                                 {"op": "replace", "path": "/spec/ports/0/port", "value": 82},
                                 {"op": "test", "path": "/spec/ports/1/port", "value": 81}])
    assert out == {"spec": {"ports": [{"port": 82}, {"port": 81}]}}
    with pytest.raises(StatusError):
        patch.json_patch(doc, [{"op": "remove", "path": "/spec/missing"}])


def test_label_selector_parsing_and_matching():
    reqs = parse_label_selector("app=web,tier in (front,back),!legacy,env!=prod")
    assert matches_labels(reqs, {"app": "web", "tier": "front", "env": "dev"})
    assert not matches_labels(reqs, {"app": "web", "tier": "front", "legacy": "1"})
    assert selector_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def test_protobuf_service_envelope_decodes_to_json_form():
    target = _field(1, 0) + _field(2, 8080) + _field(3, "")
    port = (_field(1, "80-8080") + _field(2, "TCP") + _field(3, 80) + _field(4, target)
            + _field(5, 30080))
    spec = (_field(1, port) + _field(2, _field(1, "app") + _field(2, "web")) + _field(3, "")
            + _field(4, "NodePort"))
    meta = _field(1, "web") + _field(3, "") + _field(11, _field(1, "app") + _field(2, "web"))
    raw = _field(1, meta) + _field(2, spec) + _field(3, b"")
    envelope = (_field(1, _field(1, "v1") + _field(2, "Service")) + _field(2, raw) + _field(3, "")
                + _field(4, ""))
    obj = protobuf.decode_object(b"k8s\x00" + envelope)
    assert obj == {"kind": "Service", "apiVersion": "v1",
                   "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                                       "targetPort": 8080, "nodePort": 30080}],
                            "selector": {"app": "web"}, "type": "NodePort"}}


def test_human_duration_matches_kubectl():
    assert [tables.human_duration(s)
            for s in (5, 119, 150, 3600 * 5 + 16 * 60, 3600 * 30, 86400 * 3)] == [
        "5s", "119s", "2m30s", "5h16m", "30h", "3d"]


def test_service_table_columns():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    svc = {"metadata": {"name": "lb", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"type": "LoadBalancer", "clusterIP": "10.96.5.5", "selector": {"app": "x"},
                    "ports": [{"port": 80, "nodePort": 32472, "protocol": "TCP"}]},
           "status": {"loadBalancer": {}}}
    table = tables.to_table("services", [svc], "7", now=now)
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert table["rows"][0]["cells"] == ["lb", "LoadBalancer", "10.96.5.5", "<pending>",
                                         "80:32472/TCP", "0s", "app=x"]
    svc["status"]["loadBalancer"]["ingress"] = [
        {"hostname": "a1b2c3-123456789.us-east-1.elb.amazonaws.com"}]
    assert tables.service_external_ip(svc) == "a1b2c3-123456..."
    assert (tables.service_external_ip(svc, wide=True)
            == "a1b2c3-123456789.us-east-1.elb.amazonaws.com")


def _watch(store, rv, initial=False, bookmarks=False):
    req = WatchRequest(BY_PLURAL["services"], "default", (), (), rv, initial, bookmarks, 0.3)
    return watch_events(store, req, lambda: False)


def test_watch_resumes_from_resource_version_and_expires_old_ones():
    store = Store(history_length=4)
    for i in range(3):
        store.put("services", {"metadata": {"name": f"s{i}", "namespace": "default"}}, "ADDED")
    assert ([(t, o["metadata"]["name"]) for t, o in _watch(store, "1")]
            == [("ADDED", "s1"), ("ADDED", "s2")])
    assert ([t for t, _ in _watch(store, "", initial=True, bookmarks=True)]
            == ["ADDED"] * 3 + ["BOOKMARK"])
    for i in range(3, 8):
        store.put("services", {"metadata": {"name": f"s{i}", "namespace": "default"}}, "ADDED")
    with pytest.raises(StatusError) as err:
        _watch(store, "1")
    assert err.value.code == 410
