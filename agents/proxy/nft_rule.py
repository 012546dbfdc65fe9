"""One nft rule of table `ip kube-proxy`, parsed into typed statements.

The nft tracer walks what the renderer really wrote, so the rules of the
nft text are parsed, not guessed from the RuleSet.  A rule is a sequence of
statements; each kind the renderer writes has its own small frozen type
here (a match, a lookup, a change to the packet, a verdict), so the tracer
and the table model read named fields and say which kinds they handle.
Anything outside that subset raises TracerError instead of being skipped.

    AddrMatch, SetMatch   ip saddr|daddr [!=] CIDR | { CIDR|A-B, .. } | @set
    ProtoMatch, CtState   meta l4proto P; ct state S[,S..]
    PortMatch             th dport [!=] N | N-M | { N, N-M, .. } (after meta l4proto)
    IfaceMatch            iifname|oifname [!=] "name" ("cali*": a prefix)
    FibLocal, MarkMatch   fib saddr|daddr type local; mark and M == V
    MarkSet, SetUpdate    mark set mark or|xor|and V; update @set { ip saddr }
    Dnat, Masquerade      dnat to A[:P]; masquerade [fully-random]
    VmapLookup            ip daddr . meta l4proto . th dport vmap @m (key
                          "addr"), meta l4proto . th dport vmap @m ("port")
    NumgenMatch           numgen random mod M V: a fresh draw, 1/M matches
    NumgenVmap            numgen random mod N vmap { 0 : goto c, .. }
    Verdict               accept drop reject return; jump | goto CHAIN
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from agents.proxy.errors import TracerError

_TOKEN = re.compile(r'"[^"]*"|[{},]|[^\s{},]+')
TERMINAL = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT"}


def tokens_of(line: str) -> list[str]:
    return _TOKEN.findall(line)


@dataclass(frozen=True)
class Verdict:
    kind: str                   # accept drop reject return jump goto
    chain: str | None = None    # the target of jump and goto


@dataclass(frozen=True)
class AddrMatch:
    field: str                  # saddr | daddr
    negated: bool
    nets: tuple[ipaddress.IPv4Network, ...]


@dataclass(frozen=True)
class SetMatch:
    field: str
    negated: bool
    name: str


@dataclass(frozen=True)
class ProtoMatch:
    proto: str


@dataclass(frozen=True)
class CtState:
    state: str                  # one state, or several joined by ","

    def matches(self, state: str) -> bool:
        return state in self.state.split(",")


@dataclass(frozen=True)
class PortMatch:
    negated: bool
    ranges: tuple[tuple[int, int], ...]

    def matches(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges) != self.negated


@dataclass(frozen=True)
class IfaceMatch:
    field: str                  # iifname | oifname
    negated: bool
    name: str                   # a trailing * matches any suffix

    def matches(self, name: str) -> bool:
        found = (name.startswith(self.name[:-1]) if self.name.endswith("*")
                 else name == self.name)
        return found != self.negated


@dataclass(frozen=True)
class FibLocal:
    field: str


@dataclass(frozen=True)
class MarkMatch:
    mask: int
    value: int


@dataclass(frozen=True)
class MarkSet:
    op: str                     # or | xor | and
    value: int


@dataclass(frozen=True)
class SetUpdate:
    name: str


@dataclass(frozen=True)
class Dnat:
    to: str


@dataclass(frozen=True)
class Masquerade:
    pass


@dataclass(frozen=True)
class VmapLookup:
    key: str                    # addr | port
    name: str


@dataclass(frozen=True)
class NumgenMatch:
    mod: int


@dataclass(frozen=True)
class NumgenVmap:
    mod: int
    targets: tuple[tuple[int, Verdict], ...]

    def target(self, number: int) -> Verdict | None:
        return dict(self.targets).get(number)


Statement = (AddrMatch | SetMatch | ProtoMatch | CtState | PortMatch | IfaceMatch
             | FibLocal | MarkMatch
             | MarkSet | SetUpdate | Dnat | Masquerade | VmapLookup | NumgenMatch
             | NumgenVmap | Verdict)


def names_in(item: Statement) -> tuple[str, ...]:
    """The chains, sets and maps a statement refers to."""
    match item:
        case Verdict(chain=str() as chain):
            return (chain,)
        case NumgenVmap(targets=targets):
            return tuple(v.chain for _, v in targets if v.chain)
        case SetMatch(name=name) | SetUpdate(name=name) | VmapLookup(name=name):
            return (name,)
    return ()


@dataclass(frozen=True)
class Rule:
    """One 'add rule': its chain and statements in order; text is the
    command as applied (what a traced path records)."""

    chain: str
    items: tuple[Statement, ...]
    line: int = field(compare=False)
    text: str = field(compare=False)

    def references(self) -> tuple[str, ...]:
        """The chains, sets and maps the rule refers to, in order."""
        return tuple(name for item in self.items for name in names_in(item))


def _net(text: str, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TracerError(f"bad address {text!r} in: {where}") from exc


def _nets(text: str, where: str) -> tuple[ipaddress.IPv4Network, ...]:
    """A CIDR, an address, or a range A-B (as nft lists interval sets)."""
    if "-" not in text:
        return (_net(text, where),)
    lo, _, hi = text.partition("-")
    try:
        return tuple(ipaddress.summarize_address_range(ipaddress.IPv4Address(lo),
                                                       ipaddress.IPv4Address(hi)))
    except ValueError as exc:
        raise TracerError(f"bad address range {text!r} in: {where}") from exc


def _port_range(text: str, where: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or hi and not hi.isdigit():
        raise TracerError(f"bad port {text!r} in: {where}")
    return int(lo), int(hi or lo)


def _values(toks: list[str], i: int) -> tuple[list[str], int]:
    """The values of a '{ a, b }' set or a single value at toks[i]."""
    if toks[i] == "{":
        end = toks.index("}", i)
        return [x for x in toks[i + 1:end] if x != ","], end + 1
    return [toks[i]], i + 1


def parse_verdict(toks: list[str], i: int, where: str) -> tuple[Verdict, int]:
    """The verdict starting at toks[i], and the index after it."""
    if toks[i] in ("goto", "jump"):
        return Verdict(toks[i], toks[i + 1]), i + 2
    if toks[i] in TERMINAL or toks[i] == "return":
        return Verdict(toks[i]), i + 1
    raise TracerError(f"unsupported verdict {toks[i]!r} in: {where}")


def _expect(toks: list[str], i: int, words: list[str], where: str) -> int:
    if toks[i:i + len(words)] != words:
        raise TracerError(f"expected {' '.join(words)!r} at {toks[i:i + 4]} "
                          f"in: {where}")
    return i + len(words)


def parse_rule(chain: str, toks: list[str], line: int, text: str) -> Rule:
    """Parse the statements of one 'add rule' (raise on anything unknown)."""
    items: list[Statement] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        if t == "comment":
            if i + 2 != n or not toks[i + 1].startswith('"'):
                raise TracerError(f"line {line}: comment must end the rule")
            break
        if t == "ip" and toks[i + 1] in ("saddr", "daddr"):
            fld, i = toks[i + 1], i + 2
            if toks[i] == ".":
                i = _expect(toks, i, [".", "meta", "l4proto", ".", "th",
                                      "dport", "vmap"], text)
                items.append(VmapLookup("addr", toks[i][1:]))
                i += 1
                continue
            neg = toks[i] == "!="
            i += neg
            if toks[i].startswith("@"):
                items.append(SetMatch(fld, neg, toks[i][1:]))
                i += 1
            else:
                values, i = _values(toks, i)
                nets = tuple(n for x in values for n in _nets(x, text))
                items.append(AddrMatch(fld, neg, nets))
        elif t == "meta" and toks[i + 1] == "l4proto":
            if toks[i + 2] == ".":
                i = _expect(toks, i + 2, [".", "th", "dport", "vmap"], text)
                items.append(VmapLookup("port", toks[i][1:]))
                i += 1
            else:
                items.append(ProtoMatch(toks[i + 2]))
                i += 3
        elif t == "ct" and toks[i + 1] == "state":
            states, i = [toks[i + 2]], i + 3
            while i + 1 < n and toks[i] == ",":
                states.append(toks[i + 1])
                i += 2
            items.append(CtState(",".join(states)))
        elif t == "th" and toks[i + 1] == "dport":
            i += 2
            neg = toks[i] == "!="
            i += neg
            values, i = _values(toks, i)
            items.append(PortMatch(neg, tuple(_port_range(v, text) for v in values)))
        elif t in ("iifname", "oifname"):
            neg = toks[i + 1] == "!="
            i += 1 + neg
            if not toks[i].startswith('"'):
                raise TracerError(f"line {line}: quoted interface name expected: {text}")
            items.append(IfaceMatch(t, neg, toks[i].strip('"')))
            i += 1
        elif t == "fib":
            if toks[i + 1] not in ("saddr", "daddr"):
                raise TracerError(f"line {line}: unsupported fib: {text}")
            items.append(FibLocal(toks[i + 1]))
            i = _expect(toks, i + 2, ["type", "local"], text)
        elif t == "mark" and toks[i + 1] == "and":
            _expect(toks, i + 3, ["=="], text)
            items.append(MarkMatch(int(toks[i + 2], 0), int(toks[i + 4], 0)))
            i += 5
        elif t == "mark" and toks[i + 1] == "set":
            i = _expect(toks, i + 2, ["mark"], text)
            if toks[i] not in ("or", "xor", "and"):
                raise TracerError(f"line {line}: unsupported mark op: {text}")
            items.append(MarkSet(toks[i], int(toks[i + 1], 0)))
            i += 2
        elif t == "numgen":
            item, i = _numgen(toks, i, line, text)
            items.append(item)
        elif t == "update":
            set_name = toks[i + 1][1:]
            _expect(toks, i + 2, ["{", "ip", "saddr", "}"], text)
            items.append(SetUpdate(set_name))
            i += 6
        elif t == "dnat":
            items.append(Dnat(toks[i + 2]))
            i = _expect(toks, i + 1, ["to"], text) + 1
        elif t == "masquerade":
            items.append(Masquerade())
            i += 1 + (i + 1 < n and toks[i + 1] == "fully-random")
        elif t in ("goto", "jump", "return") or t in TERMINAL:
            verdict, i = parse_verdict(toks, i, text)
            items.append(verdict)
        else:
            raise TracerError(f"line {line}: unsupported statement {t!r}: "
                              f"{text}")
    return Rule(chain, tuple(items), line, text)


def _numgen(toks: list[str], i: int, line: int,
            text: str) -> tuple[NumgenMatch | NumgenVmap, int]:
    """'numgen random mod M V' or 'numgen random mod N vmap { .. }' at i."""
    i = _expect(toks, i + 1, ["random", "mod"], text)
    mod = int(toks[i])
    if toks[i + 1].isdigit():
        if not 0 <= int(toks[i + 1]) < mod:
            raise TracerError(f"line {line}: value >= mod: {text}")
        return NumgenMatch(mod), i + 2
    i = _expect(toks, i + 1, ["vmap", "{"], text)
    targets: list[tuple[int, Verdict]] = []
    while toks[i] != "}":
        key = int(toks[i])
        i = _expect(toks, i + 1, [":"], text)
        verdict, i = parse_verdict(toks, i, text)
        targets.append((key, verdict))
        i += toks[i] == ","
    return NumgenVmap(mod, tuple(targets)), i + 1
