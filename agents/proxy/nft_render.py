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
elements, chains and affinity sets), and the functions here write
transactions: ``render_full`` (every chain and map rewritten),
``render_partial`` (only the given services, plus netlink removals), ``render_created`` (services'
chains written ahead of a full sync's last transaction, in chunks) and
``render_cold_start`` (the first and last transactions of a new table);
``intact_chains`` tells which endpoint chains need no rewrite.  Services are
sorted, so equal inputs give byte-identical text.  Nothing outside the table
is named.

The text is shaped for nft 1.0's cache: a chain and its rules are one
``add chain T c { rule ; ... ; }`` and elements go in as
``add map T m { spec ; elements = { ... } ; }``; both need only nft's table
cache, where ``add rule`` / ``add element`` / ``delete chain`` make nft list
every chain of the table first (~100 ms at 40k chains).  What a partial
sync removes (map elements, chains, affinity sets) is not nft text at all
but ``Transaction.removals``, netlink messages (agents.proxy.nfnetlink):
~4 ms at 10k services where nft took ~400 ms.  ``nft_table.expand`` reads
the text back as kube-proxy's one-object commands.
"""


from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from agents.proxy.nfnetlink import (
    DeleteChain,
    DeleteElements,
    DeleteSet,
    Operation,
    removals_as_text,
)
from agents.proxy.nft_plan import (  # noqa: F401  (re-exported)
    CONTAINERS,
    EMPTY_TABLE,
    FAMILY,
    TABLE,
    AffinitySet,
    Chain,
    Element,
    NftPlan,
    ServiceKey,
    ServiceObjects,
    T,
    TableState,
    endpoint_chain_base,
    hash_and_truncate,
    is_affinity_set,
    is_service_chain,
    plan_ruleset,
    service_chain_base,
    targets_first,
)
from agents.proxy.ruleset import RuleSet

ELEMENTS_PER_LINE = 1000
ENDPOINT = "endpoint-"
_SPEC = {name: (kind, spec) for kind, name, spec in CONTAINERS}
# A table block makes nft read every chain first: only for a new table.
ADD_NEW_TABLE = f'add table {T} {{ comment "rules for kube-proxy" ; }}'
ADD_TABLE = f"add table {T}"


@dataclass(frozen=True)
class Transaction:
    """One `nft -f` input and the stale objects it flushes or deletes.

    A full sync deletes stale chains and affinity sets in its text; a
    partial sync deletes them (and map elements that go away) through
    ``removals``, nf_tables netlink messages sent after the text, because
    any `delete` makes nft read the whole table first.
    """

    text: str
    stale_chains: tuple[str, ...] = ()
    stale_sets: tuple[str, ...] = ()
    removals: tuple[Operation, ...] = ()

    @property
    def lines(self) -> int:
        return self.text.count("\n") + len(self.removals)

    def as_text(self) -> str:
        """Text and removals as one nft -f input (same effect, slower)."""
        return self.text + removals_as_text(self.removals, T)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def _element_lines(op: str, elements: Iterable[Element]) -> list[str]:
    """`add` (as set/map blocks) or `delete` element lines, per container."""
    lines = []
    for name, group in groupby(sorted(elements), key=lambda e: e.container):
        group = list(group)
        for at in range(0, len(group), ELEMENTS_PER_LINE):
            chunk = group[at:at + ELEMENTS_PER_LINE]
            if op == "delete":
                keys = " , ".join(e.key for e in chunk)
                lines.append(f"delete element {T} {name} {{ {keys} }}")
            else:
                kind, spec = _SPEC[name]
                items = " , ".join(e.item() for e in chunk)
                lines.append(f"add {kind} {T} {name} {{ {spec} "
                             f"elements = {{ {items} }} ; }}")
    return lines


def intact_chains(objects: ServiceObjects,
                  existing: TableState) -> frozenset[str]:
    """A service's endpoint chains that need no rewrite (kubernetes#130119).

    An endpoint chain's rules follow from its name (protocol, endpoint IP
    and port are in it) and from whether the service has affinity, which
    its affinity set's existence tells.  svclab never leaves an endpoint
    chain flushed (partial syncs delete stale ones; full syncs flush and
    refill or delete in one transaction), so one in the table is whole.
    """
    with_set = {s.name for s in objects.affinity_sets}
    return frozenset(
        c.name for c in objects.chains
        if c.name.startswith(ENDPOINT) and c.name in existing.chains
        and (_affinity_set(c.name) in with_set)
        == (_affinity_set(c.name) in existing.sets))


def _affinity_set(endpoint_chain: str) -> str:
    return "affinity-" + endpoint_chain[len(ENDPOINT):]


def render_full(plan: NftPlan, existing: TableState = EMPTY_TABLE,
                created: frozenset[str] = frozenset()) -> Transaction:
    """The whole table: fixed part and maps rewritten, every chain refilled.

    ``existing`` names what the table holds now: those chains are flushed
    before being refilled, and those the plan lacks (and affinity sets
    likewise) are deleted.  Chains in ``created`` were written by
    render_created transactions of this sync, or are intact_chains, and are
    left alone.
    Affinity sets are never flushed, so client affinity survives a resync.
    """
    services = list(plan.services.values())
    regular = [c for c in plan.chains if not c.spec]
    base = [c for c in plan.chains if c.spec]
    chains = regular + [c for o in services for c in o.chains] + base
    names = {c.name for c in chains}
    stale = sorted(c for c in existing.chains
                   if is_service_chain(c) and c not in names)
    sets = {s.name: s for o in services for s in o.affinity_sets}
    stale_sets = sorted(s for s in existing.sets
                        if is_affinity_set(s) and s not in sets)

    lines = [ADD_TABLE if existing.exists or created else ADD_NEW_TABLE]
    for kind, name, spec in plan.containers:
        lines += [f"add {kind} {T} {name} {{ {spec} }}",
                  f"flush {kind} {T} {name}"]
    lines += [f"flush chain {T} {c.name}" for c in chains
              if c.name in existing.chains and c.name not in created]
    lines += [f"flush chain {T} {name}" for name in stale]
    lines += [f"delete chain {T} {name}" for name in stale]
    lines += [f"delete set {T} {name}" for name in stale_sets]
    lines += [s.declare() for _, s in sorted(sets.items())]
    for chain in chains:
        if chain.name in created:
            continue
        if chain.spec:
            lines.append(chain.declare())
        if chain.rules or not chain.spec:
            lines.append(chain.block())
    lines += _element_lines("add", plan.elements)
    lines += _element_lines("add", (e for o in services for e in o.elements))
    return Transaction(_text(lines), tuple(stale), tuple(stale_sets))


def render_created(objects: Sequence[ServiceObjects], plan: NftPlan,
                   elements: bool = False, refill: bool = False,
                   keep: frozenset[str] | set[str] = frozenset()) -> str:
    """Write services' chains ahead of a full sync's last transaction.

    New chains: nothing refers to them until the last transaction adds the
    map elements, so these transactions change no packet's fate; the fixed
    chains they jump to are declared (empty) if missing.  This is the
    split kube-proxy considers for cold starts (kubernetes#139328); here it
    lets several nft processes parse at once.  With ``elements`` (a cold
    start, when no hook reaches the table yet) the services' map elements
    come along too.  With ``refill`` (a resync) each chain is flushed and
    refilled, a service at a time in one transaction: in steady state the
    same rules again, else the service moves to its new rules at once.
    Chains in ``keep`` (intact_chains) are left as they are.
    """
    lines = [ADD_TABLE]
    lines += [f"add chain {T} {c.name}" for c in plan.chains if not c.spec]
    lines += [s.declare() for o in objects for s in o.affinity_sets]
    for chain in (c for o in objects for c in o.chains if c.name not in keep):
        if refill:
            lines += [chain.declare(), f"flush chain {T} {chain.name}"]
        lines.append(chain.block())
    if elements:
        lines += _element_lines("add", (e for o in objects
                                        for e in o.elements))
    return _text(lines)


def render_cold_start(plan: NftPlan) -> tuple[str, str]:
    """A new table in steps, (first, last): the first transaction makes the
    table, its sets and maps and the fixed chains no hook reaches yet;
    render_created(..., elements=True) chunks add the services; the last
    hooks the base chains in, so what packets see changes at once."""
    first = [ADD_NEW_TABLE]
    first += [f"add {kind} {T} {name} {{ {spec} }}"
              for kind, name, spec in plan.containers]
    first += [c.block() for c in plan.chains if not c.spec]
    first += _element_lines("add", plan.elements)
    last = [ADD_TABLE]
    for chain in (c for c in plan.chains if c.spec):
        last.append(chain.declare())
        if chain.rules:
            last.append(chain.block())
    return _text(first), _text(last)


@dataclass(frozen=True)
class PartialChange:
    """What a partial sync changes, in the order it must happen: elements
    whose value changes are deleted; ``written`` chains are declared (new)
    or flushed (``refilled``) and filled; the affinity ``sets`` are
    declared (all of the changed services', when any chain is rewritten:
    nft resolves a set only from its cache or the same text); elements
    new or changed are added; then the ``removals`` (elements whose key
    went away, stale chains referrers first, stale affinity sets)."""

    changed_values: tuple[Element, ...]
    written: tuple[Chain, ...]
    refilled: frozenset[str]
    sets: tuple[AffinitySet, ...]
    added: tuple[Element, ...]
    removals: tuple[Operation, ...]
    stale_chains: tuple[str, ...]
    stale_sets: tuple[str, ...]


def partial_change(plan: NftPlan, old: Mapping[ServiceKey, ServiceObjects],
                   changed: Iterable[ServiceKey]) -> PartialChange:
    """Turn the ``changed`` services of ``old`` into those of ``plan``."""
    keys = sorted(set(changed))
    before = [old[k] for k in keys if k in old]
    after = [plan.services[k] for k in keys if k in plan.services]
    old_elements = {(e.container, e.key): e for o in before
                    for e in o.elements}
    new_elements = {(e.container, e.key): e for o in after
                    for e in o.elements}
    old_rules = {c.name: c.rules for o in before for c in o.chains}
    new_chains = [c for o in after for c in o.chains]
    new_names = {c.name for c in new_chains}
    sets = {s.name: s for o in after for s in o.affinity_sets}
    old_sets = {s.name: s for o in before for s in o.affinity_sets}

    written = tuple(c for c in new_chains if old_rules.get(c.name) != c.rules)
    stale = sorted(set(old_rules) - new_names, key=targets_first,
                   reverse=True)
    stale_sets = sorted(set(old_sets) - set(sets))
    declared = written or any(old_sets.get(n) != s for n, s in sets.items())
    gone = sorted(k for k in old_elements if k not in new_elements)
    removals: list[Operation] = [
        DeleteElements(name, tuple(key for _, key in group), _key_types(name))
        for name, group in groupby(gone, key=lambda k: k[0])]
    removals += [DeleteChain(name) for name in stale]
    removals += [DeleteSet(name) for name in stale_sets]
    return PartialChange(
        changed_values=tuple(e for k, e in old_elements.items()
                             if k in new_elements and new_elements[k] != e),
        written=written,
        refilled=frozenset(c.name for c in written if c.name in old_rules),
        sets=tuple(s for _, s in sorted(sets.items())) if declared else (),
        added=tuple(e for k, e in new_elements.items()
                    if old_elements.get(k) != e),
        removals=tuple(removals), stale_chains=tuple(stale),
        stale_sets=tuple(stale_sets))


def render_partial(plan: NftPlan, old: Mapping[ServiceKey, ServiceObjects],
                   changed: Iterable[ServiceKey]) -> Transaction:
    """partial_change as nft text plus netlink ``removals`` (sent after
    it, see nfnetlink).  Nothing in the text makes nft list the table
    unless an element changes its value (a delete)."""
    return partial_transaction(partial_change(plan, old, changed))


def partial_transaction(change: PartialChange) -> Transaction:
    """A PartialChange as render_partial writes it."""
    lines = _element_lines("delete", change.changed_values)
    lines += [f"flush chain {T} {c.name}" if c.name in change.refilled
              else c.declare() for c in change.written]
    lines += [s.declare() for s in change.sets]
    lines += [c.block() for c in change.written if c.rules]
    lines += _element_lines("add", change.added)
    return Transaction(_text(lines), change.stale_chains, change.stale_sets,
                       change.removals)


def _key_types(container: str) -> str:
    """"ipv4_addr . inet_proto . inet_service" of a fixed set or map."""
    spec = _SPEC[container][1]
    return spec.split(";", 1)[0].removeprefix("type ").split(":")[0].strip()


def render_nftables(ruleset: RuleSet) -> str:
    """Full-sync transaction for an empty namespace (tests, the tracer)."""
    return render_full(plan_ruleset(ruleset)).text
