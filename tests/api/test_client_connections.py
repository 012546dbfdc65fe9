"""A client's threads share its kept-alive connections (base/kube/transport.py),
as a client-go process shares its transport: the API server sees a few
connections from a busy client, not one per thread."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


def test_a_burst_opens_at_most_one_connection_per_thread_and_idle_ones_close(
        api_server, monkeypatch):
    monkeypatch.setattr(transport, "IDLE_SECONDS", 1.0)
    client = KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))
    started = threading.Barrier(8)

    def work(_: int) -> None:
        started.wait(10)
        for _ in range(5):
            client.list("namespaces")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert 1 <= server_side_connections(api_server) <= 8
    assert wait_until(lambda: server_side_connections(api_server) == 0), \
        "idle connections still open after the idle time"
    assert client.get("namespaces", "default")["metadata"]["name"] == "default"


def test_a_connection_the_server_closed_is_replaced_without_an_error(api_server):
    client = KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))
    client.get("namespaces", "default")
    for server in api_server._servers:
        server.cut_connections()
    assert wait_until(lambda: server_side_connections(api_server) == 0)
    assert client.get("namespaces", "default")["metadata"]["name"] == "default"
    assert server_side_connections(api_server) == 1
