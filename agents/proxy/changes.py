"""Tracking what changed between syncs (pure, no API access).

The agent feeds watch events of Services and EndpointSlices in; the tracker
keeps the current objects, drops no-op updates (an update whose parsed
object equals the previous one, e.g. a status or annotation change the data
plane does not depend on), and says which services need their rules
rewritten — the input of a partial sync.  ``stale_udp_flows`` compares two
rule sets and lists the UDP conntrack entries to flush when endpoints go
away, as kube-proxy does (UDP has no connection end to clear them).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.proxy.errors import ModelError
from agents.proxy.model import EndpointSlice, Service
from agents.proxy.ruleset import RuleSet, ServicePortRules

ServiceKey = tuple[str, str]        # (namespace, name)
ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"


class ChangeTracker:
    """Current Services and EndpointSlices, and services changed since
    the last take()."""

    def __init__(self) -> None:
        self._services: dict[ServiceKey, Service] = {}
        self._slices: dict[tuple[str, str], EndpointSlice] = {}
        self._pending: set[ServiceKey] = set()

    @staticmethod
    def _check(event: str) -> None:
        if event not in (ADDED, MODIFIED, DELETED, BOOKMARK):
            raise ModelError(f"unknown watch event type {event!r}")

    def on_service(self, event: str, service: Service) -> bool:
        """Record a Service watch event; True when it changes anything."""
        self._check(event)
        if event == BOOKMARK:
            return False
        key = (service.namespace, service.name)
        old = self._services.get(key)
        if event == DELETED:
            if old is None:
                return False
            del self._services[key]
        else:
            if old == service:
                return False
            self._services[key] = service
        self._pending.add(key)
        return True

    def on_endpoint_slice(self, event: str, es: EndpointSlice) -> bool:
        """Record an EndpointSlice watch event; True if it changes anything."""
        self._check(event)
        if event == BOOKMARK:
            return False
        key = (es.namespace, es.name)
        old = self._slices.get(key)
        if event == DELETED:
            if old is None:
                return False
            del self._slices[key]
        else:
            if old == es:
                return False
            self._slices[key] = es
        for s in (old, None if event == DELETED else es):
            if s is not None and s.service_name:
                self._pending.add((s.namespace, s.service_name))
        return True

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(self._services[k] for k in sorted(self._services))

    @property
    def slices(self) -> tuple[EndpointSlice, ...]:
        return tuple(self._slices[k] for k in sorted(self._slices))

    def objects_of(self, keys: frozenset[ServiceKey]
                   ) -> tuple[tuple[Service, ...], tuple[EndpointSlice, ...]]:
        """The Services and EndpointSlices of these services only (what a
        partial sync computes again), without sorting everything."""
        return (tuple(self._services[k] for k in sorted(keys)
                      if k in self._services),
                tuple(s for s in self._slices.values()
                      if (s.namespace, s.service_name) in keys))

    @property
    def pending(self) -> frozenset[ServiceKey]:
        return frozenset(self._pending)

    def take(self) -> frozenset[ServiceKey]:
        """Services changed since the last take (and forget them)."""
        taken, self._pending = frozenset(self._pending), set()
        return taken


@dataclass(frozen=True)
class StaleUDPFlow:
    """UDP conntrack entries to delete.

    destination is the service address the client used (cluster IP,
    external IP or LB IP), or None for a NodePort (any node address).
    endpoint_ip set: flows DNATed to that vanished endpoint; None: flows to
    a service that had no endpoints (and so were not DNATed) and has some now.
    """

    destination: str | None
    port: int
    endpoint_ip: str | None

    def conntrack_argv(self) -> tuple[str, ...]:
        """conntrack(8) arguments that delete exactly these entries."""
        argv = ["conntrack", "-D", "-p", "udp"]
        if self.destination is not None:
            argv += ["--orig-dst", self.destination]
        argv += ["--orig-port-dst", str(self.port)]
        if self.endpoint_ip is not None:
            argv += ["--dst-nat", self.endpoint_ip]
        return tuple(argv)


def _entries(sp: ServicePortRules) -> list[tuple[str | None, int]]:
    found: list[tuple[str | None, int]] = [(sp.cluster_ip, sp.port)]
    found += [(ip, sp.port) for ip in sp.external_ips + sp.load_balancer_ips]
    if sp.node_port:
        found.append((None, sp.node_port))
    return found


def stale_udp_flows(old: RuleSet, new: RuleSet) -> tuple[StaleUDPFlow, ...]:
    """UDP flows to flush after going from old to new (sorted, unique)."""
    before = {(sp.name, sp.cluster_ip): sp for sp in old.service_ports
              if sp.protocol == "UDP"}
    flows: set[StaleUDPFlow] = set()
    for sp in new.service_ports:
        if sp.protocol != "UDP":
            continue
        prev = before.pop((sp.name, sp.cluster_ip), None)
        old_ips = {e.ip for e in prev.endpoints.reachable} if prev else set()
        gone = old_ips - {e.ip for e in sp.endpoints.reachable}
        for dest, port in _entries(sp):
            flows.update(StaleUDPFlow(dest, port, ip) for ip in gone)
            if sp.has_endpoints and (prev is None or not prev.has_endpoints):
                flows.add(StaleUDPFlow(dest, port, None))
    for prev in before.values():          # removed service ports
        for dest, port in _entries(prev):
            flows.update(StaleUDPFlow(dest, port, e.ip)
                         for e in prev.endpoints.reachable)
    return tuple(sorted(flows, key=lambda f: (f.destination or "", f.port,
                                              f.endpoint_ip or "")))
