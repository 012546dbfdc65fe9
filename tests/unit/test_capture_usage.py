"""Capture and spread refuse bad requests before anything starts (no root, no lab)."""
from __future__ import annotations

import pytest

from base.errors import LabError, UsageError
from probes.capture.probe import Capture, capture_for
from probes.spread.probe import spread


@pytest.fixture(autouse=True)
def empty_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path / "run"))


def test_capture_needs_hosts_and_a_plain_interface_name(tmp_path):
    with pytest.raises(UsageError, match="--on"):
        Capture("lab1", [], tmp_path)
    with pytest.raises(UsageError, match="--interface"):
        Capture("lab1", [("web-1", None)], tmp_path, interfaces="eth0 or 1=1")
    with pytest.raises(UsageError, match="--interface"):
        Capture("lab1", [("web-1", None)], tmp_path, interfaces="-w/etc/passwd")
    with pytest.raises(UsageError, match="--filter"):
        Capture("lab1", [("web-1", None)], tmp_path, filter="-w /etc/passwd")
    with pytest.raises(UsageError, match="--duration"):
        capture_for(0, "lab1", [("web-1", None)], tmp_path)


def test_capture_in_a_lab_that_is_not_running_says_so(tmp_path):
    with pytest.raises(LabError, match="not running"):
        with Capture("nolab", [("web-1", None)], tmp_path / "out"):
            pytest.fail("the block must not run")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,flag", [
    ({"target_ip": "not-an-ip"}, "--to"),
    ({"target_ip": []}, "--to"),
    ({"port": 0}, "--to"),
    ({"proto": "icmp"}, "--proto"),
    ({"count": 0}, "--count"),
    ({"concurrency": 0}, "--concurrency"),
    ({"timeout": 0}, "--timeout"),
])
def test_spread_rejects_bad_requests_with_the_flag_named(kwargs, flag):
    args = {"target_ip": "192.168.1.50", "port": 80, "proto": "tcp", "count": 10,
            "timeout": 1.0, "concurrency": 10, **kwargs}
    with pytest.raises(UsageError, match=flag):
        spread("lab1", "web-0", None, **args)


def test_spread_in_a_lab_that_is_not_running_says_so():
    with pytest.raises(LabError, match="not running"):
        spread("nolab", "web-0", None, "192.168.1.50", 80)
