"""The node's workload server serves many pods from one process, each as its own
server would: its name in the answers, its access log, SIGTERM's grace, 137 for
SIGKILL, and a refusal (with the exit code the single server had) for what it
cannot serve.  Sockets are bound in this process's namespace here (the lab
binds them in each pod's)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import urllib.request

import pytest

from agents.workload import node


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(node, "open_listeners", lambda netns, config: [
        node._bind(spec, config) for spec in config.ports])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    thread = threading.Thread(target=lambda: asyncio.run(node.NodeWorkloadServer(theirs).run()),
                              daemon=True)
    thread.start()
    ours.settimeout(10)
    yield ours
    ours.close()
    thread.join(10)
    theirs.close()
    assert not thread.is_alive(), "the server ends when the daemon hangs up"


def serve(control: socket.socket, ident: int, *args: str) -> tuple[dict, int]:
    read_end, write_end = os.pipe()
    message = {"op": "serve", "id": ident, "netns": "/proc/self/ns/net", "root": "",
               "args": list(args)}
    socket.send_fds(control, [json.dumps(message).encode()], [write_end])
    os.close(write_end)
    return json.loads(control.recv(65536)), read_end


def pod_args(name: str, grace: str = "0") -> list[str]:
    return ["--pod-name", name, "--pod-ip", "192.168.1.7", "--port", "0/TCP", "--grace", grace]


def read_lines(fd: int, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = os.read(fd, 4096)
        assert chunk, f"the log ended early: {data!r}"
        data += chunk
    return data.decode().splitlines()


def test_two_pods_answer_as_themselves_and_log_apart(server):
    first, first_log = serve(server, 1, *pod_args("web-a"))
    second, second_log = serve(server, 2, *pod_args("web-b"))
    assert first["ok"] and second["ok"]
    for reply, name, log in ((first, "web-a", first_log), (second, "web-b", second_log)):
        port = int(reply["ports"][0].split("/")[0])
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5).read()
        assert body.decode() == name
        listening, access = read_lines(log, 2)
        assert json.loads(listening) == {"event": "listening", "pod": name,
                                         "ports": reply["ports"]}
        assert '"GET /hostname HTTP/1.1" 200' in access


def test_sigterm_ends_a_pod_with_0_and_sigkill_with_137(server):
    assert serve(server, 1, *pod_args("term"))[0]["ok"]
    assert serve(server, 2, *pod_args("kill", grace="30"))[0]["ok"]
    server.send(json.dumps({"op": "signal", "id": 1, "signal": 15}).encode())
    assert json.loads(server.recv(65536)) == {"event": "exited", "id": 1, "code": 0}
    server.send(json.dumps({"op": "signal", "id": 2, "signal": 9}).encode())
    assert json.loads(server.recv(65536)) == {"event": "exited", "id": 2, "code": 137}


def test_what_cannot_be_served_is_refused_with_the_single_servers_codes(server):
    reply, log = serve(server, 1, "--pod-name", "x", "--pod-ip", "192.168.1.7",
                       "--port", "80/SCTP")
    assert (reply["ok"], reply["code"]) == (False, 2) and "protocol must be" in reply["error"]
    assert os.read(log, 4096).startswith(b"error: ")
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        reply, _ = serve(server, 2, "--pod-name", "x", "--pod-ip", "192.168.1.7",
                         "--port", f"{port}/TCP")
    finally:
        taken.close()
    assert (reply["ok"], reply["code"]) == (False, 1) and "cannot listen" in reply["error"]
