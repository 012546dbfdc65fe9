"""An in-memory model of table `ip kube-proxy`, built from nft -f commands.

The nft tracer must trace what the renderer really wrote, so this parses the
subset of nft the renderer uses (``add``/``flush``/``delete`` of the table,
chains, sets, maps, elements and rules) and applies the commands in order the
way nft and the kernel would: rules to missing chains, elements that are not
there, chains that still hold rules or are still referenced, and anything it
does not understand raise TracerError instead of being skipped.
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
class Rule:
    chain: str
    items: tuple[tuple, ...]
    line: int = field(compare=False)
    text: str = field(compare=False)


@dataclass
class Table:
    """Our table as nft would hold it after the commands applied so far."""

    chains: dict[str, list[Rule]] = field(default_factory=dict)
    base: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    maps: dict[str, dict[tuple[str, ...], tuple[str, str | None]]] = field(
        default_factory=dict)


def _net(text: str, where: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TracerError(f"bad address {text!r} in: {where}") from exc


def _verdict(toks: list[str], i: int, where: str) -> tuple[tuple, int]:
    """('goto'|'jump', chain) or (terminal, None) starting at toks[i]."""
    if toks[i] in ("goto", "jump"):
        return (toks[i], toks[i + 1]), i + 2
    if toks[i] in TERMINAL or toks[i] == "return":
        return (toks[i], None), i + 1
    raise TracerError(f"unsupported verdict {toks[i]!r} in: {where}")


def _expect(toks: list[str], i: int, words: list[str], where: str) -> int:
    if toks[i:i + len(words)] != words:
        raise TracerError(f"expected {' '.join(words)!r} at {toks[i:i + 4]} "
                          f"in: {where}")
    return i + len(words)


def parse_rule(chain: str, toks: list[str], line: int, text: str) -> Rule:
    """Parse the statements of one 'add rule' (raise on anything unknown)."""
    items: list[tuple] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        if t == "comment":
            if i + 2 != n or not toks[i + 1].startswith('"'):
                raise TracerError(f"line {line}: comment must end the rule")
            break
        if t == "ip" and toks[i + 1] in ("saddr", "daddr"):
            fld, i = toks[i + 1][0], i + 2
            if toks[i] == ".":
                i = _expect(toks, i, [".", "meta", "l4proto", ".", "th",
                                      "dport", "vmap"], text)
                items.append(("vmap", "addr", toks[i][1:]))
                i += 1
                continue
            neg = toks[i] == "!="
            i += neg
            if toks[i].startswith("@"):
                items.append(("inset", fld, neg, toks[i][1:]))
                i += 1
            elif toks[i] == "{":
                end = toks.index("}", i)
                nets = tuple(_net(x, text) for x in toks[i + 1:end]
                             if x != ",")
                items.append(("innet", fld, neg, nets))
                i = end + 1
            else:
                items.append(("innet", fld, neg, (_net(toks[i], text),)))
                i += 1
        elif t == "meta" and toks[i + 1] == "l4proto":
            if toks[i + 2] == ".":
                i = _expect(toks, i + 2, [".", "th", "dport", "vmap"], text)
                items.append(("vmap", "port", toks[i][1:]))
                i += 1
            else:
                items.append(("proto", toks[i + 2]))
                i += 3
        elif t == "ct" and toks[i + 1] == "state":
            items.append(("ct", toks[i + 2]))
            i += 3
        elif t == "fib":
            i = _expect(toks, i + 2, ["type", "local"], text) \
                if toks[i + 1] in ("saddr", "daddr") else -1
            if i < 0:
                raise TracerError(f"line {line}: unsupported fib: {text}")
            items.append(("fib", toks[i - 3][0]))
        elif t == "mark" and toks[i + 1] == "and":
            _expect(toks, i + 3, ["=="], text)
            items.append(("mark", int(toks[i + 2], 0), int(toks[i + 4], 0)))
            i += 5
        elif t == "mark" and toks[i + 1] == "set":
            i = _expect(toks, i + 2, ["mark"], text)
            if toks[i] not in ("or", "xor"):
                raise TracerError(f"line {line}: unsupported mark op: {text}")
            items.append(("setmark", toks[i], int(toks[i + 1], 0)))
            i += 2
        elif t == "numgen":
            i = _expect(toks, i + 1, ["random", "mod"], text)
            mod = int(toks[i])
            if toks[i + 1].isdigit():         # numgen random mod M V: 1/M
                if not 0 <= int(toks[i + 1]) < mod:
                    raise TracerError(f"line {line}: value >= mod: {text}")
                items.append(("numgen-eq", mod))
                i += 2
                continue
            i = _expect(toks, i + 1, ["vmap", "{"], text)
            targets: dict[int, tuple] = {}
            while toks[i] != "}":
                key = int(toks[i])
                i = _expect(toks, i + 1, [":"], text)
                targets[key], i = _verdict(toks, i, text)
                i += toks[i] == ","
            items.append(("numgen", mod, targets))
            i += 1
        elif t == "update":
            set_name = toks[i + 1][1:]
            _expect(toks, i + 2, ["{", "ip", "saddr", "}"], text)
            items.append(("update", set_name))
            i += 6
        elif t == "dnat":
            items.append(("dnat", toks[i + 2]))
            i = _expect(toks, i + 1, ["to"], text) + 1
        elif t == "masquerade":
            items.append(("masquerade",))
            i += 1 + (i + 1 < n and toks[i + 1] == "fully-random")
        elif t in ("goto", "jump", "return") or t in TERMINAL:
            verdict, i = _verdict(toks, i, text)
            items.append(("verdict",) + verdict)
        else:
            raise TracerError(f"line {line}: unsupported statement {t!r}: "
                              f"{text}")
    return Rule(chain, tuple(items), line, text)


def _element(toks: list[str], where: str) -> tuple[tuple[str, ...], tuple]:
    """Key tokens and verdict of '{ k . k [comment "x"] [: verdict] }'."""
    if toks[0] != "{" or toks[-1] != "}" or "," in toks:
        raise TracerError(f"one element per command expected: {where}")
    body, verdict = toks[1:-1], (None, None)
    if ":" in body:
        at = body.index(":")
        verdict, end = _verdict(body, at + 1, where)
        if end != len(body):
            raise TracerError(f"trailing tokens in element: {where}")
        body = body[:at]
    if "comment" in body:
        body = body[:body.index("comment")]
    return tuple(x for x in body if x != "."), verdict


def _references(table: Table, name: str) -> bool:
    target = ("goto", "jump")
    for rules in table.chains.values():
        for rule in rules:
            for item in rule.items:
                if item[0] == "verdict" and item[1] in target and \
                        item[2] == name:
                    return True
                if item[0] == "numgen" and any(
                        v[1] == name for v in item[2].values()):
                    return True
                if item[0] in ("inset", "update") and item[-1] == name:
                    return True
                if item[0] == "vmap" and item[2] == name:
                    return True
    return any(v[1] == name for m in table.maps.values() for v in m.values())


def _split(toks: list[str], sep: str) -> list[list[str]]:
    """toks cut at sep tokens outside braces (empty parts dropped)."""
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in toks:
        depth += (tok == "{") - (tok == "}")
        if tok == sep and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _block(toks: list[str], at: int, where: str) -> list[str]:
    """The tokens between toks[at] == '{' and its closing '}' (last token)."""
    if toks[at] != "{" or toks[-1] != "}":
        raise TracerError(f"unbalanced block: {where}")
    return toks[at + 1:-1]


def expand(text: str, name: str = "ip kube-proxy"):
    """(line number, command) of text, one object per command.

    The renderer writes a chain with its rules as one
    ``add chain T c { [type .. hook .. priority .. ;] rule ; rule ; }`` (nft
    then needs no cache of the table's chains), a set or map with its
    elements as ``add map T m { spec ; elements = { e , e } ; }`` and
    deletes elements in lists; this yields them as the kube-proxy-style
    ``add chain`` / ``add rule`` / ``add element`` commands they stand for.
    """
    head = 2 + len(name.split())
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        toks = tokens_of(line)
        if len(toks) <= head or "{" not in toks[head:]:
            yield number, line
            continue
        op, kind, obj = toks[0], toks[1], toks[head]
        prefix = " ".join(toks[:head])          # e.g. "add chain ip kube-proxy"
        table = " ".join(toks[2:head])
        if kind not in ("chain", "set", "map", "element"):
            yield number, line
            continue
        body = _block(toks, head + 1, line)
        parts = _split(body, ";")
        rules = [p for p in parts if p[0] != "type"]
        elements = [p for p in parts if p[0] == "elements"]
        if op != "add" and kind != "element" or (
                kind == "chain" and not rules) or (
                kind in ("set", "map") and not elements):
            yield number, line                  # one object already
            continue
        if kind == "chain":
            if parts[0][0] == "type":
                yield number, f"{prefix} {obj} {{ {' '.join(parts[0])} ; }}"
            else:
                yield number, f"{prefix} {obj}"
            for rule in rules:
                yield number, f"add rule {table} {obj} {' '.join(rule)}"
        elif kind in ("set", "map"):
            spec = " ".join(" ".join(p) + " ;" for p in parts
                            if p[0] != "elements")
            yield number, f"{prefix} {obj} {{ {spec} }}"
            for part in elements:
                if part[1:3] != ["=", "{"]:
                    raise TracerError(f"line {number}: elements = {{ .. }} "
                                      f"expected: {line}")
                for element in _split(_block(part, 2, line), ","):
                    yield number, (f"add element {table} {obj} "
                                   f"{{ {' '.join(element)} }}")
        else:
            for element in _split(body, ","):
                yield number, f"{prefix} {obj} {{ {' '.join(element)} }}"


def apply_commands(text: str, table: Table | None = None,
                   name: str = "ip kube-proxy") -> Table:
    """Apply nft -f text for our table to table (a new one if None)."""
    table = table or Table()
    prefix = len(name.split())
    for number, line in expand(text, name):
        toks = tokens_of(line)
        op, kind = toks[0], toks[1]
        if " ".join(toks[2:2 + prefix]) != name:
            raise TracerError(f"line {number}: not our table: {line}")
        rest = toks[2 + prefix:]
        fail = f"line {number}: {line}"
        if kind == "table":
            if op == "delete":
                table = Table()
            continue
        obj = rest[0] if rest else ""
        if op == "add" and kind == "chain":
            table.chains.setdefault(obj, [])
            if len(rest) > 1:
                spec = rest[2:rest.index("}")]
                if spec[0] != "type" or spec[2] != "hook":
                    raise TracerError(f"bad chain spec: {fail}")
                table.base[obj] = (spec[1], spec[3], int(spec[5]))
        elif op == "add" and kind in ("set", "map"):
            store = table.sets if kind == "set" else table.maps
            store.setdefault(obj, set() if kind == "set" else {})
            if "flags" in rest and "dynamic" in rest:
                table.dynamic.add(obj)
        elif op == "add" and kind == "rule":
            if obj not in table.chains:
                raise TracerError(f"no such chain: {fail}")
            rule = parse_rule(obj, rest[1:], number, line)
            for ref in _referenced_names(rule):
                if ref not in table.chains and ref not in table.sets \
                        and ref not in table.maps:
                    raise TracerError(f"no such object {ref}: {fail}")
            table.chains[obj].append(rule)
        elif op == "add" and kind == "element":
            key, verdict = _element(rest[1:], fail)
            if obj in table.sets:
                table.sets[obj].add(" . ".join(key))
            elif obj in table.maps:
                if verdict[1] and verdict[1] not in table.chains:
                    raise TracerError(f"no such chain: {fail}")
                old = table.maps[obj].get(key)
                if old is not None and old != verdict:
                    raise TracerError(f"element exists: {fail}")
                table.maps[obj][key] = verdict
            else:
                raise TracerError(f"no such set or map: {fail}")
        elif op == "delete" and kind == "element":
            key, _ = _element(rest[1:], fail)
            container = table.sets.get(obj, table.maps.get(obj))
            flat = " . ".join(key) if obj in table.sets else key
            if container is None or flat not in container:
                raise TracerError(f"no such element: {fail}")
            container.remove(flat) if obj in table.sets else \
                container.pop(flat)
        elif op == "flush" and kind == "chain":
            if obj not in table.chains:
                raise TracerError(f"no such chain: {fail}")
            table.chains[obj] = []
        elif op == "flush" and kind in ("set", "map"):
            store = table.sets if kind == "set" else table.maps
            if obj not in store:
                raise TracerError(f"no such {kind}: {fail}")
            store[obj].clear()
        elif op == "delete" and kind in ("chain", "set"):
            store = table.chains if kind == "chain" else table.sets
            if obj not in store:
                raise TracerError(f"no such {kind}: {fail}")
            if _references(table, obj) or (kind == "chain" and store[obj]):
                raise TracerError(f"{kind} in use: {fail}")
            del store[obj]
            table.base.pop(obj, None)
            table.dynamic.discard(obj)
        else:
            raise TracerError(f"unsupported command: {fail}")
    return table


def _referenced_names(rule: Rule):
    for item in rule.items:
        if item[0] == "verdict" and item[2]:
            yield item[2]
        elif item[0] == "numgen":
            yield from (v[1] for v in item[2].values() if v[1])
        elif item[0] in ("inset", "update"):
            yield item[-1]
        elif item[0] == "vmap":
            yield item[2]
