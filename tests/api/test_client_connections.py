"""A client's threads share its kept-alive connections (base/kube/transport.py),
as a client-go process shares its transport: the API server sees a few
connections from a busy client, not one per thread."""

from __future__ import annotations

import threading
import time

from base.kube import transport
from base.kube.client import KubeClient


def server_side_connections(server) -> int:
    """Established TCP connections at the server's port (from /proc/net/tcp)."""
    port = int(server.addresses[0].rsplit(":", 1)[1])
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                count += 1
    return count


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_threads_taking_turns_use_one_connection(api_server):
    """Twenty live threads (a kubelet's pod workers), one request each in turn."""
    client = KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))
    release = threading.Event()

    def worker(done: threading.Event) -> None:
        client.get("namespaces", "default")
        done.set()
        release.wait(30)
    threads = []
    for _ in range(20):
        done = threading.Event()
        threads.append(threading.Thread(target=worker, args=(done,)))
        threads[-1].start()
        assert done.wait(10)
    assert server_side_connections(api_server) == 1
    release.set()
    for thread in threads:
        thread.join()
    client.close()
    assert wait_until(lambda: server_side_connections(api_server) == 0)


def test_a_burst_leaves_idle_connections_that_close_while_its_threads_live(
        api_server, monkeypatch):
    """Eight threads at once need up to eight connections; once idle for the idle
    time they close, although the threads that used them are still alive."""
    monkeypatch.setattr(transport, "IDLE_SECONDS", 1.0)
    client = KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))
    started, finished, release = threading.Barrier(8), threading.Barrier(9), threading.Event()

    def work() -> None:
        started.wait(10)
        for _ in range(5):
            client.list("namespaces")
        finished.wait(10)
        release.wait(30)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    finished.wait(10)
    opened = server_side_connections(api_server)
    try:
        assert opened > 0, "no connection kept alive after the burst"
        assert wait_until(lambda: server_side_connections(api_server) == 0), \
            f"{server_side_connections(api_server)} of {opened} connections still open " \
            "after the idle time"
    finally:
        release.set()
        for thread in threads:
            thread.join()
    assert client.get("namespaces", "default")["metadata"]["name"] == "default"


def test_a_connection_the_server_closed_is_replaced_without_an_error(api_server):
    client = KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))
    client.get("namespaces", "default")
    for server in api_server._servers:
        server.cut_connections()
    assert wait_until(lambda: server_side_connections(api_server) == 0)
    assert client.get("namespaces", "default")["metadata"]["name"] == "default"
    assert server_side_connections(api_server) == 1
