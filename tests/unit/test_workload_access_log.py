"""The workload server's access log: nginx's lines, with the client address it saw."""
from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from agents.workload import protocol
from agents.workload.server import AccessLog

REPO = Path(__file__).resolve().parents[2]
COMBINED = re.compile(r'^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "(.*)" '
                      r'(\d{3}) (\d+) "(.*)" "(.*)"$')


def test_http_lines_are_nginx_combined():
    head = (b"GET /hostname?x=1 HTTP/1.1\r\nHost: web\r\nReferer: http://a/\r\n"
            b"user-agent: curl/8.5.0\r\n\r\n")
    line = protocol.http_log_line(("192.168.2.7", 41234), head, 200, 19, now=0)
    assert line.endswith("\n")
    assert COMBINED.match(line.rstrip("\n")).groups() == (
        "192.168.2.7", time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(0)),
        "GET /hostname?x=1 HTTP/1.1", "200", "19", "http://a/", "curl/8.5.0")


def test_missing_headers_are_dashes_and_odd_bytes_escaped():
    line = protocol.http_log_line(("10.0.0.1", 1), b'GET /"\x01 HTTP/1.1\r\n\r\n', 404, 10)
    request, referer, agent = COMBINED.match(line.rstrip("\n")).group(3, 6, 7)
    assert (request, referer, agent) == ("GET /\\x22\\x01 HTTP/1.1", "-", "-")


def test_stream_lines_are_nginx_basic():
    line = protocol.stream_log_line(("203.0.113.100", 5), "UDP", 60, 12, 0.0015, now=0)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(0))
    assert line == f"203.0.113.100 [{stamp}] UDP 200 60 12 0.002\n"


def test_a_full_pipe_drops_lines_instead_of_blocking():
    read_end, write_end = os.pipe()
    try:
        log = AccessLog(write_end)
        log("held until open\n")
        log.open("first\n")
        for _ in range(100_000):
            log("x" * 99 + "\n")
        assert log.dropped > 0
        assert os.read(read_end, 22) == b"first\nheld until open\n"
    finally:
        os.close(read_end)
        os.close(write_end)


def read_lines(fd: int, count: int, timeout: float = 10.0) -> list[str]:
    """count lines from fd, failing (not hanging) after timeout seconds."""
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line in {timeout} s; got {data!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"the server closed its output; got {data!r}"
        data += chunk
    return data.decode().splitlines()[:count]


def test_the_server_logs_each_request_after_its_announcement():
    argv = [sys.executable, "-m", "agents.workload", "--pod-name", "p", "--pod-ip", "10.0.0.9",
            "--bind", "127.0.0.1", "--port", "0/TCP"]
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE) as server:
        try:
            [announcement] = read_lines(server.stdout.fileno(), 1)
            port = int(announcement.split('"ports": ["')[1].split("/")[0])
            subprocess.run([sys.executable, "-c", "import urllib.request; urllib.request.urlopen("
                            f"'http://127.0.0.1:{port}/hostname').read()"], timeout=10,
                           check=True)
            [line] = read_lines(server.stdout.fileno(), 1)
        finally:
            server.terminate()
            server.wait(10)
    logged = COMBINED.match(line)
    assert logged.group(1, 3, 4, 5) == ("127.0.0.1", "GET /hostname HTTP/1.1", "200", "1")
    assert logged.group(7).startswith("Python-urllib/")
