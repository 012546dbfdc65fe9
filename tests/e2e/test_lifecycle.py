"""Lab lifecycle end to end: up/down leave the host as it was, several labs
coexist, and a lab whose daemon was killed is cleaned up completely by
`svclab clean`, using only what it recorded."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from labtools import host_snapshot, svclab, unique_name
from topo.cleanup import processes_in_netns
from topo.netns import ProcRef
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def lab_namespaces(name: str) -> tuple[set[int], dict[int, int]]:
    """The lab's namespaces by inode, with their cookies: once a namespace is
    gone the kernel may give its inode to another lab's (a test running
    beside this one), and only the cookie tells them apart."""
    state = read_state(LabPaths(name))
    return set(state.netns_seen), state.cookies()


def test_up_and_down_leave_the_host_as_it_was():
    before = host_snapshot()
    name = unique_name("life")
    up = svclab("up", "--name", name, "--json")
    assert json.loads(up.stdout)["hosts"] >= 10   # 9 lab hosts + cluster DNS pods
    during = host_snapshot()
    inodes, cookies = lab_namespaces(name)
    assert processes_in_netns(inodes, cookies=cookies), "agents, resolver and shells run"
    state = read_state(LabPaths(name))
    # The API server (with its controllers) runs in a process of its own.
    assert state.apiserver is not None and state.apiserver.alive()
    assert state.apiserver_pid != state.daemon_pid
    svclab("down", "--name", name)
    after = host_snapshot()
    assert after == before
    assert not state.apiserver.alive()
    assert processes_in_netns(inodes, cookies=cookies) == []
    # Nothing of the lab ever appeared in the host namespace, even while up.
    assert during["links"] == before["links"] and during["routes"] == before["routes"]
    assert not LabPaths(name).root.exists()


def test_two_labs_run_side_by_side_without_clashing():
    first, second = unique_name("twin"), unique_name("twin")
    svclab("up", "--name", first)
    try:
        svclab("up", "--name", second)
        try:
            for name in (first, second):
                ping = svclab("exec", "--name", name, "client", "--", "ping", "-c1", "-W2",
                              "198.51.100.11")
                assert "1 received" in ping.stdout
            svclab("down", "--name", first)
            ping = svclab("exec", "--name", second, "ip-172-31-0-11", "--", "ping", "-c1",
                          "-W2", "172.31.0.12")
            assert "1 received" in ping.stdout
        finally:
            svclab("down", "--name", second, check=False)
    finally:
        svclab("clean", "--name", first, check=False)
        svclab("clean", "--name", second, check=False)


def test_clean_after_kill_9_leaves_nothing_of_the_lab():
    before = host_snapshot()
    name = unique_name("crash")
    svclab("up", "--name", name)
    # A stray background process inside a lab host keeps its namespace alive
    # unless cleanup finds it: start one the way a user might.
    svclab("exec", "--name", name, "ip-172-31-0-11", "--", "sh", "-c",
           "setsid sleep 600 >/dev/null 2>&1 < /dev/null &")
    state = json.loads(LabPaths(name).state.read_text())
    inodes, cookies = lab_namespaces(name)
    assert len(inodes) >= 10
    os.kill(state["daemon_pid"], signal.SIGKILL)
    # The API server's process ends on its own once the daemon's end of their
    # channel closes.
    apiserver = ProcRef(state["apiserver_pid"], state["apiserver_start"])
    deadline = time.monotonic() + 20
    while apiserver.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not apiserver.alive()
    left = processes_in_netns(inodes, cookies=cookies)
    assert left, "the killed lab should have left processes behind for clean to find"

    cleaned = svclab("clean", "--name", name)
    assert "state removed: True" in cleaned.stdout
    deadline = time.monotonic() + 5
    while processes_in_netns(inodes, cookies=cookies) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_netns(inodes, cookies=cookies) == []
    for host in state["hosts"].values():
        assert not ProcRef(host["pid"], host["start"]).alive()
    assert not LabPaths(name).root.exists()
    assert host_snapshot() == before


def test_bad_spec_exits_2_names_the_field_and_starts_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("nodes:\n  - name: Bad_Name\n    role: control-plane\n")
    name = unique_name("bad")
    proc = svclab("up", "--name", name, "-f", str(spec), check=False)
    assert proc.returncode == 2
    assert "nodes[0].name" in proc.stderr and "DNS-1123" in proc.stderr
    assert not LabPaths(name).root.exists()


def test_up_refuses_a_name_already_running():
    name = unique_name("dup")
    svclab("up", "--name", name)
    try:
        again = svclab("up", "--name", name, check=False)
        assert again.returncode == 1 and "already running" in again.stderr
        assert svclab("status", "--name", name).stdout.count("ready") == 1
    finally:
        svclab("down", "--name", name)
