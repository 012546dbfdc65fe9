"""Which topology rule chose the endpoints a traced packet was spread over.

kube-proxy's rules do not say why a service chain holds the endpoints it
holds; the decision is made before rendering (agents.proxy.topology).  So
the trace computes it again, the same way the node's proxy agent does:
``node_ruleset`` runs agents.proxy's ``compute_ruleset`` over the Services
and EndpointSlices the API returns, for the node's name and zone label, and
``topology_note`` finds the service port whose cluster-wide chain
(KUBE-SVC-* / service-*) or node-local chain (KUBE-SVL-* / local-*) the
walked branch went through and says which rule filled it:

    web/shop:http: zone hints: 2 of 5 endpoints for us-east-1a
    web/shop:http: no topology filtering: endpoint 192.168.1.5 has no zone hints
    web/shop:http: node-local endpoints (1), traffic policy Local: hints not used

Pure: the API objects come in as JSON dicts.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.proxy import names
from agents.proxy.errors import ModelError
from agents.proxy.model import (
    NodeInfo,
    endpoint_slice_from_k8s,
    is_ipv4,
    node_zone,
    service_from_k8s,
)
from agents.proxy.nft_plan import service_chain_base
from agents.proxy.ruleset import RuleSet, ServicePortRules, compute_ruleset
from agents.proxy.topology import UNHINTED


def node_ruleset(node_name: str, addresses: Iterable[str], node: Mapping[str, Any] | None,
                 services: Iterable[Mapping[str, Any]],
                 slices: Iterable[Mapping[str, Any]]) -> RuleSet:
    """The rule set the node's agent computes for these objects (node: the
    Node object, for its zone label; None when it could not be read)."""
    info = NodeInfo(node_name, tuple(a for a in addresses if is_ipv4(a)),
                    zone=node_zone(node) if node else None)
    return compute_ruleset(_parsed(services, service_from_k8s),
                           _parsed(slices, endpoint_slice_from_k8s), info)


def _parsed(objects, parse) -> list:
    out = []
    for obj in objects:
        try:
            out.append(parse(obj))
        except ModelError:          # the agent skips these too (e.g. IPv6)
            continue
    return out


def topology_note(ruleset: RuleSet, chains: Iterable[str], *,
                  zoned: bool = True) -> str | None:
    """The topology rule of the last service chain on the path, or None
    when the path went through no service chain of the rule set (or, on a
    node without a zone label (zoned False), when no endpoint carries a
    hint: there is nothing to explain there)."""
    by_chain: dict[str, tuple[ServicePortRules, bool]] = {}
    for sp in ruleset.service_ports:
        name, protocol, base = str(sp.name), sp.protocol, service_chain_base(sp)
        for chain in (names.cluster_chain(name, protocol), "service-" + base):
            by_chain[chain] = (sp, False)
        for chain in (names.local_chain(name, protocol), "local-" + base):
            by_chain[chain] = (sp, True)
    found = [by_chain[c] for c in chains if c in by_chain]
    if not found:
        return None
    sp, local = found[-1]
    if local:
        return (f"{sp.name}: node-local endpoints ({len(sp.endpoints.local)}), "
                "traffic policy Local: hints not used")
    if not zoned and sp.endpoints.topology is UNHINTED:
        return None
    return f"{sp.name}: {sp.endpoints.topology.describe()}"


__all__ = ["node_ruleset", "topology_note"]
