"""The lab's state file: readable while the daemon's threads write it at once (a
corrupt file makes `svclab status`, `down` and `clean` refuse the lab), and host names
resolved as a user means them."""

from __future__ import annotations

import threading

import pytest

from base.errors import UsageError
from topo.state import HostRecord, LabPaths, LabState, read_state, write_state


def test_concurrent_writers_leave_one_whole_state(tmp_path, monkeypatch):
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path))
    paths = LabPaths("statefile")
    paths.root.mkdir(parents=True)
    states = [LabState(name="statefile", daemon_pid=1, daemon_start=2,
                       agents={f"proxy/n{i}": {"pid": i, "restarts": 0} for i in range(n)})
              for n in (1, 40)]
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def writer(state: LabState) -> None:
        start.wait()
        for _ in range(50):
            try:
                write_state(paths, state)
            except OSError as err:    # another writer moved the temporary file away
                failures.append(err)

    threads = [threading.Thread(target=writer, args=(states[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert read_state(paths).agents in (states[0].agents, states[1].agents)
    assert [p.name for p in paths.root.iterdir()] == ["state.json"]


def test_what_is_read_back_is_the_state_as_it_was_at_each_write(tmp_path, monkeypatch):
    """The writer keeps each host's JSON while the host lives: pods coming, going
    and replaced between writes must read back exactly as the state was."""
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path))
    paths = LabPaths("statefile")
    paths.root.mkdir(parents=True)
    state = LabState(name="statefile", daemon_pid=1, daemon_start=2)
    state.hosts["n0"] = _host("n0", "node", "ip-172-31-0-10")
    for i in range(5):
        state.hosts[f"p{i}"] = _host(f"p{i}", "pod", f"web-{i}", "default")
    write_state(paths, state)
    assert read_state(paths) == state
    del state.hosts["p1"]
    state.hosts["p3"] = HostRecord(host="p3", kind="pod", name="web-3", pid=33, start=3,
                                   netns=3, namespace="default", node="ip-172-31-0-10",
                                   addresses=["192.168.1.3"])
    state.hosts["p9"] = _host("p9", "pod", "web-9", "other")
    state.ready = True
    write_state(paths, state)
    again = read_state(paths)
    assert again == state
    assert again.hosts["p3"].pid == 33 and again.hosts["p3"].addresses == ["192.168.1.3"]
    assert sorted(again.hosts) == ["n0", "p0", "p2", "p3", "p4", "p9"]
    state.hosts.clear()
    write_state(paths, state)
    assert read_state(paths).hosts == {}


def _host(host: str, kind: str, name: str, namespace: str | None = None) -> HostRecord:
    return HostRecord(host=host, kind=kind, name=name, pid=1, start=1, netns=1,
                      namespace=namespace)


def test_a_pod_named_like_a_lab_host_is_reached_with_its_namespace():
    state = LabState(name="lab", daemon_pid=1, daemon_start=1, hosts={
        "p7": _host("p7", "pod", "client", "default"),
        "client": _host("client", "client", "client"),
        "h1": _host("h1", "node", "ip-172-31-0-11")})
    assert state.find_host("client").host == "client"
    assert state.find_host("client", "default").host == "p7"
    assert state.find_host("ip-172-31-0-11").host == "h1"
    with pytest.raises(UsageError, match="no host 'web'"):
        state.find_host("web", "default")
