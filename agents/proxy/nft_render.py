"""Render a RuleSet as `nft -f` input for table `ip kube-proxy`, as kube-proxy does.

The layout is kube-proxy's nftables mode (pkg/proxy/nftables/proxier.go):
base chains on the netfilter hooks, the `services` dispatch through the
`service-ips` / `service-nodeports` verdict maps, `no-endpoint-*` maps for
REJECT/DROP, `firewall-ips` for loadBalancerSourceRanges, the `cluster-ips`
set (REJECT for a wrong port on a live ClusterIP, DROP for unallocated
service IPs), per-service chains `service-<H8>-ns/svc/proto/port` with
`numgen random mod N vmap`, `external-`/`local-`/`firewall-` chains, endpoint
chains with DNAT, affinity via dynamic sets, masquerade by mark.

Rendering happens in two pure steps: ``plan_ruleset`` turns the RuleSet into
an NftPlan (the table's fixed part plus, per (namespace, service), its map
elements, chains and affinity sets), and ``render_transaction`` writes one
transaction that turns a previous state into the plan (full: every chain and
map rewritten; partial: only the given services).  Services are sorted, so
equal inputs give byte-identical text.  Nothing outside the table is named.
"""


from __future__ import annotations

from typing import Iterable, Mapping

from agents.proxy.nft_plan import (  # noqa: F401  (re-exported)
    EMPTY_TABLE, FAMILY, TABLE, AffinitySet, Chain, Element, NftPlan,
    ServiceKey, ServiceObjects, TableState, T, endpoint_chain_base,
    hash_and_truncate, is_affinity_set, is_service_chain, plan_ruleset,
    service_chain_base)
from agents.proxy.ruleset import RuleSet


# ---------------------------------------------------------------- render ---

def render_transaction(plan: NftPlan, existing: TableState = EMPTY_TABLE,
                       old: Mapping[ServiceKey, ServiceObjects] | None = None,
                       changed: Iterable[ServiceKey] | None = None) -> str:
    """One nft -f transaction.

    Full (old is None): the fixed part is (re)declared and flushed, every
    per-service chain rewritten, maps refilled, and chains / affinity sets
    in ``existing`` that the plan does not have are deleted.  Affinity sets
    are never flushed, so client affinity survives a resync.
    Partial (old given): only the services in ``changed`` are touched: map
    elements are deleted/added by difference, changed chains flushed and
    refilled, stale chains and affinity sets deleted — in that order.
    """
    lines: list[str] = []
    if old is None:
        lines.append(f'add table {T} {{ comment "rules for kube-proxy" ; }}')
        for kind, name, spec in plan.containers:
            lines += [f"add {kind} {T} {name} {{ {spec} }}",
                      f"flush {kind} {T} {name}"]
        before: list[ServiceObjects] = []
        after = list(plan.services.values())
        write_all = True
        old_chains = {c for c in existing.chains if is_service_chain(c)}
        old_sets = {s for s in existing.sets if is_affinity_set(s)}
        top = list(plan.chains)
        old_set_objects = {}
    else:
        keys = sorted(set(changed or ()))
        before = [old[k] for k in keys if k in old]
        after = [plan.services[k] for k in keys if k in plan.services]
        write_all = False
        old_chains = {c.name for o in before for c in o.chains}
        old_sets = {s.name for o in before for s in o.affinity_sets}
        top = []
        old_set_objects = {s.name: s for o in before
                           for s in o.affinity_sets}
    old_elements = {(e.container, e.key): e for o in before
                    for e in o.elements}
    new_elements = {(e.container, e.key): e for o in after
                    for e in o.elements}
    old_rules = {c.name: c.rules for o in before for c in o.chains}
    new_chains = [c for o in after for c in o.chains]
    new_names = {c.name for c in new_chains}
    new_sets = {s.name: s for o in after for s in o.affinity_sets}

    # 1. elements that go away or change value
    lines += [e.delete() for k, e in sorted(old_elements.items())
              if new_elements.get(k) != e]
    # 2. (re)declare and flush the chains we write; flush stale ones
    written = top + [c for c in new_chains
                     if write_all or old_rules.get(c.name) != c.rules]
    for chain in written:
        lines += [chain.declare(), f"flush chain {T} {chain.name}"]
    stale_chains = sorted(old_chains - new_names)
    lines += [f"flush chain {T} {name}" for name in stale_chains]
    # 3. delete stale chains and affinity sets (nothing refers to them now)
    lines += [f"delete chain {T} {name}" for name in stale_chains]
    lines += [f"delete set {T} {name}" for name in sorted(old_sets - set(new_sets))]
    # 4. sets, rules, elements
    lines += [s.declare() for name, s in sorted(new_sets.items())
              if write_all or old_set_objects.get(name) != s]
    for chain in written:
        lines += [f"add rule {T} {chain.name} {rule}" for rule in chain.rules]
    if old is None:
        lines += [e.add() for e in plan.elements]
    lines += [e.add() for k, e in sorted(new_elements.items())
              if old_elements.get(k) != e]
    return "\n".join(lines) + "\n"


def render_nftables(ruleset: RuleSet) -> str:
    """Full-sync transaction for an empty namespace (tests, the tracer)."""
    return render_transaction(plan_ruleset(ruleset))


def stale_chains_of(text: str) -> tuple[str, ...]:
    """Chains a rendered transaction deletes."""
    prefix = f"delete chain {T} "
    return tuple(line[len(prefix):] for line in text.splitlines()
                 if line.startswith(prefix))
