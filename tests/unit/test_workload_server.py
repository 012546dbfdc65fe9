"""The workload server as a client sees it: a real process on loopback, random ports."""
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POD, POD_IP = "hwk-66fdbfb65d-smrz5", "192.168.1.7"


def start_workload(*extra_args, ports=("0/TCP", "0/TCP", "0/UDP")):
    """Start the server; return (process, {"TCP": [ports], "UDP": [ports]})."""
    argv = [sys.executable, "-m", "agents.workload", "--pod-name", POD, "--pod-ip", POD_IP,
            "--bind", "127.0.0.1", *extra_args]
    for port in ports:
        argv += ["--port", port]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = read_line(process, timeout=10)
    event = json.loads(line)
    assert event["event"] == "listening"
    bound = {"TCP": [], "UDP": []}
    for text in event["ports"]:
        number, proto = text.split("/")
        bound[proto].append(int(number))
    return process, bound


def read_line(process, timeout):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(process.stdout.readline)
        try:
            line = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            process.kill()
            raise
    if not line:
        raise AssertionError(f"workload exited: {process.wait(5)} {process.stderr.read()!r}")
    return line


def stop(process, timeout=10):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    ready_file = tmp_path_factory.mktemp("workload") / "ready"
    process, bound = start_workload("--ready-file", str(ready_file))
    try:
        yield bound, ready_file
    finally:
        stop(process)


def http_get(port, path, method="GET", timeout=5.0):
    """Return (status, body, client "ip:port") over a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        client = "%s:%d" % sock.getsockname()
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = recv_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, body, client


def recv_all(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_http_paths(workload):
    bound, _ = workload
    port = bound["TCP"][0]
    assert http_get(port, "/hostname")[:2] == (200, POD.encode())
    status, body, client = http_get(port, "/clientip")
    assert (status, body.decode()) == (200, client)
    assert http_get(port, "/echo?msg=hi%20svclab")[:2] == (200, b"hi svclab")
    assert http_get(port, "/healthz")[0] == 200
    assert http_get(port, "/missing")[0] == 404
    assert http_get(port, "/hostname", method="HEAD")[:2] == (200, b"")


@pytest.mark.parametrize("path", ["/", "/json"])
def test_json_on_every_tcp_port(workload, path):
    bound, _ = workload
    for port in bound["TCP"]:
        status, body, client = http_get(port, path)
        assert status == 200
        assert json.loads(body) == {"pod": POD, "podIP": POD_IP, "client": client,
                                    "port": port, "proto": "tcp"}


def test_ready_follows_the_ready_file(workload):
    bound, ready_file = workload
    port = bound["TCP"][0]
    assert http_get(port, "/ready")[0] == 503
    ready_file.touch()
    try:
        assert http_get(port, "/ready")[0] == 200
    finally:
        ready_file.unlink()
    assert http_get(port, "/ready")[0] == 503


def test_plain_tcp_gets_banner_then_echo(workload):
    bound, _ = workload
    with socket.create_connection(("127.0.0.1", bound["TCP"][1]), timeout=5) as sock:
        client = "%s:%d" % sock.getsockname()
        banner = sock.makefile("rb").readline()
        assert banner == f"svclab {POD} {POD_IP} {client}\n".encode()
        sock.sendall(b"ping 1\n")
        assert sock.recv(100) == b"ping 1\n"


def test_non_http_first_bytes_are_echoed_after_the_banner(workload):
    bound, _ = workload
    with socket.create_connection(("127.0.0.1", bound["TCP"][0]), timeout=5) as sock:
        client = "%s:%d" % sock.getsockname()
        sock.sendall(b"hello\n")
        sock.shutdown(socket.SHUT_WR)
        data = recv_all(sock)
    assert data == f"svclab {POD} {POD_IP} {client}\nhello\n".encode()


def test_udp_reply_names_pod_and_source(workload):
    bound, _ = workload
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", bound["UDP"][0]))
        client = "%s:%d" % sock.getsockname()
        for payload in (b"probe-1", b"", b"x" * 1400):
            sock.send(payload)
            assert sock.recv(65535) == f"svclab {POD} {POD_IP} {client} ".encode() + payload


def test_many_concurrent_short_connections(workload):
    bound, _ = workload
    port = bound["TCP"][0]
    # 200 connections open at once, each answered with its own client address
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"GET /clientip HTTP/1.1\r\n\r\n")
        for sock in socks:
            body = recv_all(sock).partition(b"\r\n\r\n")[2]
            assert body.decode() == "%s:%d" % sock.getsockname()
    finally:
        for sock in socks:
            sock.close()
    # then 2000 short connections from 32 threads, all answered correctly (a
    # correctness check, not a latency one: a loaded 2-core machine may take
    # seconds for one of them, so each may take up to 30 s)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: http_get(port, "/hostname", timeout=30)[:2],
                                range(2000)))
    assert results == [(200, POD.encode())] * 2000


def test_sigterm_exits_promptly_with_an_open_echo_session():
    process, bound = start_workload(ports=("0/TCP",))
    sock = socket.create_connection(("127.0.0.1", bound["TCP"][0]), timeout=5)
    try:
        sock.makefile("rb").readline()          # an idle, in-flight echo session
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        print(f"exit after SIGTERM: {time.monotonic() - started:.3f}s")
    finally:
        sock.close()
        stop(process)


def test_grace_keeps_serving_while_not_ready_then_exits():
    process, bound = start_workload("--grace", "2", ports=("0/TCP",))
    port = bound["TCP"][0]
    try:
        assert http_get(port, "/ready")[0] == 200
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None
        assert http_get(port, "/ready")[0] == 503          # Terminating: not ready...
        assert http_get(port, "/hostname")[:2] == (200, POD.encode())   # ...but serving
        assert process.wait(timeout=10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        stop(process)


def test_second_sigterm_ends_the_grace_period():
    process, _ = start_workload("--grace", "60", ports=("0/TCP",))
    try:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        stop(process)


def test_bad_port_is_usage_error():
    result = subprocess.run([sys.executable, "-m", "agents.workload", "--pod-name", "p",
                             "--pod-ip", "1.2.3.4", "--port", "80/SCTP"],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "80/SCTP" in result.stderr


def test_port_in_use_is_a_failure():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "agents.workload", "--pod-name", "p",
                                 "--pod-ip", "1.2.3.4", "--bind", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, capture_output=True, text=True, timeout=30,
                                env={**os.environ})
    assert result.returncode == 1
    assert str(port) in result.stderr
