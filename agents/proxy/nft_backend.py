"""The nftables backend: applies the nft renderer's transactions to the kernel.

Same interface as IptablesBackend (``sync(ruleset, changed_services=None) ->
SyncReport``, ``cleanup()``).

Two writers.  nft 1.0.6 parses about 15k lines a second here, and lists
the whole table before any delete; so what the services add -- their
chains, rules and map elements, the bulk of every sync -- goes as
nf_tables netlink messages of our own (agents.proxy.nft_wire over
agents.proxy.nfnetlink) wherever the rule shapes allow, and nft text
(agents.proxy.nft_render) writes the rest: the table's fixed part and
the services whose shapes only nft writes here (kube-proxy's inline
vmaps of small clusters, affinity sets, firewall sets, comments).

A partial sync (kube-proxy's) trusts what the last successful sync applied
and rewrites only the changed services' map elements, chains and affinity
sets.  When every shape is encodable it is one netlink transaction; else
what it adds goes in one `nft -f` and what goes away (map elements,
chains, affinity sets) in a netlink batch after it, so a packet never
finds a service half gone but for the moment between the two commits,
where the old and the new rules both lead to endpoints.

The backend also remembers the ruleset generation (NFT_MSG_GETGEN) right
after its own commits when it can tell nobody else committed meanwhile:
``unchanged()`` then says, for one netlink round trip, whether the kernel
still holds exactly what the last sync wrote, and the agent skips its
periodic rewrite.  Any other commit in the netns (another table, iptables-
nft, the NetworkPolicy agent's `ip svclab-netpol`) moves the generation on
and the next periodic sync repairs as a full one.

A full sync reads the names of our table's chains and sets first (two
netlink dumps); a small one is one transaction.  A big one with no table
yet (a cold start) makes the table, its maps and fixed chains with no
hook, then the services (chains and map elements) in chunks, planned and
encoded while the kernel takes the chunk before, and hooks the base
chains in last: packets see the whole table at once.  Otherwise endpoint
chains already there are left as they are (their name says all they
hold, kubernetes#130119), the other chains of the services are refilled
in chunks (each service moves at once, the same rules again in steady
state), and maps, fixed part and stale deletions go in one last
transaction.  Chunks nft must write go to up to ``workers`` nft
processes at once.

nft and the kernel apply a transaction atomically, so a failure leaves
the old rules in place; nft's error names the failing line of its input
with context, netlink's the refused message in nft's words, and the next
sync is a full one.  Only ``table ip kube-proxy`` is ever named;
commands run through an injectable ``run`` callable, optionally inside a
network namespace.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from agents.proxy.errors import ContextLine, ProxyCommandError, RuleFileError
from agents.proxy.iptables_backend import (
    CommandResult,
    Runner,
    SyncReport,
    context_around,
    subprocess_runner,
)
from agents.proxy.nfnetlink import NfNetlink, message_count
from agents.proxy.nft_plan import plan_services
from agents.proxy.nft_render import (
    FAMILY,
    TABLE,
    NftPlan,
    PartialChange,
    ServiceKey,
    ServiceObjects,
    TableState,
    Transaction,
    intact_chains,
    partial_change,
    partial_transaction,
    plan_ruleset,
    render_cold_start,
    render_created,
    render_full,
)
from agents.proxy.nft_wire import Unencodable, created_ops, partial_ops
from agents.proxy.ruleset import RuleSet

_ERROR = re.compile(r"^(?:/dev/stdin|-):(\d+):(\d+)-(\d+): Error: (.*)$",
                    re.MULTILINE)

__all__ = ["CommandResult", "NftApplyError", "NftablesBackend",
           "failing_position", "parse_table_state"]


class NftApplyError(RuleFileError):
    """nft -f refused a transaction (nothing of it was applied).

    ``line`` is the 1-based failing line of the input (None when nft did not
    say), ``columns`` the (first, last) columns nft underlined, ``reason``
    nft's message, ``line_text`` the line and ``context`` lines around it.
    """

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, line: int | None,
                 columns: tuple[int, int] | None, reason: str,
                 context: tuple[ContextLine, ...]) -> None:
        self.columns, self.reason = columns, reason
        super().__init__(command, returncode, stderr, line, context,
                         f"nft -f failed: {reason}")


def failing_position(stderr: str) -> tuple[int | None,
                                           tuple[int, int] | None, str]:
    """(line, (col, col), message) of nft's first '/dev/stdin:L:C-C: Error'."""
    found = _ERROR.search(stderr)
    if not found:
        return None, None, stderr.strip().splitlines()[0] if stderr.strip() \
            else "unknown error"
    return (int(found.group(1)), (int(found.group(2)), int(found.group(3))),
            found.group(4).strip())


