"""The node proxy agent process: kube-proxy's loop around the pure rule set.

Informers list and watch Services, EndpointSlices and this Node through the
API; a change that matters (no-op updates are dropped) asks the
bounded-frequency runner for a sync; a sync computes the whole rule set
(pure), renders and applies it in one transaction through the backend, then
updates the health-check ports, metrics and stale UDP conntrack entries.
A failed apply keeps the old rules and is retried as a full sync.
"""
from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass

from agents.proxy.health import HttpFaces, SyncMetrics
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.model import (NodeInfo, ProxyOptions, endpoint_slice_from_k8s,
                                service_from_k8s)
from agents.proxy.ruleset import RuleSet, compute_ruleset
from agents.proxy.runner import BoundedFrequencyRunner
from svclab.kube.client import KubeClient
from svclab.kube.informer import Informer

log = logging.getLogger("svclab.proxy")
SYNC_WAIT = 30.0


@dataclass(frozen=True)
class AgentConfig:
    node: str
    cluster_cidr: str = "192.168.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    min_sync_period: float = 0.1
    sync_period: float = 30.0
    healthz: tuple[str, int] | None = ("0.0.0.0", 10256)
    metrics: tuple[str, int] | None = ("0.0.0.0", 10249)


def relevant(resource: str, obj: dict) -> tuple:
    """The parts of an object the data plane depends on (for no-op detection)."""
    meta = obj.get("metadata", {})
    labels = tuple(sorted((meta.get("labels") or {}).items()))
    if resource == "services":
        return (labels, repr(obj.get("spec")), repr(obj.get("status", {}).get("loadBalancer")))
    if resource == "endpointslices":
        return (labels, repr(obj.get("endpoints")), repr(obj.get("ports")),
                obj.get("addressType"))
    return (repr(obj.get("status", {}).get("addresses")),)


class ProxyAgent:
    """One node's agent; a context manager that runs until stopped."""

    def __init__(self, client: KubeClient, config: AgentConfig, backend=None):
        self.client = client
        self.config = config
        self.backend = backend or IptablesBackend()
        self.metrics = SyncMetrics()
        self.faces = HttpFaces(self.metrics, healthy_within=2 * config.sync_period + 5)
        self.runner = BoundedFrequencyRunner(self.sync, config.min_sync_period,
                                             config.sync_period)
        self.informers = {r: Informer(client, r, self._on_change(r))
                          for r in ("services", "endpointslices", "nodes")}
        self.last_ruleset: RuleSet | None = None
        self.synced = threading.Event()

    def __enter__(self) -> "ProxyAgent":
        self.faces.start(self.config.healthz, self.config.metrics)
        for informer in self.informers.values():
            informer.start()
        for resource, informer in self.informers.items():
            if not informer.wait_synced(SYNC_WAIT):
                raise TimeoutError(f"no initial list of {resource} in {SYNC_WAIT} s")
        self.runner.start()
        return self

    def __exit__(self, *exc) -> None:
        self.runner.stop()
        for informer in self.informers.values():
            informer.stop()
        self.faces.stop()

    def _on_change(self, resource: str):
        def handle(kind: str, obj: dict, old: dict | None) -> None:
            if resource == "nodes" and obj["metadata"]["name"] != self.config.node:
                return
            if kind == "MODIFIED" and old is not None and \
                    relevant(resource, old) == relevant(resource, obj):
                self.metrics.changes_ignored += 1
                return
            self.runner.request()
        return handle

    def node_info(self) -> NodeInfo:
        node = self.informers["nodes"].get(self.config.node) or {}
        ips = tuple(a["address"] for a in node.get("status", {}).get("addresses", [])
                    if a.get("type") == "InternalIP")
        return NodeInfo(self.config.node, ips, self.config.cluster_cidr, self.config.service_cidr)

    def sync(self, full: bool) -> None:
        started = time.monotonic()
        services = [service_from_k8s(s) for s in self.informers["services"].items()]
        slices = [endpoint_slice_from_k8s(s) for s in self.informers["endpointslices"].items()]
        ruleset = compute_ruleset(services, slices, self.node_info(), ProxyOptions())
        try:
            report = self.backend.sync(ruleset)
        except Exception:
            self.metrics.errors += 1
            raise
        previous, self.last_ruleset = self.last_ruleset, ruleset
        self.faces.set_health_check_ports({
            hc.node_port: (hc.namespace, hc.service, hc.local_endpoints)
            for hc in ruleset.health_checks})
        flush_stale_udp(previous, ruleset)
        elapsed = time.monotonic() - started
        self.metrics.observe(elapsed)
        self.metrics.last_success = time.time()
        self.metrics.rules = {"restore-lines": report.lines}
        self.metrics.services = len({(sp.name.namespace, sp.name.service)
                                     for sp in ruleset.service_ports})
        self.metrics.endpoints = ruleset.total_endpoints
        self.synced.set()
        log.info("synced %d service ports in %.3f s (%s, %d lines, %d stale chains)",
                 len(ruleset.service_ports), elapsed, "full" if full else "change",
                 report.lines, len(report.stale_chains))


def stale_udp_endpoints(previous: RuleSet | None, current: RuleSet) -> list[tuple[str, str]]:
    """(service IP, endpoint IP) pairs whose UDP endpoint went away (pure)."""
    if previous is None:
        return []
    now = {(sp.cluster_ip, ep.ip) for sp in current.service_ports if sp.protocol == "UDP"
           for ep in sp.endpoints.reachable}
    before = {(sp.cluster_ip, ep.ip) for sp in previous.service_ports if sp.protocol == "UDP"
              for ep in sp.endpoints.reachable}
    return sorted(before - now)


def flush_stale_udp(previous: RuleSet | None, current: RuleSet) -> None:
    """UDP has no connection end: drop conntrack entries to removed endpoints."""
    for vip, endpoint in stale_udp_endpoints(previous, current):
        proc = subprocess.run(["conntrack", "-D", "-p", "udp", "--orig-dst", vip,
                               "--dst-nat", endpoint], capture_output=True, text=True,
                              timeout=10, check=False)
        # conntrack exits 1 when nothing matched: that is not an error here.
        if proc.returncode not in (0, 1):
            log.warning("conntrack flush %s -> %s failed: %s", vip, endpoint, proc.stderr)
