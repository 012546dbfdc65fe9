"""Balancing (who is in service, round robin, least outstanding requests) and
the access-log line in ALB's format (agents/elb/alb/balance.py, accesslog.py)."""
from __future__ import annotations

import collections
import shlex

import pytest

from agents.elb.alb.accesslog import (
    AccessLog,
    LogEntry,
    elb_id,
    format_entry,
    region_of,
    request_field,
    target_group_arn,
)
from agents.elb.alb.balance import Balancer, in_service
from base.alb_api import Target

TARGETS = (Target("10.0.0.1", 80), Target("10.0.0.2", 80), Target("10.0.0.3", 80))
A, B, C = (t.endpoint for t in TARGETS)


@pytest.mark.parametrize("states, serving, failing_open", [
    ({A: "healthy", B: "unhealthy", C: "healthy"}, (A, C), False),
    ({A: "initial", B: "unhealthy", C: "healthy"}, (C,), False),
    ({A: "unhealthy", B: "unhealthy", C: "unhealthy"}, (A, B, C), True),   # fail open
    ({A: "initial", B: "unhealthy", C: "unhealthy"}, (), False),
    ({A: "initial", B: "initial", C: "initial"}, (), False),
    ({}, (), False),
])
def test_who_takes_requests(states, serving, failing_open):
    assert in_service(TARGETS, states) == (serving, failing_open)


def test_no_registered_target_means_nobody():
    assert in_service((), {}) == ((), False)


def test_round_robin_takes_each_in_turn():
    balancer = Balancer("round_robin")
    picks = [balancer.pick((A, B, C)) for _ in range(9)]
    assert picks == [A, B, C] * 3


def test_least_outstanding_requests_prefers_the_idle_target():
    balancer = Balancer("least_outstanding_requests")
    for _ in range(3):
        balancer.started(A)
    balancer.started(B)
    assert balancer.pick((A, B, C)) == C
    balancer.started(C)
    assert balancer.pick((A, B, C)) in (B, C)
    for _ in range(3):
        balancer.finished(A)
    assert balancer.pick((A, B, C)) == A
    assert balancer.outstanding == {B: 1, C: 1}


def test_least_outstanding_requests_shares_equal_targets_evenly():
    balancer = Balancer("least_outstanding_requests")
    counts = collections.Counter(balancer.pick((A, B, C)) for _ in range(300))
    assert counts == {A: 100, B: 100, C: 100}


def test_an_empty_group_cannot_be_picked_from():
    with pytest.raises(ValueError):
        Balancer("round_robin").pick(())


def entry(**changes) -> LogEntry:
    fields = dict(type="http", time=1_700_000_000.25, elb=elb_id("k8s-default-web-abc"),
                  client="203.0.113.7:41000", target="192.168.1.5:8080",
                  request_processing_time=0.0004, target_processing_time=0.0123,
                  response_processing_time=0.0, elb_status_code=200, target_status_code=200,
                  received_bytes=120, sent_bytes=345,
                  request=request_field("GET", "http", "shop.example.com", 80, "/a?b=1",
                                        "HTTP/1.1"),
                  user_agent='curl/8.0 "quoted"', trace_id="Root=1-65000000-abc",
                  matched_rule_priority=3, request_creation_time=1_700_000_000.2,
                  actions_executed="forward", targets_tried=("192.168.1.5:8080",),
                  target_codes=("200",), conn_trace_id="TID_1")
    fields.update(changes)
    return LogEntry(**fields)


def test_the_log_line_has_albs_fields_in_albs_order():
    fields = shlex.split(format_entry(entry()))
    assert fields[:13] == [
        "http", "2023-11-14T22:13:20.250000Z", elb_id("k8s-default-web-abc"),
        "203.0.113.7:41000", "192.168.1.5:8080", "0.000", "0.012", "0.000", "200", "200",
        "120", "345", "GET http://shop.example.com:80/a?b=1 HTTP/1.1"]
    assert fields[13] == "curl/8.0 %22quoted%22"
    assert fields[14:16] == ["-", "-"]                          # no TLS
    assert fields[17:21] == ["Root=1-65000000-abc", "-", "-", "3"]
    assert fields[21] == "2023-11-14T22:13:20.200000Z"
    assert fields[22:] == ["forward", "-", "-", "192.168.1.5:8080", "200", "-", "-", "TID_1"]
    assert len(fields) == 30


def test_a_request_no_target_answered():
    fields = shlex.split(format_entry(entry(
        target=None, request_processing_time=-1, target_processing_time=-1,
        response_processing_time=-1, elb_status_code=503, target_status_code=None,
        targets_tried=(), target_codes=(), matched_rule_priority=None)))
    assert fields[4:10] == ["-", "-1", "-1", "-1", "503", "-"]
    assert fields[20] == "-"


def test_names_and_arns():
    assert elb_id("web").startswith("app/web/") and len(elb_id("web").split("/")[2]) == 16
    assert region_of("k8s-a-b-1.eu-west-3.elb.amazonaws.com") == "eu-west-3"
    assert region_of("localhost") == "us-east-1"
    assert target_group_arn("alb", "x.eu-west-3.elb.amazonaws.com", "tg").startswith(
        "arn:aws:elasticloadbalancing:eu-west-3:123456789012:targetgroup/tg/")
    assert request_field("GET", "https", "h:8443", 443, "http://h/x", "HTTP/1.1") == \
        "GET https://h:443/x HTTP/1.1"


def test_the_log_file_is_appended_to(tmp_path):
    log = AccessLog(tmp_path / "access.log")
    log.add(entry())
    assert not (tmp_path / "access.log").exists()       # buffered
    log.flush()
    log.add(entry(elb_status_code=404))
    log.flush()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert [shlex.split(line)[8] for line in lines] == ["200", "404"]