def parse_table_state(chains_json: str, sets_json: str) -> TableState:
    """Our table's chain and set names from `nft -j list chains/sets ip`."""
    def names(text: str, kind: str) -> frozenset[str]:
        try:
            items = json.loads(text or "{}").get("nftables", [])
        except json.JSONDecodeError as exc:
            raise ProxyCommandError(("nft", "-j", "list", kind), 0, text[:200],
                               "unparseable nft JSON") from exc
        return frozenset(
            i[kind]["name"] for i in items
            if kind in i and i[kind].get("table") == TABLE
            and i[kind].get("family") == FAMILY)
    return TableState(chains=names(chains_json, "chain"),
                      sets=names(sets_json, "set"))


class NftablesBackend:
    """Applies rule sets over netlink and with nft -f, in a netns if given.

    Full syncs with at least ``chunk_chains`` objects to write write them
    in chunks of about that many (None: all in one nft transaction), the
    text ones ``workers`` nft processes at a time.  ``netlink`` is the
    nf_tables socket (default: one in ``netns`` when ``run`` is the real
    subprocess runner; with a fake runner there is no kernel: everything
    goes as nft text, the table is listed with `nft -j` and
    ``unchanged()`` is always False).
    """

    def __init__(self, run: Runner = subprocess_runner,
                 netns: str | None = None, *, binary: str = "nft",
                 timeout_s: float = 120.0, workers: int = 3,
                 chunk_chains: int | None = 5000,
                 netlink: NfNetlink | None = None) -> None:
        self._run = run
        self.netns = netns
        self.binary = binary
        self.timeout_s = timeout_s
        self.workers = workers
        self.chunk_chains = chunk_chains
        self.netlink = netlink if netlink is not None else (
            NfNetlink(netns, timeout_s) if run is subprocess_runner else None)
        self._known: dict[ServiceKey, ServiceObjects] | None = None
        self._known_base: tuple | None = None
        self._generation: int | None = None   # after our last commit, if ours

    def _argv(self, *command: str) -> tuple[str, ...]:
        prefix = ("ip", "netns", "exec", self.netns) if self.netns else ()
        return prefix + (self.binary,) + command

    def _checked(self, argv: tuple[str, ...]) -> str:
        result = self._run(argv, None, self.timeout_s)
        if result.returncode != 0:
            raise ProxyCommandError(argv, result.returncode, result.stderr)
        return result.stdout

    def read_state(self) -> TableState:
        """Names of the chains and sets in our table now (empty if none):
        two netlink dumps, or with no socket both `nft -j` listings at
        once (at 10k services 0.6 s where the dumps take ~0.1 s)."""
        if self.netlink is not None:
            return TableState(chains=self.netlink.names("chain", TABLE),
                              sets=self.netlink.names("set", TABLE))
        with ThreadPoolExecutor(2, thread_name_prefix="nft-list") as pool:
            sets = pool.submit(self._checked,
                               self._argv("-j", "list", "sets", FAMILY))
            chains = self._checked(self._argv("-j", "list", "chains", FAMILY))
            return parse_table_state(chains, sets.result())

    def list_table(self) -> str:
        """`nft list table ip kube-proxy` ('' when the table does not exist)."""
        argv = self._argv("list", "table", FAMILY, TABLE)
        result = self._run(argv, None, self.timeout_s)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return ""
            raise ProxyCommandError(argv, result.returncode, result.stderr)
        return result.stdout

    def apply(self, text: str) -> None:
        """Apply one transaction with nft -f -; raise NftApplyError on error."""
        argv = self._argv("-f", "-")
        result = self._run(argv, text, self.timeout_s)
        if result.returncode == 0:
            return
        line, columns, reason = failing_position(result.stderr)
        raise NftApplyError(argv, result.returncode, result.stderr, line,
                            columns, reason, context_around(text, line))

    def unchanged(self) -> bool:
        """True when nobody committed to nf_tables since our last
        successful sync: the table holds what it wrote (one GETGEN)."""
        return (self._known is not None and self._generation is not None
                and self.netlink is not None
                and self.netlink.generation() == self._generation)

    def _committed(self, start: int | None, commits: int) -> None:
        """Remember the generation after our commits if they are the only
        ones since ``start`` (the generation we knew to be ours before)."""
        if self.netlink is None:
            return
        now = self.netlink.generation()
        ours = start is not None and (start + commits) % (1 << 32) == now
        self._generation = now if ours else None

    def sync(self, ruleset: RuleSet,
             changed_services: frozenset[ServiceKey] | None = None
             ) -> SyncReport:
        """Apply ruleset (see the module's docstring for how).

        Partial when changed_services ((namespace, name) pairs) is given, the
        last sync succeeded and the table's fixed part (node IPs, CIDRs,
        options) is unchanged; full otherwise.
        """
        if changed_services is not None and self._known is not None:
            plan = plan_ruleset(ruleset, frozenset(changed_services))
            if plan.base == self._known_base:
                return self._partial(plan, frozenset(changed_services))
        return self._full(ruleset)

    def _partial(self, plan: NftPlan,
                 changed: frozenset[ServiceKey]) -> SyncReport:
        known, self._known = self._known, None     # re-read after a failure
        start, self._generation = self._generation, None
        change = partial_change(plan, known, changed)
        ops = self._partial_ops(change)
        if ops is not None:                  # one netlink transaction
            self.netlink.apply(ops, TABLE)
            commits, lines = bool(ops), message_count(ops)
        else:
            txn = partial_transaction(change)
            commits, lines = self._apply_partial_text(txn), txn.lines
        self._committed(start, commits)
        for key in changed:
            if key in plan.services:
                known[key] = plan.services[key]
            else:
                known.pop(key, None)
        self._known = known
        return SyncReport(lines=lines, stale_chains=change.stale_chains,
                          inserted_jumps=0, partial=True)

    def _partial_ops(self, change: PartialChange) -> list | None:
        """The partial sync as netlink operations, or None: no socket, or
        a shape only nft writes (affinity sets, comments, vmaps)."""
        if self.netlink is None:
            return None
        try:
            return partial_ops(change)
        except Unencodable:
            return None

    def _apply_partial_text(self, txn: Transaction) -> int:
        """nft -f for what it adds, then the removals over netlink (nft
        lists the whole table before a delete): two commits, between
        which old and new rules both lead to endpoints.  Commits made."""
        if self.netlink is None:
            if txn.text or txn.removals:
                self.apply(txn.as_text())
            return 1 if txn.text or txn.removals else 0
        if txn.text:
            self.apply(txn.text)
        if txn.removals:
            self.netlink.apply(txn.removals, TABLE)
        return bool(txn.text) + bool(txn.removals)

    def _full(self, ruleset: RuleSet) -> SyncReport:
        self._known = self._generation = None
        start = None if self.netlink is None else self.netlink.generation()
        existing = self.read_state()
        plan = plan_ruleset(ruleset, only=frozenset())   # the fixed part
        cold = (not existing.exists and self.chunk_chains is not None
                and len(ruleset.service_ports) + ruleset.total_endpoints
                >= self.chunk_chains)      # else one transaction will do
        lines = 0
        commits = 1
        if cold:                     # nothing hooked yet: all goes ahead
            first, last = render_cold_start(plan)
            self.apply(first)
            lines += first.count("\n")
            commits += 1
        services: dict[ServiceKey, ServiceObjects] = {}
        done: set[str] = set()       # chains intact or written ahead
        with ThreadPoolExecutor(self.workers,
                                thread_name_prefix="nft-ahead") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="nfnl-ahead") as wire:
            jobs = []
            for chunk in self._chunks(plan_services(ruleset), existing,
                                      services, done, cold):
                if self.netlink is not None:    # what it can, over netlink
                    ops, left = created_ops(chunk, plan, elements=cold,
                                            refill=not cold, keep=done)
                    lines += message_count(ops)
                    batch = self.netlink.prepare(ops, TABLE, ack_every=False)
                    jobs.append(wire.submit(self.netlink.send, batch))
                    text_ids = {id(o) for o in left}
                    done.update(c.name for o in chunk
                                if id(o) not in text_ids for c in o.chains)
                    chunk = left
                if chunk:
                    text = render_created(chunk, plan, elements=cold,
                                          refill=not cold, keep=done)
                    lines += text.count("\n")      # rendered while nft parses
                    done.update(c.name for o in chunk for c in o.chains)
                    jobs.append(pool.submit(self.apply, text))
            plan = replace(plan, services=services)
            final = (Transaction(last) if cold else
                     render_full(plan, existing, frozenset(done)))
            for job in jobs:
                job.result()
        self.apply(final.text)
        self._committed(start, commits + len(jobs))
        self._known = dict(services)
        self._known_base = plan.base
        return SyncReport(lines=lines + final.lines,
                          stale_chains=final.stale_chains,
                          inserted_jumps=0, partial=False)

    def _chunks(self, planned, existing: TableState,
                into: dict[ServiceKey, ServiceObjects], intact: set[str],
                cold: bool):
        """Services in chunks of about chunk_chains objects to write, as
        planning goes; every planned service is recorded in ``into`` and its
        intact endpoint chains (left as they are) in ``intact``.  On a cold
        start every service goes into a chunk, with its elements; otherwise
        services with chains to write do, and only if there are at least
        chunk_chains of them in all (else the one transaction has them)."""
        chunk: list[ServiceObjects] = []
        size, sent = 0, False
        for key, objects in planned:
            into[key] = objects
            kept = intact_chains(objects, existing)
            intact.update(kept)
            todo = len(objects.chains) - len(kept)
            if self.chunk_chains is None or not cold and not todo:
                continue
            chunk.append(objects)
            size += todo + (len(objects.elements) if cold else 0)
            if size >= self.chunk_chains:
                yield chunk
                chunk, size, sent = [], 0, True
        if chunk and (sent or cold):
            yield chunk

    def cleanup(self) -> None:
        """Delete table ip kube-proxy (and nothing else); a no-op if absent."""
        self._known = self._known_base = self._generation = None
        self.apply(f"add table {FAMILY} {TABLE}\n"
                   f"delete table {FAMILY} {TABLE}\n")
