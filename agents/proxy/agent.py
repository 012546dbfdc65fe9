"""The node proxy agent process: kube-proxy's loop around the pure rule set.

Informers list and watch Services, EndpointSlices and this Node through the
API (only this Node: a field selector on its name, as kube-proxy's node
informer; its addresses and its topology.kubernetes.io/zone label, which
topology hints are matched against, come from it; a change of either is a
full sync); the change tracker drops no-op updates and remembers which
services changed; a change asks the bounded-frequency runner for a sync.  A
sync computes the whole rule set (pure), then the backend applies it in one
transaction — only the changed services' chains (partial), or everything
(full: the first sync, every sync period, after an error) — and the agent
updates health-check ports, metrics and stale UDP conntrack entries.  A
failed apply keeps the old rules and is retried as a full sync.

The periodic full sync is skipped (counted in /metrics, logged at debug)
when no Service, EndpointSlice or Node changed and the backend says the
kernel holds what its last sync wrote (``backend.unchanged()``: nobody
committed to nf_tables since, by the ruleset generation number).
"""
from __future__ import annotations

import gc
import logging
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from agents.node_agent import NodeAgent
from agents.proxy.changes import ChangeTracker, stale_udp_flows
from agents.proxy.errors import ModelError
from agents.proxy.health import HttpFaces, SyncMetrics
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.model import (
    NodeInfo,
    ProxyOptions,
    endpoint_slice_from_k8s,
    node_zone,
    service_from_k8s,
)
from agents.proxy.ruleset import RuleSet, compute_ruleset
from agents.proxy.runner import BoundedFrequencyRunner
from agents.proxy.topology import ZONE_LABEL
from base.kube.client import KubeClient
from base.kube.informer import Informer

log = logging.getLogger("svclab.proxy")


@dataclass(frozen=True)
class AgentConfig:
    node: str
    cluster_cidr: str = "192.168.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    min_sync_period: float = 0.1
    sync_period: float = 30.0
    healthz: tuple[str, int] | None = ("0.0.0.0", 10256)
    metrics: tuple[str, int] | None = ("0.0.0.0", 10249)
    health_check_bind: str = "0.0.0.0"      # where healthCheckNodePorts listen


