"""Endpoints of a service port, and the one categorisation every backend uses.

EndpointSlices carry, per slice, the resolved port numbers by port name, so a
named targetPort that differs between pods simply shows up as different
slices.  ``endpoints_by_service_port`` flattens slices into per-(service,
port name, protocol) endpoint lists the way kube-proxy's EndpointSliceCache
does; ``categorize_endpoints`` behaves as kube-proxy's pkg/proxy/topology.go
CategorizeEndpoints: ready endpoints (for the cluster-wide set, only those
the topology hints leave this node: agents.proxy.topology), else
serving+terminating ones (separately for the cluster-wide and the
node-local set), plus whether the service has any usable endpoint at all
(REJECT versus DROP).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from agents.proxy.model import HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL, EndpointSlice, is_ipv4
from agents.proxy.topology import (
    NOT_USED,
    NOTHING_READY,
    UNFILTERED,
    UNHINTED,
    Topology,
    choose_topology,
)


@dataclass(frozen=True)
class Endpoint:
    """One backend of one service port, as seen from this node."""

    ip: str
    port: int
    is_local: bool
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """ip:port, kube-proxy's Endpoint.String()."""
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class PortKey:
    """Identifies a service port: namespace, service, port name, protocol."""

    namespace: str
    service: str
    port_name: str
    protocol: str


@dataclass(frozen=True)
class EndpointCategories:
    """The result of categorize_endpoints.

    cluster: endpoints for Cluster traffic policy (empty when unused);
    local: endpoints for Local traffic policy (empty when unused);
    reachable: union of both, the endpoints that need a KUBE-SEP chain;
    has_any: the service has usable endpoints somewhere in the cluster;
    topology: which topology rule chose the cluster set, and why.
    """

    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    reachable: tuple[Endpoint, ...] = ()
    has_any: bool = False
    topology: Topology = NOT_USED


def slice_is_proxied(endpoint_slice: EndpointSlice) -> bool:
    """kube-proxy's informers skip these labels on slices as on services."""
    return (endpoint_slice.label(SERVICE_PROXY_NAME_LABEL) is None
            and endpoint_slice.label(HEADLESS_LABEL) is None
            and endpoint_slice.service_name is not None
            and endpoint_slice.address_type == "IPv4")


def endpoints_by_service_port(
        slices: Iterable[EndpointSlice],
        node_name: str) -> dict[PortKey, tuple[Endpoint, ...]]:
    """Flatten EndpointSlices into sorted, de-duplicated endpoint lists.

    An address seen in several slices counts once; if the copies disagree on
    locality the local one wins (as in kube-proxy).  Lists are sorted by the
    "ip:port" string, kube-proxy's order.
    """
    found: dict[PortKey, dict[str, Endpoint]] = {}
    for es in sorted(slices, key=lambda s: (s.namespace, s.name)):
        if not slice_is_proxied(es):
            continue
        for port in es.ports:
            if not port.port:
                continue
            key = PortKey(es.namespace, es.service_name or "", port.name,
                          port.protocol)
            bucket = found.setdefault(key, {})
            for ep in es.endpoints:
                if not ep.addresses or not is_ipv4(ep.addresses[0]):
                    continue
                info = Endpoint(ip=ep.addresses[0], port=port.port,
                                is_local=ep.node_name == node_name,
                                ready=ep.ready, serving=ep.serving,
                                terminating=ep.terminating,
                                node_name=ep.node_name, zone=ep.zone,
                                zone_hints=ep.zone_hints,
                                node_hints=ep.node_hints)
                if info.address not in bucket or info.is_local:
                    bucket[info.address] = info
    return {key: tuple(sorted(bucket.values(), key=lambda e: e.address))
            for key, bucket in found.items()}


def categorize_endpoints(endpoints: Iterable[Endpoint], *,
                         uses_cluster: bool,
                         uses_local: bool,
                         node: str = "",
                         zone: str | None = None) -> EndpointCategories:
    """Choose the usable endpoints for Cluster and Local traffic policy.

    uses_cluster / uses_local say whether the service port ever uses the
    cluster-wide or the node-local set (kube-proxy's UsesClusterEndpoints /
    UsesLocalEndpoints).  Ready endpoints are preferred; when a set has none
    it falls back to serving+terminating endpoints, independently.  The
    cluster-wide set keeps only the ready endpoints the topology hints give
    this node (its name, its zone label; agents.proxy.topology): the hints
    are judged before the fallback, so a node whose hinted endpoints exist
    never falls back, and the Local set ignores hints.
    """
    endpoints = tuple(endpoints)
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    has_any = False
    topology = NOT_USED
    if uses_cluster:
        cluster = tuple(e for e in endpoints if e.ready)
        for ep in cluster:
            if ep.zone_hints or ep.node_hints:
                topology = choose_topology(cluster, node, zone)
                if topology.mode != UNFILTERED:
                    cluster = tuple(e for e in cluster if topology.allows(e))
                break
        else:       # no ready endpoint has hints (labs without zones): the fast way
            topology = UNHINTED if cluster else NOTHING_READY
        if not cluster:
            cluster = tuple(e for e in endpoints
                            if e.serving and e.terminating)
            if cluster:
                topology = replace(topology, fallback=len(cluster))
        has_any = bool(cluster)
    if not uses_local:
        return EndpointCategories(cluster, (), cluster, has_any, topology)

    usable = [e for e in endpoints if e.ready or (e.serving and e.terminating)]
    has_any = has_any or bool(usable)
    local = tuple(e for e in endpoints if e.is_local and e.ready)
    fell_back = False
    if not local:
        local = tuple(e for e in endpoints
                      if e.is_local and e.serving and e.terminating)
        fell_back = bool(local)
    if not uses_cluster:
        return EndpointCategories((), local, local, has_any, topology)
    if not fell_back and topology.mode == UNFILTERED:
        # local holds only ready endpoints and cluster every ready one.
        return EndpointCategories(cluster, local, cluster, has_any, topology)
    # Hints may leave a ready local endpoint out of cluster: merge the two.
    merged = {e.address: e for e in cluster + local}
    reachable = tuple(merged[a] for a in sorted(merged))
    return EndpointCategories(cluster, local, reachable, has_any, topology)
