"""The proxy agent's loop against a real (in-process) API server, with a
recording backend instead of iptables: what it syncs, when, and what its
healthz, metrics and health-check ports say.  No root needed."""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from agents.proxy.agent import AgentConfig, ProxyAgent
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import SyncReport
from agents.proxy.runner import BoundedFrequencyRunner


class RecordingBackend:
    def __init__(self):
        self.calls = []

    def sync(self, ruleset, changed_services=None):
        self.calls.append((ruleset, changed_services))
        return SyncReport(lines=1, partial=changed_services is not None,
                          stale_chains=(), inserted_jumps=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_in(low: int, high: int) -> int:
    for port in range(high, low, -1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read().decode()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def api(api_client):
    return api_client


@pytest.fixture
def agent(api):
    backend = RecordingBackend()
    healthz, metrics = free_port(), free_port()
    config = AgentConfig(node="n1", min_sync_period=0.05, sync_period=30,
                         healthz=("127.0.0.1", healthz), metrics=("127.0.0.1", metrics),
                         health_check_bind="127.0.0.1")
    with ProxyAgent(api, config, backend=backend) as running:
        running.ports = (healthz, metrics)
        running.recorder = backend
        yield running


def test_first_sync_is_full_and_healthz_turns_200(agent):
    wait_for(lambda: agent.recorder.calls)
    ruleset, changed = agent.recorder.calls[0]
    assert changed is None                                  # full sync
    assert [sp.name.service for sp in ruleset.service_ports] == ["kubernetes"]
    assert ruleset.node.node_ips == ("172.31.0.11",)
    wait_for(lambda: get(agent.ports[0], "/healthz")[0] == 200)
    status, body = get(agent.ports[0], "/healthz")
    assert set(json.loads(body)) == {"lastUpdated", "currentTime"}


def test_changes_sync_only_what_changed_and_noop_updates_are_dropped(agent, api):
    wait_for(lambda: agent.recorder.calls)
    before = len(agent.recorder.calls)
    api.create("services", service_dict("web", cluster_ip="10.96.5.5"), namespace="default")
    api.create("endpointslices", slice_dict("web", endpoints=[endpoint("192.168.1.5", "n1")]),
               namespace="default")
    # the service and its slice may arrive in one sync or two: wait for the
    # one that has web's endpoint
    wait_for(lambda: any(c == frozenset({("default", "web")}) and any(
        sp.name.service == "web" and sp.known_endpoints for sp in rs.service_ports)
        for rs, c in agent.recorder.calls[before:]))
    synced = len(agent.recorder.calls)
    ignored = agent.metrics.changes_ignored
    api.patch("services", "web", {"metadata": {"annotations": {"note": "no-op"}}},
              namespace="default")
    wait_for(lambda: agent.metrics.changes_ignored > ignored)
    time.sleep(0.2)
    assert len(agent.recorder.calls) == synced              # nothing re-synced
    ruleset = agent.recorder.calls[-1][0]
    web = next(sp for sp in ruleset.service_ports if sp.name.service == "web")
    assert [e.address for e in web.endpoints.cluster] == ["192.168.1.5:8080"]
    # computed for web alone, the rule set still holds every service
    assert [sp.name.service for sp in ruleset.service_ports] == [
        "kubernetes", "web"]


def test_a_node_address_change_recomputes_everything(agent, api):
    api.create("services", service_dict("web", cluster_ip="10.96.5.5"), namespace="default")
    wait_for(lambda: any(len(r.service_ports) == 2 for r, _ in agent.recorder.calls))
    node = api.get("nodes", "n1")
    addresses = [{"type": "InternalIP", "address": "172.31.0.99"}]
    api.patch("nodes", "n1", {"status": {"addresses": addresses}}, subresource="status")
    wait_for(lambda: agent.recorder.calls[-1][0].node.node_ips == ("172.31.0.99",))
    ruleset, changed = agent.recorder.calls[-1]
    assert changed is None                                  # a full sync
    assert [sp.name.service for sp in ruleset.service_ports] == ["kubernetes", "web"]
    assert node["status"]["addresses"] != addresses


def test_metrics_and_service_health_check_port(agent, api):
    hc_port = free_port_in(30000, 32767)
    svc = service_dict("lb", cluster_ip="10.96.6.6", type="LoadBalancer", etp="Local",
                       health_check_node_port=hc_port)
    api.create("services", svc, namespace="default")
    wait_for(lambda: hc_port in agent.faces._servers)
    status, body = get(hc_port, "/healthz")
    assert status == 503
    assert json.loads(body) == {"service": {"namespace": "default", "name": "lb"},
                                "localEndpoints": 0, "serviceProxyHealthy": True}
    wait_for(lambda: agent.metrics.partial_syncs.count >= 1)  # lb's sync, recorded
    status, text = get(agent.ports[1], "/metrics")
    assert status == 200
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="+Inf"}' in text
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in text
    full = 'kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{le="+Inf"}'
    partial = 'kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le="+Inf"}'
    counts = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("kubeproxy_sync_full", "kubeproxy_sync_partial",
                                  "kubeproxy_sync_proxy_rules_duration_seconds_count"))}
    assert counts[full] >= 1 and counts[partial] >= 1          # first sync, then lb's
    assert counts[full] + counts[partial] == \
        counts["kubeproxy_sync_proxy_rules_duration_seconds_count"]
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"}' in text
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="16.384"}' in text
    assert "svclab_proxy_sync_skipped_total 0" in text


