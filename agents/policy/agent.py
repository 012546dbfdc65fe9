"""The node policy agent: Calico felix's loop around the pure policy core.

It runs on every node beside the proxy agent.  Informers list and watch
Pods, Namespaces and NetworkPolicies; each event is turned into the policy
model (agents/policy/model.py), and only an event that changes the model
asks the bounded-frequency runner for a sync.  A sync takes one consistent
snapshot of the model, computes this node's rules (pure), renders them and
applies them in one transaction -- unless the rules it enforces (policy
chains, isolated pods) equal the last sync's, then nothing is read or run,
or the rendered rules equal the ones applied last, then nothing is written.
The periodic full resync applies again whatever it renders, which repairs
rules someone else removed.  A failed apply leaves the old rules in force
and is retried as a full sync.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agents.node_agent import NodeAgent
from agents.policy.compute import NodeRules, compute_node_rules
from agents.policy.metrics import PolicyMetrics
from agents.policy.model import (
    Cluster,
    PolicyModelError,
    namespace_from_k8s,
    pod_from_k8s,
    policy_from_k8s,
)
from agents.proxy.health import HttpFaces
from agents.proxy.runner import BoundedFrequencyRunner
from base.kube.client import KubeClient
from base.kube.informer import Informer, key_of

log = logging.getLogger("svclab.policy")
PARSERS: dict[str, Callable] = {"pods": pod_from_k8s, "namespaces": namespace_from_k8s,
                                "networkpolicies": policy_from_k8s}


@dataclass(frozen=True)
class PolicyAgentConfig:
    node: str
    min_sync_period: float = 0.05
    sync_period: float = 30.0
    healthz: tuple[str, int] | None = ("0.0.0.0", 9099)     # felix's health port
    metrics: tuple[str, int] | None = ("0.0.0.0", 9091)     # felix's metrics port


def _resource_version(obj: dict) -> int:
    text = obj.get("metadata", {}).get("resourceVersion") or "0"
    return int(text) if text.isdigit() else 0


class PolicyAgent(NodeAgent):
    """One node's policy agent; a context manager that runs until stopped.

    ``informer_factory(client, resource, handler)`` makes the informers (a
    test passes fakes); ``backend`` has render(rules) -> Rendered and
    apply(rendered) (agents/policy/backend.py).
    """

    def __init__(self, client: KubeClient | None, config: PolicyAgentConfig, backend,
                 informer_factory: Callable = Informer):
        self.config = config
        self.backend = backend
        self.metrics = PolicyMetrics()
        self.faces = HttpFaces(self.metrics, healthy_within=2 * config.sync_period + 5)
        self.runner = BoundedFrequencyRunner(self.sync, config.min_sync_period,
                                             config.sync_period)
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, object]] = {r: {} for r in PARSERS}
        self._version = 0             # highest resourceVersion seen
        self.last_applied: str | None = None
        self._last_enforced: NodeRules | None = None   # of the last good sync
        self.synced = threading.Event()
        self.informers = {r: informer_factory(client, r, self._handler(r)) for r in PARSERS}

    # --- events -> model ------------------------------------------------------

    def _handler(self, resource: str):
        parse = PARSERS[resource]

        def on_event(kind: str, obj: dict, old: dict | None) -> None:
            key = key_of(obj)
            model = None
            if kind != "DELETED":
                try:
                    model = parse(obj)
                except PolicyModelError as err:   # the API should have refused it
                    log.warning("ignoring %s %s: %s", resource, key, err)
                    self.metrics.ignored_objects += 1
            with self._lock:
                self._version = max(self._version, _resource_version(obj))
                before = self._models[resource].get(key)
                if model is None:
                    self._models[resource].pop(key, None)
                else:
                    self._models[resource][key] = model
                policies = bool(self._models["networkpolicies"])
            if model != before and self._may_change_rules(resource, model, before, policies):
                self.runner.request()
        return on_event

    def _may_change_rules(self, resource: str, model, before, policies: bool) -> bool:
        """Whether a changed object can change this node's rules.  Pods elsewhere and
        namespaces matter only as a policy's peers: with no NetworkPolicy in the
        cluster only this node's own pods (its workload interfaces) do.  Without
        this, a thousand pods starting made every node's agent sync for each."""
        if policies or resource == "networkpolicies":
            return True
        if resource == "pods":
            return any(m is not None and m.node == self.config.node for m in (model, before))
        return False

    def snapshot(self) -> tuple[Cluster, int]:
        """The model as the caches hold it now, and the resourceVersion it reflects."""
        with self._lock:
            def ordered(resource):
                models = self._models[resource]
                return tuple(models[k] for k in sorted(models))
            return (Cluster(pods=ordered("pods"), namespaces=ordered("namespaces"),
                            policies=ordered("networkpolicies")), self._version)

    # --- the sync -------------------------------------------------------------

    def sync(self, full: bool) -> None:
        started = time.monotonic()
        cluster, version = self.snapshot()
        try:
            rules = compute_node_rules(cluster, self.config.node)
            enforced = rules.enforced()
            applied = False
            if full or enforced != self._last_enforced:
                rendered = self.backend.render(rules)
                applied = (full or rendered.repair
                           or rendered.rules_text != self.last_applied)
            if applied:
                self.last_applied = self._last_enforced = None   # unknown until it succeeds
                self.backend.apply(rendered)
                self.last_applied = rendered.rules_text
            self._last_enforced = enforced
        except Exception:
            self.metrics.errors += 1
            raise                              # the runner retries with a full sync
        elapsed = time.monotonic() - started
        m = self.metrics
        m.observe(elapsed)
        if applied:
            m.applies += 1
            m.lines = rendered.lines
        else:
            m.skipped += 1
        m.applied_resource_version = version
        m.policies = len(cluster.policies)
        m.workloads = sum(1 for p in cluster.pods
                          if p.node == self.config.node and p.active)
        counts = rules.counts()
        m.rules = dict(counts) if isinstance(counts, dict) else {}
        m.last_success = time.time()
        self.synced.set()
        if applied:
            log.info("%s sync: %d policies, %d local workloads, %d lines applied in %.3f s",
                     "full" if full else "changed", m.policies, m.workloads,
                     rendered.lines, elapsed)