class ProxyAgent(NodeAgent):
    """One node's agent; a context manager that runs until stopped."""

    def __init__(self, client: KubeClient, config: AgentConfig, backend=None):
        self.client = client
        self.config = config
        self.backend = backend or IptablesBackend()
        self.metrics = SyncMetrics()
        self.faces = HttpFaces(self.metrics, healthy_within=2 * config.sync_period + 5)
        self.runner = BoundedFrequencyRunner(self.sync, config.min_sync_period,
                                             config.sync_period)
        self.tracker = ChangeTracker()
        self._tracker_lock = threading.Lock()
        self.informers = {
            "services": Informer(client, "services", self._on_service),
            "endpointslices": Informer(client, "endpointslices", self._on_slice),
            "nodes": Informer(client, "nodes", self._on_node,
                              field_selector=f"metadata.name={config.node}"),
        }
        self.last_ruleset: RuleSet | None = None
        self.synced = threading.Event()

    def _on_service(self, kind: str, obj: dict, old: dict | None) -> None:
        self._track(kind, obj, service_from_k8s, self.tracker.on_service)

    def _on_slice(self, kind: str, obj: dict, old: dict | None) -> None:
        self._track(kind, obj, endpoint_slice_from_k8s, self.tracker.on_endpoint_slice)

    def _track(self, kind: str, obj: dict, parse, record) -> None:
        try:
            parsed = parse(obj)
        except ModelError as err:     # not ours to proxy (e.g. IPv6): say so, skip it
            log.warning("ignoring %s: %s", obj["metadata"].get("name"), err)
            return
        with self._tracker_lock:
            changed = record(kind, parsed)
        if changed:
            self.runner.request()
        else:
            self.metrics.changes_ignored += 1

    def _on_node(self, kind: str, obj: dict, old: dict | None) -> None:
        """This node's addresses or zone label changed: every service's
        rules may change, so the next sync is a full one."""
        if obj["metadata"]["name"] == self.config.node and (
                old is None or node_facts(old) != node_facts(obj)):
            if old is not None and node_zone(old) != node_zone(obj):
                log.info("node zone label %s: %s -> %s; resyncing", ZONE_LABEL,
                         node_zone(old), node_zone(obj))
            self.runner.request(full=True)

    def node_info(self) -> NodeInfo:
        ips, zone = node_facts(self.informers["nodes"].get(self.config.node) or {})
        return NodeInfo(self.config.node, ips, self.config.cluster_cidr, self.config.service_cidr,
                        zone)

    def sync(self, full: bool) -> None:
        started = time.monotonic()
        node = self.node_info()
        with self._tracker_lock:
            quiet = not self.tracker.pending
        if full and quiet and resync_skippable(self.backend, self.last_ruleset,
                                               node):
            self.metrics.skipped += 1
            self.metrics.last_success = time.time()
            log.debug("periodic sync skipped: nothing changed in the API "
                      "or in the kernel (%.4f s)", time.monotonic() - started)
            return
        previous = self.last_ruleset      # computed for this node: reusable
        if full or previous is None or previous.node != node:
            previous = None
        with self._tracker_lock:
            changed = self.tracker.take()
            services, slices = (self.tracker.objects_of(changed)
                                if previous is not None else
                                (self.tracker.services, self.tracker.slices))
        try:
            ruleset, report = sync_rules(
                self.backend, services, slices, node,
                previous=previous, changed=None if full else changed)
        except Exception:
            self.metrics.errors += 1
            raise                        # the runner's retry is a full sync
        previous, self.last_ruleset = self.last_ruleset, ruleset
        self.faces.set_health_check_ports({
            hc.node_port: (hc.namespace, hc.service, hc.local_endpoints)
            for hc in ruleset.health_checks}, self.config.health_check_bind)
        if previous is not None:
            flush_stale_udp(stale_udp_flows(previous, ruleset))
        elapsed = time.monotonic() - started
        self.metrics.observe(elapsed, partial=report.partial)
        self.metrics.last_success = time.time()
        self.metrics.rules = {"restore-lines": report.lines}
        self.metrics.services = len({(sp.name.namespace, sp.name.service)
                                     for sp in ruleset.service_ports})
        self.metrics.endpoints = ruleset.total_endpoints
        self.synced.set()
        log.info("synced %d service ports in %.3f s (%s, %d lines, %d stale chains)",
                 len(ruleset.service_ports), elapsed,
                 "partial" if report.partial else "full", report.lines,
                 len(report.stale_chains))


def node_facts(node: dict) -> tuple[tuple[str, ...], str | None]:
    """What the rules depend on of a Node object: its InternalIPs and zone."""
    ips = tuple(a["address"] for a in (node.get("status") or {}).get("addresses", [])
                if a.get("type") == "InternalIP")
    return ips, node_zone(node)


def resync_skippable(backend, previous: RuleSet | None,
                     node: NodeInfo) -> bool:
    """A periodic full sync can be skipped: the last sync succeeded for
    this node (its rule set is known) and the backend says the kernel
    still holds what it wrote (backends without ``unchanged``: never)."""
    unchanged = getattr(backend, "unchanged", None)
    return (previous is not None and previous.node == node
            and unchanged is not None and unchanged())


@contextmanager
def gc_paused():
    """No cyclic garbage collection while a sync allocates.

    A sync at 10k services makes ~10^6 short-lived objects, and the
    collections they trigger scan every long-lived one (informer caches,
    the last rule set): ~0.4 s of a 10k full sync.  Nothing a sync makes
    is cyclic, so collecting afterwards loses nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sync_rules(backend, services, slices, node: NodeInfo, *,
               previous: RuleSet | None = None,
               changed: frozenset | None = None,
               options: ProxyOptions = ProxyOptions()):
    """One sync as the agent does it: (ruleset, report).

    Full when changed is None; otherwise only the changed services are
    computed again (on top of previous) and rewritten.
    """
    with gc_paused():
        ruleset = compute_ruleset(services, slices, node, options,
                                  previous=previous, changed=changed)
        return ruleset, backend.sync(ruleset, changed)


def flush_stale_udp(flows) -> None:
    """UDP has no connection end: drop conntrack entries to removed endpoints."""
    for flow in flows:
        argv = flow.conntrack_argv()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        # conntrack exits 1 when nothing matched: that is not an error here.
        if proc.returncode not in (0, 1):
            log.warning("%s failed: %s", " ".join(argv), proc.stderr.strip())
