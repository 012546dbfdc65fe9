"""The fork server (agents/forkserver.py) with the daemon's side of it
(topo/forkspawn.py): a program it starts runs in the namespaces it was sent,
as a session leader at /, with its stdio on the log and nothing else open,
showing the command line it stands for; it refuses the machine's network
namespace and modules it did not preload; it ends when the daemon's end closes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.errors import LabError
from base.forkwire import ForkWireError, recv_answer, send_request
from topo.forkspawn import ForkServer, ForkServerError
from topo.netns import start_time

TESTS = Path(__file__).resolve().parents[1]
PROGRAM = "support.whereami"


@pytest.fixture
def server():
    server = ForkServer([PROGRAM])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    proc = subprocess.Popen(server.argv(), pass_fds=(server.pass_fd,), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.started()
    server.proc = proc
    yield server
    server.close()
    try:
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.fixture
def holder(netns):
    """A process in the scratch namespace, whose namespaces programs are sent to."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "60"])
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
        assert time.monotonic() < deadline, "ip netns exec did not enter the namespace"
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def read_report(log: Path, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while not log.exists() or not log.read_text().strip():
        assert time.monotonic() < deadline, "the program wrote nothing to its log"
        time.sleep(0.02)
    return json.loads(log.read_text().splitlines()[0])


def test_a_program_runs_where_it_was_sent_as_its_own_command(server, holder, tmp_path):
    log = tmp_path / "program.log"
    argv = [sys.executable, "-m", PROGRAM, "3", "two words"]
    pid, start = server.spawn(holder.pid, argv, str(log))
    report = read_report(log)
    assert report["pid"] == pid
    assert start > 0 and start_time(pid) in (start, None)    # None: already exited
    assert report["netns"] == os.stat(f"/proc/{holder.pid}/ns/net").st_ino
    assert report["netns"] != os.stat("/proc/self/ns/net").st_ino
    assert report["sid"] == pid                  # a session of its own, as the daemon's
    assert report["cwd"] == "/"
    assert report["argv"] == ["3", "two words"]
    assert report["cmdline"] == argv             # `ps` shows the program, not the server
    assert report["stdin"] == "/dev/null"
    assert report["fds"] == [0, 1, 2, 3]         # 3: the listing of /proc/self/fd itself


def test_the_server_refuses_the_machine_namespace_and_unknown_modules(server, tmp_path):
    with pytest.raises(LabError, match="host network namespace"):
        server.spawn(os.getpid(), [sys.executable, "-m", PROGRAM], str(tmp_path / "log"))
    # Sent past the daemon's own check, the server refuses it too, before forking.
    ours = socket.socket(fileno=os.dup(server._sock.fileno()))
    try:
        with open(tmp_path / "log", "wb") as log, open("/proc/self/ns/net") as net:
            send_request(ours, PROGRAM, [], log.fileno(), {"net": net.fileno()})
        with pytest.raises(ForkWireError, match="machine's network namespace"):
            recv_answer(ours)
    finally:
        ours.close()
    assert not (tmp_path / "log").read_text()


def test_a_module_it_did_not_preload_is_refused(server, holder, tmp_path):
    with pytest.raises(ForkServerError, match="'agents.proxy' is not preloaded; "
                                              "preloaded: support.whereami"):
        server.spawn(holder.pid, [sys.executable, "-m", "agents.proxy"],
                     str(tmp_path / "log"))
    assert server.broken and not server.serves([sys.executable, "-m", PROGRAM])


def test_the_server_ends_when_the_daemon_end_closes(server):
    assert server.proc.poll() is None
    server.close()
    assert server.proc.wait(timeout=5) == 0
