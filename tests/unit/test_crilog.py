"""Container logs in containerd's CRI format: written line by line, read back."""
from __future__ import annotations

import re
import time

import pytest

from topo.crilog import CriLogFile, LineSplitter, format_line, parse_line, rfc3339nano

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)$")


def test_timestamps_are_go_rfc3339nano(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert rfc3339nano(1_796_475_600_123_456_789) == "2026-12-05T13:00:00.123456789Z"
        assert rfc3339nano(1_796_475_600_120_000_000) == "2026-12-05T13:00:00.12Z"
        assert rfc3339nano(1_796_475_600_000_000_000) == "2026-12-05T13:00:00Z"
        monkeypatch.setenv("TZ", "EST+5")
        time.tzset()
        assert rfc3339nano(1_796_475_600_500_000_000) == "2026-12-05T08:00:00.5-05:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert STAMP.match(rfc3339nano())


def test_lines_are_full_partial_and_cut_at_the_maximum():
    splitter = LineSplitter(max_line=8)
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\r\nwor") == [(False, b"hello")]
    assert splitter.feed(b"ld\n\n") == [(False, b"world"), (False, b"")]
    assert splitter.feed(b"0123456789abcdefXY") == [(True, b"01234567"), (True, b"89abcdef")]
    assert splitter.feed(b"\n") == [(False, b"XY")]
    assert splitter.feed(b"no newline") == [(True, b"no newli")]
    assert splitter.finish() == [(True, b"ne")]
    assert splitter.finish() == []


def test_format_and_parse_round_trip():
    line = format_line("2026-12-05T13:00:00.1Z", "stderr", False, b"boom: a b  c")
    assert line == b"2026-12-05T13:00:00.1Z stderr F boom: a b  c\n"
    parsed = parse_line(line)
    assert (parsed.time, parsed.stream, parsed.partial, parsed.content) == (
        "2026-12-05T13:00:00.1Z", "stderr", False, b"boom: a b  c")
    assert parse_line(b"2026-12-05T13:00:00Z stdout P \n").content == b""
    assert parse_line(b"2026-12-05T13:00:00Z stdout P").partial
    with pytest.raises(ValueError, match="stream 'stdin' is not one of stdout, stderr"):
        parse_line(b"2026-12-05T13:00:00Z stdin F x")
    with pytest.raises(ValueError, match="not a CRI log line"):
        parse_line(b"hello")


def test_a_log_file_interleaves_streams_and_ends_partial_lines(tmp_path):
    log = CriLogFile(tmp_path / "c" / "0.log")
    log.write("stdout", b"one\ntw")
    log.write("stderr", b"oops\n")
    log.write("stdout", b"o\nthree")
    log.close()
    lines = [parse_line(l) for l in (tmp_path / "c" / "0.log").read_bytes().splitlines()]
    assert [(l.stream, l.partial, l.content) for l in lines] == [
        ("stdout", False, b"one"), ("stderr", False, b"oops"), ("stdout", False, b"two"),
        ("stdout", True, b"three")]
    assert all(STAMP.match(l.time) for l in lines)
