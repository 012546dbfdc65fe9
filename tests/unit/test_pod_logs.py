"""pods/log's pure parts: CRI records, the kubelet's rendering and refusals, following a file."""

from __future__ import annotations

import threading

import pytest

from controlplane.api.errors import StatusError
from controlplane.api.streams import logs
from controlplane.api.streams.logs import LogFormatter, LogOptions, parse_record, parse_time


def test_times_render_as_gos_rfc3339nano():
    assert parse_time("2026-01-01T10:00:00.500000000Z") == (1767261600_500000000,
                                                            "2026-01-01T10:00:00.5Z")
    assert parse_time("2026-01-01T10:00:00Z")[1] == "2026-01-01T10:00:00Z"
    nanos, stamp = parse_time("2026-01-01T11:00:00.000000001+01:00")
    assert (nanos, stamp) == (1767261600_000000001, "2026-01-01T11:00:00.000000001+01:00")
    assert parse_time("2026-01-01T10:00:00.25+00:00")[1] == "2026-01-01T10:00:00.25Z"
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_time("yesterday")


def test_records_parse_and_reject():
    record = parse_record(b"2026-01-01T10:00:00Z stderr P half a line ")
    assert (record.stream, record.partial, record.text) == ("stderr", True, b"half a line ")
    assert parse_record(b"2026-01-01T10:00:00Z stdout F").text == b""
    assert parse_record(b"2026-01-01T10:00:00Z stdin F x") is None
    assert parse_record(b"garbage") is None


RECORDS = [parse_record(line) for line in (
    b"2026-01-01T10:00:00.1Z stdout P one ",
    b"2026-01-01T10:00:00.2Z stdout F line",
    b"2026-01-01T10:00:01Z stderr F oops",
    b"2026-01-01T10:00:02Z stdout F last")]


def test_rendering_joins_partials_and_prefixes_timestamps_per_record():
    assert LogFormatter(LogOptions()).render(RECORDS) == b"one line\noops\nlast\n"
    stamped = LogFormatter(LogOptions(timestamps=True)).render(RECORDS[:2])
    assert stamped == b"2026-01-01T10:00:00.1Z one 2026-01-01T10:00:00.2Z line\n"


def test_rendering_filters_stream_and_time_and_cuts_at_the_byte_limit():
    assert LogFormatter(LogOptions(stream="Stderr")).render(RECORDS) == b"oops\n"
    since = parse_time("2026-01-01T10:00:01Z")[0]
    assert LogFormatter(LogOptions(since_nanos=since)).render(RECORDS) == b"oops\nlast\n"
    limited = LogFormatter(LogOptions(limit=6))
    assert limited.render(RECORDS) == b"one li"
    assert limited.exhausted and limited.render(RECORDS) == b""


def status(state: dict, last: dict | None = None) -> dict:
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": [
        {"name": "c", "state": state, "lastState": {"terminated": last} if last else {}}]}}


@pytest.mark.parametrize("pod, previous, message", [
    (status({"waiting": {"reason": "ContainerCreating"}}), False,
     'container "c" in pod "p" is waiting to start: ContainerCreating'),
    (status({"waiting": {"reason": "ImagePullBackOff"}}), False,
     'container "c" in pod "p" is waiting to start: trying and failing to pull image'),
    (status({"running": {}}), True, 'previous terminated container "c" in pod "p" not found'),
    ({"metadata": {"name": "p"}, "status": {}}, False, 'container "c" in pod "p" is not available'),
])
def test_the_kubelets_refusals(pod, previous, message):
    with pytest.raises(StatusError) as refused:
        logs.check_log_status(pod, "c", previous)
    assert (refused.value.code, refused.value.message) == (400, message)


def test_runs_that_have_logs_pass():
    logs.check_log_status(status({"running": {}}), "c", False)
    logs.check_log_status(status({"waiting": {"reason": "CrashLoopBackOff"}},
                                 {"exitCode": 1, "containerID": "svclab://1"}), "c", False)
    logs.check_log_status(status({"running": {}}, {"exitCode": 1, "containerID": "svclab://1"}),
                          "c", True)


def test_options_refuse_bad_values_naming_the_field():
    for query, message in (({"tailLines": ["-1"]}, "tailLines: must be greater than or equal"),
                           ({"limitBytes": ["x"]}, "limitBytes: invalid integer"),
                           ({"sinceSeconds": ["5"], "sinceTime": ["2026-01-01T00:00:00Z"]},
                            "at most one of sinceTime or sinceSeconds"),
                           ({"sinceTime": ["now"]}, "sinceTime: not an RFC 3339 time"),
                           ({"stream": ["Both"]}, "supported values: All, Stdout, Stderr")):
        with pytest.raises(StatusError, match=message):
            logs.log_options(query, 0)
    assert logs.log_options({"sinceSeconds": ["10"]}, 20_000_000_000).since_nanos == \
        10_000_000_000


def test_follow_reads_appended_records_until_the_run_ends(tmp_path):
    path = tmp_path / "c.log"
    path.write_bytes(b"2026-01-01T10:00:00Z stdout F first\n2026-01-01T10:00:00Z stdout F ha")
    running = threading.Event()
    running.set()
    chunks = logs.read_log(str(path), LogOptions(follow=True), running.is_set, lambda: False)
    assert next(chunks) == b"first\n"
    with open(path, "ab") as out:
        out.write(b"lf\n2026-01-01T10:00:01Z stdout F and more\n")
    assert next(c for c in chunks if c) == b"half\nand more\n"
    running.clear()
    assert [c for c in chunks if c] == []       # and then it ends
