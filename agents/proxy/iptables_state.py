"""What of ours is installed right now, read from iptables-save output.

A sync must delete stale chains of ours in the same transaction and must not
insert our jumps from the built-in chains twice; cleanup must remove exactly
our chains and jumps; a failed restore that had already committed a table
must be put back.  All three need the current state, which this module
parses from iptables-save text and turns into iptables-restore text (pure:
the backend runs the commands).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BUILTIN_CHAINS = frozenset(
    {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
OUR_PREFIX = "KUBE-"


@dataclass(frozen=True)
class SavedRule:
    """One '-A CHAIN spec' line of iptables-save output."""

    table: str
    chain: str
    spec: str
    target: str | None


@dataclass(frozen=True)
class IptablesState:
    """Our chains and jumps currently installed, per table."""

    chains: frozenset[tuple[str, str]] = frozenset()
    rules: tuple[SavedRule, ...] = ()
    # Tables whose rules of our chains are all known (so can be restored).
    complete: frozenset[str] = frozenset()

    def chains_of(self, table: str) -> frozenset[str]:
        return frozenset(c for t, c in self.chains if t == table)

    def jumps(self, table: str) -> tuple[SavedRule, ...]:
        """Rules in built-in chains of table that lead into our chains."""
        return tuple(r for r in self.rules
                     if r.table == table and r.chain in BUILTIN_CHAINS)

    def has_jump(self, table: str, chain: str, target: str) -> bool:
        return any(r.chain == chain and r.target == target
                   for r in self.jumps(table))

    def rules_of(self, table: str, chain: str) -> tuple[SavedRule, ...]:
        return tuple(r for r in self.rules
                     if r.table == table and r.chain == chain)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted({t for t, _ in self.chains}
                            | {r.table for r in self.rules}))


EMPTY_STATE = IptablesState()


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def _target(spec: str) -> str | None:
    # Quoted strings (comments) cannot hold the target; dropping them lets a
    # plain split stand in for shlex, which is slow on 100k+ rules.
    tokens = _QUOTED.sub('""', spec).split()
    for flag in ("-j", "--jump", "-g", "--goto"):
        if flag in tokens:
            i = tokens.index(flag)
            if i + 1 < len(tokens):
                return tokens[i + 1]
    return None


def parse_iptables_save(text: str) -> IptablesState:
    """Extract our (KUBE-*) chains, their rules and our jumps.

    text may hold several tables (iptables-save output of -t nat and
    -t filter concatenated).  Rules of chains that are not ours are kept
    only when they jump into one of our chains.
    """
    table = ""
    chains: set[tuple[str, str]] = set()
    rules: list[SavedRule] = []
    tables: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            tables.add(table)
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(OUR_PREFIX):
                chains.add((table, name))
        elif line.startswith(("-A ", "-I ")):
            # -I appears in rendered (not saved) text; treat it alike.
            _, chain, *rest = line.split(" ", 2)
            spec = rest[0] if rest else ""
            target = _target(spec)
            if chain.startswith(OUR_PREFIX) or (
                    target is not None and target.startswith(OUR_PREFIX)):
                rules.append(SavedRule(table, chain, spec, target))
    return IptablesState(frozenset(chains), tuple(rules), frozenset(tables))


def _section(text: str, table: str) -> str:
    start = text.find(f"*{table}\n")
    if start < 0:
        return ""
    end = text.find("\nCOMMIT\n", start)
    return text[start:end] + "\nCOMMIT\n"


def state_after(before: IptablesState, applied: str,
                nat_chains: frozenset[str]) -> IptablesState:
    """Our state once applied went in, without re-reading the kernel.

    The filter table is rewritten whole by every sync, so its rules are
    known exactly (and can be rolled back later); for nat only the chain
    names are kept (nat is the last table of a sync, never rolled back).
    """
    filter_state = parse_iptables_save(_section(applied, "filter"))
    nat_jumps = parse_iptables_save(_section(applied, "nat")).jumps("nat")
    chains = {("nat", c) for c in nat_chains} | set(filter_state.chains)
    rules = (filter_state.rules + before.jumps("nat") + nat_jumps
             + tuple(r for r in before.jumps("filter")
                     if r not in filter_state.rules))
    return IptablesState(frozenset(chains), rules, frozenset({"filter"}))


def render_cleanup(state: IptablesState) -> str:
    """iptables-restore --noflush input removing our chains and jumps only."""
    out: list[str] = []
    for table in state.tables:
        ours = sorted(state.chains_of(table))
        jumps = [r for r in state.jumps(table)
                 if r.target and r.target.startswith(OUR_PREFIX)]
        if not ours and not jumps:
            continue
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in ours)
        out.extend(f"-D {r.chain} {r.spec}" for r in jumps)
        out.extend(f"-X {c}" for c in ours)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _declared(applied: str, table: str) -> tuple[set[str], list[str]]:
    """Chains declared and built-in jumps inserted for table in applied."""
    current = ""
    chains: set[str] = set()
    inserted: list[str] = []
    for line in applied.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
        elif current != table:
            continue
        elif line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-I "):
            inserted.append(line)
    return chains, inserted


def render_rollback(state: IptablesState, applied: str,
                    tables: tuple[str, ...]) -> str:
    """Undo the effect of applied on tables, back to state.

    Used when iptables-restore committed some tables of a sync and then
    failed on a later one: our chains of those tables get their saved
    content back, chains the sync created are deleted and jumps it inserted
    are removed.
    """
    out: list[str] = []
    for table in tables:
        before = state.chains_of(table)
        declared, inserted = _declared(applied, table)
        created = sorted(c for c in declared - before
                         if c not in BUILTIN_CHAINS)
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in sorted(before))
        out.extend(f":{c} - [0:0]" for c in created)
        out.extend("-D " + line[3:] for line in inserted)
        for chain in sorted(before):
            out.extend(f"-A {chain} {r.spec}"
                       for r in state.rules_of(table, chain))
        out.extend(f"-X {c}" for c in created)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""
