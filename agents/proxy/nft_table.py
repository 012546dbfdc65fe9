"""Table `ip kube-proxy` in memory, built by applying nft -f commands.

The nft tracer must trace what the renderer really wrote, and the renderer's
tests must compare transactions by their effect, so this applies the subset
of nft the renderer uses (``add``/``flush``/``delete`` of the table, chains,
sets, maps, elements and rules) in order, the way nft and the kernel would:
rules to missing chains, elements that are not there, chains that still
hold rules or are still referenced, and anything it does not understand
raise TracerError instead of being skipped.  ``expand`` reads the
renderer's block form back as kube-proxy's one-object commands; the rules
themselves are parsed by agents.proxy.nft_rule.  (agents.proxy.model is a
different model: the proxy's Services and EndpointSlices.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.proxy.errors import TracerError
from agents.proxy.nft_rule import Rule, Verdict, parse_rule, parse_verdict, tokens_of


@dataclass(frozen=True)
class BaseChain:
    """What makes a chain a base chain: ``type T hook H priority P``."""

    type: str                   # nat | filter
    hook: str                   # prerouting | output | input | forward | postrouting
    priority: int


@dataclass
class Table:
    """Our table as nft would hold it after the commands applied so far.

    maps: key tuple (e.g. ('10.96.0.1', 'tcp', '443')) -> Verdict, or None
    for a plain element; dynamic: the sets updated from the packet path
    (affinity), whose content the tracer takes from the caller instead.
    """

    chains: dict[str, list[Rule]] = field(default_factory=dict)
    base: dict[str, BaseChain] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    maps: dict[str, dict[tuple[str, ...], Verdict | None]] = field(default_factory=dict)


def _element(toks: list[str], where: str) -> tuple[tuple[str, ...], Verdict | None]:
    """Key tokens and verdict of '{ k . k [comment "x"] [: verdict] }'."""
    if toks[0] != "{" or toks[-1] != "}" or "," in toks:
        raise TracerError(f"one element per command expected: {where}")
    body, verdict = toks[1:-1], None
    if ":" in body:
        at = body.index(":")
        verdict, end = parse_verdict(body, at + 1, where)
        if end != len(body):
            raise TracerError(f"trailing tokens in element: {where}")
        body = body[:at]
    if "comment" in body:
        body = body[:body.index("comment")]
    return tuple(x for x in body if x != "."), verdict


def is_referenced(table: Table, name: str) -> bool:
    """Whether a rule or a map element of table refers to chain or set name."""
    return any(name in rule.references()
               for rules in table.chains.values() for rule in rules) or any(
        v is not None and v.chain == name for m in table.maps.values() for v in m.values())


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
                table.base[obj] = BaseChain(spec[1], spec[3], int(spec[5]))
        elif op == "add" and kind in ("set", "map"):
            store = table.sets if kind == "set" else table.maps
            store.setdefault(obj, set() if kind == "set" else {})
            if "flags" in rest and "dynamic" in rest:
                table.dynamic.add(obj)
        elif op == "add" and kind == "rule":
            if obj not in table.chains:
                raise TracerError(f"no such chain: {fail}")
            rule = parse_rule(obj, rest[1:], number, line)
            for ref in rule.references():
                if ref not in table.chains and ref not in table.sets \
                        and ref not in table.maps:
                    raise TracerError(f"no such object {ref}: {fail}")
            table.chains[obj].append(rule)
        elif op == "add" and kind == "element":
            key, verdict = _element(rest[1:], fail)
            if obj in table.sets:
                table.sets[obj].add(" . ".join(key))
            elif obj in table.maps:
                if verdict and verdict.chain and verdict.chain not in table.chains:
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
            if is_referenced(table, obj) or (kind == "chain" and store[obj]):
                raise TracerError(f"{kind} in use: {fail}")
            del store[obj]
            table.base.pop(obj, None)
            table.dynamic.discard(obj)
        else:
            raise TracerError(f"unsupported command: {fail}")
    return table