class QuietKernelBackend(RecordingBackend):
    """A backend whose kernel state nobody else touches."""

    def __init__(self):
        super().__init__()
        self.kernel_unchanged = True

    def unchanged(self):
        return self.kernel_unchanged


def test_a_periodic_sync_with_nothing_changed_is_skipped_and_counted(api):
    backend = QuietKernelBackend()
    config = AgentConfig(node="n1", min_sync_period=0.05, sync_period=30,
                         healthz=None, metrics=None)
    with ProxyAgent(api, config, backend=backend) as running:
        wait_for(lambda: backend.calls)
        wait_for(lambda: running.last_ruleset is not None)
        running.sync(full=True)                   # what the period triggers
        assert len(backend.calls) == 1 and running.metrics.skipped == 1
        assert "svclab_proxy_sync_skipped_total 1" in running.metrics.render()
        backend.kernel_unchanged = False          # someone else committed
        running.sync(full=True)
        assert len(backend.calls) == 2 and backend.calls[1][1] is None
        assert running.metrics.skipped == 1


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bounded_frequency_runner_batches_changes_and_resyncs_periodically():
    clock = FakeClock()
    runner = BoundedFrequencyRunner(lambda full: None, min_interval=1.0, max_interval=30.0,
                                    clock=clock)
    assert runner.next_delay(clock()) == 0                  # first sync at once
    runner._pending = False
    runner._last_run = clock()
    assert runner.next_delay(clock()) == 30.0               # idle: periodic resync
    runner.request()
    assert runner.next_delay(clock()) == 1.0                # change: not before min
    clock.now += 0.4
    assert runner.next_delay(clock()) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        BoundedFrequencyRunner(lambda full: None, min_interval=5, max_interval=1)


def test_after_a_long_sync_the_runner_rests_twice_as_long_before_the_next():
    clock = FakeClock()
    runner = BoundedFrequencyRunner(lambda full: None, min_interval=0.1, max_interval=30.0,
                                    clock=clock)

    def synced(took: float) -> None:
        runner._pending = False
        runner._last_run, runner._rested_at = clock(), clock() + took + 2 * took
        clock.now += took
        runner.request()
    synced(0.02)                # a quick sync: min_interval alone decides
    assert runner.next_delay(clock()) == pytest.approx(0.08)
    synced(0.25)                # a thousand endpoints: the next waits 0.5 s after it
    assert runner.next_delay(clock()) == pytest.approx(0.5)
    clock.now += 0.3
    assert runner.next_delay(clock()) == pytest.approx(0.2)
    runner._pending = False     # with nothing to do, only the periodic resync is due
    assert runner.next_delay(clock()) == pytest.approx(30.0 - 0.55)
    with pytest.raises(ValueError):
        BoundedFrequencyRunner(lambda full: None, min_interval=0.1, max_interval=1, rest=-1)


def test_the_running_loop_measures_each_sync_and_rests_after_a_long_one():
    starts: list[float] = []

    def sync(full: bool) -> None:
        starts.append(time.monotonic())
        time.sleep(0.15 if len(starts) == 2 else 0.0)
    with BoundedFrequencyRunner(sync, min_interval=0.02, max_interval=30.0) as runner:
        deadline = time.monotonic() + 10
        while len(starts) < 3 and time.monotonic() < deadline:
            runner.request()            # changes keep coming
            time.sleep(0.005)
    assert len(starts) >= 3
    assert starts[1] - starts[0] >= 0.02
    assert starts[2] - starts[1] >= 0.15 + 2 * 0.15       # its run, then twice that
