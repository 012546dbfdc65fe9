"""A pure-Python packet tracer over iptables-restore / iptables-save text.

Tests must check what is really applied, so the tracer reads the rendered
text (or iptables-save output of a namespace), not the RuleSet, and walks
the first packet of a connection through the nat and filter hooks:
PREROUTING (packet from outside) or OUTPUT (locally originated), then filter
INPUT/FORWARD/OUTPUT, then nat POSTROUTING.  Random statistic matches branch
into both outcomes with their probabilities; ``-m recent --rcheck`` matches
when the list name is in the ``recent`` set given by the caller (a client
with affinity state), and ``--set`` is reported in the outcome.  It knows
only the match/target subset the renderer uses and raises TracerError on
anything else instead of skipping it.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field, replace

from agents.proxy.errors import TracerError

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
           "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
MODULES = {"tcp", "udp", "sctp", "comment", "addrtype", "statistic", "recent",
           "mark", "conntrack"}
BUILTIN_ALL = {c for chains in BUILTIN.values() for c in chains}
VERDICTS = {"ACCEPT", "DROP", "REJECT", "RETURN"}
MAX_DEPTH = 32


@dataclass(frozen=True)
class Match:
    """One match of a rule; negated matches invert the result."""

    kind: str
    value: object
    negated: bool = False


@dataclass(frozen=True)
class Rule:
    chain: str
    matches: tuple[Match, ...]
    target: str | None
    goto: bool
    options: tuple[tuple[str, str], ...]
    line: int
    text: str

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    dport: int
    protocol: str
    mark: int = 0
    dnat: str | None = None
    recent_set: tuple[str, ...] = ()
    accepted: bool = False
    masquerade: bool = False


@dataclass(frozen=True)
class Outcome:
    """One possible fate of the packet.

    verdict: ACCEPT (DNATed or accepted by one of our rules), DROP, REJECT,
    or NO-MATCH (none of our rules decided anything).  masquerade_mark: the
    0x4000 mark was set in nat; masquerade: POSTROUTING masqueraded it.
    """

    verdict: str
    dnat: str | None
    masquerade_mark: bool
    masquerade: bool
    recent_set: tuple[str, ...] = ()
    probability: float = field(default=0.0, compare=False)


def _net(text: str, rule_text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TracerError(f"bad address {text!r} in: {rule_text}") from exc


def _port_match(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    return int(lo), int(hi or lo)


def _mark(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def parse_rule(chain: str, tokens: list[str], line: int, text: str) -> Rule:
    """Parse the tokens after '-A CHAIN' (raise on anything unknown)."""
    matches: list[Match] = []
    modules: set[str] = set()
    recent: dict[str, str] = {}
    target: str | None = None
    goto = False
    options: list[tuple[str, str]] = []
    neg = False
    i = 0

    def fail(why: str) -> TracerError:
        return TracerError(f"line {line}: {why}: {text}")

    def arg() -> str:
        if i + 1 >= len(tokens):
            raise fail(f"{tokens[i]} needs a value")
        return tokens[i + 1]

    while i < len(tokens):
        tok = tokens[i]
        if target is not None:          # target options
            if tok in ("--to-destination", "--or-mark", "--xor-mark",
                       "--set-xmark", "--set-mark", "--reject-with"):
                options.append((tok, arg()))
                i += 2
            elif tok == "--random-fully":
                options.append((tok, ""))
                i += 1
            else:
                raise fail(f"unsupported target option {tok!r}")
            continue
        if tok == "!":
            neg = True
            i += 1
            continue
        step = 2
        if tok in ("-s", "--source", "-d", "--destination"):
            kind = "src" if tok in ("-s", "--source") else "dst"
            matches.append(Match(kind, _net(arg(), text), neg))
        elif tok in ("-p", "--protocol"):
            matches.append(Match("proto", arg().lower(), neg))
        elif tok in ("-m", "--match"):
            if neg or arg() not in MODULES:
                raise fail(f"unsupported match module {arg()!r}")
            modules.add(arg())
        elif tok in ("--dport", "--destination-port"):
            if not modules & {"tcp", "udp", "sctp"}:
                raise fail("--dport without -m tcp/udp/sctp")
            matches.append(Match("dport", _port_match(arg()), neg))
        elif tok == "--comment" and "comment" in modules:
            pass
        elif tok in ("--dst-type", "--src-type") and "addrtype" in modules:
            if arg() != "LOCAL":
                raise fail(f"unsupported address type {arg()!r}")
            matches.append(Match(tok[2:5] + "_local", True, neg))
        elif tok == "--mode" and "statistic" in modules:
            if arg() != "random":
                raise fail("only --mode random is supported")
        elif tok == "--probability" and "statistic" in modules:
            matches.append(Match("statistic", float(arg()), neg))
        elif tok in ("--name", "--seconds", "--mask") and "recent" in modules:
            recent[tok] = arg()
            if tok == "--mask" and arg() != "255.255.255.255":
                raise fail("only --mask 255.255.255.255 is supported")
        elif tok in ("--rcheck", "--set", "--reap", "--rsource") \
                and "recent" in modules:
            recent[tok] = "!" if neg else ""
            step = 1
        elif tok == "--mark" and "mark" in modules:
            matches.append(Match("mark", _mark(arg()), neg))
        elif tok in ("--ctstate", "--state") and "conntrack" in modules:
            matches.append(Match("ctstate", frozenset(arg().split(",")), neg))
        elif tok in ("-j", "--jump", "-g", "--goto"):
            if neg:
                raise fail("negated target")
            target, goto = arg(), tok in ("-g", "--goto")
        else:
            raise fail(f"unsupported token {tok!r}")
        neg = False
        i += step
    if "--rcheck" in recent and "--set" in recent:
        raise fail("both --rcheck and --set")
    if "--rcheck" in recent or "--set" in recent:
        if "--name" not in recent:
            raise fail("-m recent without --name")
        kind = "rcheck" if "--rcheck" in recent else "rset"
        matches.append(Match(kind, recent["--name"],
                             recent.get("--rcheck") == "!"))
    return Rule(chain, tuple(matches), target, goto, tuple(options), line,
                text)


def parse_tables(text: str) -> dict[str, dict[str, list[Rule]]]:
    """Apply iptables-restore text to empty tables (our subset of syntax)."""
    tables: dict[str, dict[str, list[Rule]]] = {}
    table: dict[str, list[Rule]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
            for chain in BUILTIN.get(line[1:], ()):
                table.setdefault(chain, [])
            continue
        if table is None:
            raise TracerError(f"line {number}: rule outside a table: {line}")
        if line == "COMMIT":
            table = None
            continue
        tokens = shlex.split(line)
        op, chain = tokens[0], tokens[1] if len(tokens) > 1 else ""
        if op.startswith(":"):
            table[op[1:]] = [] if op[1:] not in BUILTIN_ALL else table[op[1:]]
        elif op == "-X":
            table.pop(chain, None)
        elif op in ("-A", "-I"):
            if chain not in table:
                raise TracerError(f"line {number}: no chain {chain}: {line}")
            rest = tokens[2:]
            pos = 0
            if op == "-I" and rest and rest[0].isdigit():
                pos, rest = int(rest[0]) - 1, rest[1:]
            rule = parse_rule(chain, rest, number, line)
            if op == "-A":
                table[chain].append(rule)
            else:
                table[chain].insert(pos, rule)
        else:
            raise TracerError(f"line {number}: unsupported command {op!r}")
    return tables



class Tracer:
    """Walks packets through parsed rules; local_addresses are the node's."""

    def __init__(self, text: str, local_addresses=()) -> None:
        self.tables = parse_tables(text)
        self.local = frozenset(local_addresses)
        self._loopback = ipaddress.ip_network("127.0.0.0/8")

    def is_local(self, ip: str) -> bool:
        return ip in self.local or ipaddress.ip_address(ip) in self._loopback

    def _matches(self, rule: Rule, pk: Packet, recent: frozenset[str]):
        """[(probability factor, matched)] for rule against pk."""
        branch_p: float | None = None
        for m in rule.matches:
            if m.kind == "statistic":
                branch_p = 1.0 - m.value if m.negated else m.value
                continue
            if m.kind == "src":
                ok = ipaddress.ip_address(pk.src) in m.value
            elif m.kind == "dst":
                ok = ipaddress.ip_address(pk.dst) in m.value
            elif m.kind == "proto":
                ok = m.value in ("all", pk.protocol.lower())
            elif m.kind == "dport":
                ok = m.value[0] <= pk.dport <= m.value[1]
            elif m.kind == "dst_local":
                ok = self.is_local(pk.dst)
            elif m.kind == "src_local":
                ok = self.is_local(pk.src)
            elif m.kind == "mark":
                ok = pk.mark & m.value[1] == m.value[0]
            elif m.kind == "ctstate":
                states = {"NEW"} | ({"DNAT"} if pk.dnat else set())
                ok = bool(states & m.value)
            elif m.kind == "rcheck":
                ok = m.value in recent
            elif m.kind == "rset":
                ok = True
            else:
                raise TracerError(f"unknown match {m.kind} in: {rule.text}")
            if ok == m.negated:
                return [(1.0, False)]
        if branch_p is None:
            return [(1.0, True)]
        return [(branch_p, True), (1.0 - branch_p, False)]

    def _apply(self, rule: Rule, pk: Packet) -> Packet:
        for m in rule.matches:
            if m.kind == "rset":
                names = tuple(sorted({*pk.recent_set, m.value}))
                pk = replace(pk, recent_set=names)
        return pk

    def run_chain(self, table: str, chain: str, pk: Packet,
                  recent: frozenset[str], depth: int = 0):
        """[(probability, packet, result)] with result RETURN or a verdict."""
        if depth > MAX_DEPTH:
            raise TracerError(
                f"chain nesting deeper than {MAX_DEPTH} at {chain}")
        rules = self.tables.get(table, {}).get(chain)
        if rules is None:
            raise TracerError(f"jump to missing chain {table}/{chain}")
        results = []
        stack = [(1.0, pk, 0)]
        while stack:
            p, pk, i = stack.pop()
            if i >= len(rules):
                results.append((p, pk, "RETURN"))
                continue
            rule = rules[i]
            for factor, matched in self._matches(rule, pk, recent):
                q = p * factor
                if q <= 0.0:
                    continue
                if not matched:
                    stack.append((q, pk, i + 1))
                    continue
                results.extend(self._target(table, rule, self._apply(rule, pk),
                                            q, i, stack, recent, depth))
        return results

    def _target(self, table, rule, pk, q, i, stack, recent, depth):
        t = rule.target
        if t is None:
            stack.append((q, pk, i + 1))
        elif t in VERDICTS:
            return [(q, replace(pk, accepted=pk.accepted or t == "ACCEPT"), t)]
        elif t == "DNAT":
            to = rule.option("--to-destination")
            if to is None:
                raise TracerError(
                    f"DNAT without --to-destination: {rule.text}")
            ip, _, port = to.partition(":")
            return [(q, replace(pk, dst=ip, dport=int(port or pk.dport),
                                dnat=to), "ACCEPT")]
        elif t == "MASQUERADE":
            return [(q, replace(pk, masquerade=True), "ACCEPT")]
        elif t == "MARK":
            mark = pk.mark
            if rule.option("--or-mark") is not None:
                mark |= int(rule.option("--or-mark"), 0)
            elif rule.option("--xor-mark") is not None:
                mark ^= int(rule.option("--xor-mark"), 0)
            elif rule.option("--set-xmark") is not None:
                value, mask = _mark(rule.option("--set-xmark"))
                mark = (mark & ~mask) ^ value
            else:
                raise TracerError(f"unsupported MARK rule: {rule.text}")
            stack.append((q, replace(pk, mark=mark), i + 1))
        elif t in ("SNAT", "REDIRECT", "LOG", "MASQ"):
            raise TracerError(f"unsupported target {t}: {rule.text}")
        else:
            out = []
            sub = self.run_chain(table, t, pk, recent, depth + 1)
            for q2, pk2, res in sub:
                if res == "RETURN" and not rule.goto:
                    stack.append((q * q2, pk2, i + 1))
                else:
                    out.append((q * q2, pk2, res))
            return out
        return []

    def _hook(self, table: str, chain: str, branches, recent):
        """Run a built-in chain on every live branch; RETURN means policy."""
        out = []
        for p, pk, verdict in branches:
            if verdict in ("DROP", "REJECT") or \
                    chain not in self.tables.get(table, {}):
                out.append((p, pk, verdict))
                continue
            for q, pk2, res in self.run_chain(table, chain, pk, recent):
                kept = res in ("RETURN", "ACCEPT")
                out.append((p * q, pk2, verdict if kept else res))
        return out

    def walk(self, pk, locally_originated: bool, recent: frozenset[str]):
        """Every branch of a first packet through the hooks it meets:
        yields (marked in nat, probability, packet, verdict)."""
        nat_hook = "OUTPUT" if locally_originated else "PREROUTING"
        for p, pk1, verdict in self._hook("nat", nat_hook, [(1.0, pk, "ACCEPT")], recent):
            marked = bool(pk1.mark & 0x4000)
            delivered_locally = self.is_local(pk1.dst)
            if locally_originated:
                hooks = ["OUTPUT"] + (["INPUT"] if delivered_locally else [])
            else:
                hooks = ["INPUT" if delivered_locally else "FORWARD"]
            live = [(p, pk1, verdict)]
            for hook in hooks:
                live = self._hook("filter", hook, live, recent)
            for q, pk2, v in live:
                if v not in ("DROP", "REJECT") and (
                        locally_originated or not delivered_locally):
                    post = self._hook("nat", "POSTROUTING", [(q, pk2, v)], recent)
                else:
                    post = [(q, pk2, v)]
                for r, pk3, v3 in post:
                    yield marked, r, pk3, v3

    def trace(self, src: str, dst: str, dport: int, protocol: str = "TCP", *,
              locally_originated: bool = False,
              recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
        """All possible outcomes for the first packet of a connection."""
        return collect_outcomes(self.walk(
            Packet(src, dst, dport, protocol.upper()), locally_originated, recent))


def final_verdict(pk, verdict: str) -> str:
    """How a finished branch ends: DROP or REJECT, ACCEPT when it was DNATed
    or accepted by one of our rules, NO-MATCH otherwise."""
    return verdict if verdict in ("DROP", "REJECT") else (
        "ACCEPT" if pk.dnat or pk.accepted else "NO-MATCH")


def add_outcome(outcomes: dict, probability: float, pk, verdict: str,
                marked: bool) -> None:
    """Fold one finished branch into outcomes (Outcome -> probability)."""
    key = Outcome(final_verdict(pk, verdict), pk.dnat, marked, pk.masquerade,
                  pk.recent_set)
    outcomes[key] = outcomes.get(key, 0.0) + probability


def collect_outcomes(branches) -> tuple:
    """The sorted outcomes of a walk's (marked, probability, packet, verdict)
    branches, equal outcomes summed."""
    outcomes: dict[Outcome, float] = {}
    for marked, probability, pk, verdict in branches:
        add_outcome(outcomes, probability, pk, verdict, marked)
    return sorted_outcomes(outcomes)


def sorted_outcomes(outcomes: dict) -> tuple:
    return tuple(sorted(
        (replace(o, probability=p) for o, p in outcomes.items()),
        key=lambda o: (o.verdict, o.dnat or "", o.masquerade, o.recent_set)))


def trace(text: str, src: str, dst: str, dport: int, protocol: str = "TCP", *,
          local_addresses=(), locally_originated: bool = False,
          recent: frozenset[str] = frozenset()) -> tuple[Outcome, ...]:
    """Parse text and trace one packet (see Tracer.trace)."""
    return Tracer(text, local_addresses).trace(
        src, dst, dport, protocol, locally_originated=locally_originated,
        recent=recent)
