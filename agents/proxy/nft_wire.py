"""What svclab's nft text adds, as nf_tables netlink messages of our own.

nft 1.0.6 parses about 15k lines a second here, and a cold 10k-service
table is 40k lines (~3 CPU-seconds of nft, user and kernel; the kernel's
share is about a third).  This module writes the bulk of every sync, the
services' chains, rules and map elements, as netlink operations for
agents.proxy.nfnetlink's batches, so nft's parser is off that path:
``created_ops`` for a full sync's chunks (it hands back the services it
cannot encode, for the caller to write as text) and ``partial_ops`` for a
partial sync (Unencodable when any part needs nft).  Left to nft: the
table's fixed part, kube-proxy's inline vmaps of small clusters, affinity
sets and `update @set`, firewall sets, comments, fib.

Encoded statements (a rule is any sequence of them, a verdict last):

    ip saddr|daddr [!=] A.B.C.D[/8|/16|/24|/32]
    meta l4proto tcp|udp|sctp
    numgen random mod N V
    dnat to A.B.C.D[:PORT]
    jump C | goto C | drop | accept | return

The expressions are the ones nft 1.0.6 sends for the same text (seen with
`nft --debug=netlink`; docs/service-semantics.md has the table): ``payload
load`` + ``cmp`` (a byte-aligned prefix loads only its bytes, as nft
does), ``meta load l4proto``, ``numgen``, ``immediate`` + ``nat``,
``immediate`` verdicts.  Tests compare `nft list table` of a table written
this way with one written by `nft -f`.  Encoding is pure; nothing here
opens a socket.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import NamedTuple

from agents.proxy.nfnetlink import (
    NFNL_SUBSYS_NFTABLES,
    DeleteElements,
    Operation,
    encode_key,
    message,
)
from agents.proxy.nft_plan import CONTAINERS, Chain, Element, NftPlan, ServiceObjects
from agents.proxy.nft_render import PartialChange
from base.netlink import NLA_F_NESTED, PAD, attr, nested, strz

NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE = 0, 3, 6
NFT_MSG_DELRULE, NFT_MSG_NEWSETELEM = 8, 12
NLM_F_CREATE, NLM_F_APPEND = 0x400, 0x800
NFTA_LIST_ELEM, NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFT_REG_VERDICT, NFT_REG_1, NFT_REG_2 = 0, 1, 2
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFT_META_L4PROTO = 16
NFT_NG_RANDOM = 1
NFT_NAT_DNAT, NFPROTO_IPV4 = 1, 2
NF_NAT_RANGE_PROTO_SPECIFIED = 2
VERDICTS = {"drop": 0, "accept": 1, "jump": -3, "goto": -4, "return": -5}
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
ELEMENTS_PER_MESSAGE = 200       # a nested attribute holds at most 64 KiB
_OFFSET = {"saddr": 12, "daddr": 16}
_KEY_TYPES = {name: spec.split(";", 1)[0].removeprefix("type ")
              .split(":")[0].strip() for _, name, spec in CONTAINERS}
_NFT = NFNL_SUBSYS_NFTABLES << 8


class Unencodable(ValueError):
    """A rule or element outside the shapes this module writes."""


# ---------------------------------------------------------- expressions ---

def _be32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!I", value & 0xFFFFFFFF))


def _expr(name: str, *attrs: bytes) -> bytes:
    return nested(NFTA_LIST_ELEM, strz(NFTA_EXPR_NAME, name),
                  nested(NFTA_EXPR_DATA, *attrs))


def _value(data: bytes) -> bytes:
    return attr(NFTA_DATA_VALUE, data)


def _cmp(op: int, data: bytes) -> bytes:
    return _expr("cmp", _be32(1, NFT_REG_1), _be32(2, op),
                 nested(3, _value(data)))


def _verdict_data(word: str, chain: bytes | None) -> bytes:
    """NFTA_DATA_VERDICT { CODE [, CHAIN] } (chain: its name and a NUL)."""
    parts = _be32(NFTA_VERDICT_CODE, VERDICTS[word])
    if chain is not None:
        parts += attr(NFTA_VERDICT_CHAIN, chain)
    return nested(NFTA_DATA_VERDICT, parts)


def _immediate_verdict(word: str, chain: bytes | None) -> bytes:
    return _expr("immediate", _be32(1, NFT_REG_VERDICT),
                 nested(2, _verdict_data(word, chain)))


def _address_match(field: str, op: int, size: int, data: bytes) -> bytes:
    """payload load + cmp; a /8, /16 or /24 loads only its bytes (nft)."""
    return _expr("payload", _be32(1, NFT_REG_1),
                 _be32(2, NFT_PAYLOAD_NETWORK_HEADER),
                 _be32(3, _OFFSET[field]), _be32(4, size)) + _cmp(op, data)


def _immediate(register: int, data: bytes) -> bytes:
    return _expr("immediate", _be32(1, register), nested(2, _value(data)))


# ------------------------------------------------------------ templates ---
#
# The builders above say what the bytes are; a full sync writes ~140k
# messages, too many to build attribute by attribute.  In every shape the
# part that varies (an address, a chain name) is the last thing in its
# nesting, so its bytes are "what comes before it" (which depends only on
# its length), the data, and padding.  Those prefixes are taken from the
# builders once per length; tests check the two ways agree.



@functools.cache
def _prefix(shape: tuple, size: int) -> bytes:
    """The bytes of ``_BUILDERS[shape[0]](*shape[1:], data)`` before a
    ``size``-byte data (then the data and its padding end it)."""
    built = _BUILDERS[shape[0]](*shape[1:], b"\0" * size)
    return built[:len(built) - size - (-size % 4)]


def _fill(shape: tuple, data: bytes) -> bytes:
    return _prefix(shape, len(data)) + data + PAD[len(data) & 3]


_BUILDERS = {"verdict": _immediate_verdict, "match": _address_match,
             "immediate": _immediate,
             "key": lambda data: nested(1, _value(data))}     # SET_ELEM_KEY


def _chain_bytes(name: str) -> bytes:
    return name.encode() + b"\0"


@functools.lru_cache(maxsize=1 << 12)
def verdict_data(word: str, chain: str | None = None) -> bytes:
    """NFTA_DATA_VERDICT of ``jump|goto CHAIN`` or a plain verdict."""
    if word not in VERDICTS or (chain is None) != (word in ("drop", "accept",
                                                           "return")):
        raise Unencodable(f"verdict {word} {chain or ''}".strip())
    return _verdict_data(word, None if chain is None else _chain_bytes(chain))


@functools.lru_cache(maxsize=1 << 12)   # the fixed chains' stay hot
def _verdict(word: str, chain: str | None = None) -> bytes:
    if chain is None:
        return _immediate_verdict(word, None)
    return _fill(("verdict", word), _chain_bytes(chain))


def _match(field: str, negated: bool, value: str) -> bytes:
    if "/" in value:
        return _prefix_match(field, negated, value)
    if field not in _OFFSET:
        raise Unencodable(f"ip {field}")
    op = NFT_CMP_NEQ if negated else NFT_CMP_EQ
    return _prefix(("match", field, op, 4), 4) + _address(value)


@functools.lru_cache(maxsize=1 << 10)
def _prefix_match(field: str, negated: bool, value: str) -> bytes:
    address, _, length = value.partition("/")
    bits = int(length)
    if bits not in (8, 16, 24, 32) or field not in _OFFSET:
        raise Unencodable(f"ip {field} {value} needs a bitwise mask")
    packed = _address(address)
    size = bits // 8
    if any(packed[size:]):
        raise Unencodable(f"{value} has host bits set")
    op = NFT_CMP_NEQ if negated else NFT_CMP_EQ
    return _fill(("match", field, op, size), packed[:size])


def _address(value: str) -> bytes:
    try:
        return socket.inet_aton(value)
    except OSError:
        raise Unencodable(f"address {value}") from None


@functools.lru_cache(maxsize=8)
def _l4proto(name: str) -> bytes:
    if name not in PROTOCOLS:
        raise Unencodable(f"protocol {name}")
    return _expr("meta", _be32(1, NFT_REG_1), _be32(2, NFT_META_L4PROTO)) \
        + _cmp(NFT_CMP_EQ, bytes([PROTOCOLS[name]]))


@functools.lru_cache(maxsize=1 << 10)
def _numgen(modulus: int, value: int) -> bytes:
    return _expr("numgen", _be32(1, NFT_REG_1), _be32(2, modulus),
                 _be32(3, NFT_NG_RANDOM), _be32(4, 0)) \
        + _cmp(NFT_CMP_EQ, struct.pack("=I", value))    # host byte order


_NAT_ADDRESS = _expr("nat", _be32(1, NFT_NAT_DNAT), _be32(2, NFPROTO_IPV4),
                     _be32(3, NFT_REG_1))
_NAT_ADDRESS_PORT = _expr(
    "nat", _be32(1, NFT_NAT_DNAT), _be32(2, NFPROTO_IPV4), _be32(3, NFT_REG_1),
    _be32(5, NFT_REG_2), _be32(7, NF_NAT_RANGE_PROTO_SPECIFIED))


def _dnat(target: str) -> bytes:
    address, _, port = target.partition(":")
    exprs = _prefix(("immediate", NFT_REG_1), 4) + _address(address)
    if not port:
        return exprs + _NAT_ADDRESS
    return exprs + _port_and_nat(port)


@functools.lru_cache(maxsize=1 << 12)
def _port_and_nat(port: str) -> bytes:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise Unencodable(f"port {port}")
    return _fill(("immediate", NFT_REG_2),
                 struct.pack("!H", int(port))) + _NAT_ADDRESS_PORT


def rule_expressions(rule: str) -> bytes:
    """NFTA_RULE_EXPRESSIONS' content for one rule's nft text; raises
    Unencodable for anything outside the module's shapes."""
    words = rule.split()
    out, at, end = [], 0, len(words)
    try:
        while at < end:
            word = words[at]
            if word == "ip":
                negated = words[at + 2] == "!="
                out.append(_match(words[at + 1], negated,
                                  words[at + 2 + negated]))
                at += 3 + negated
            elif word == "meta" and words[at + 1] == "l4proto":
                out.append(_l4proto(words[at + 2]))
                at += 3
            elif word == "numgen" and words[at + 1:at + 3] == ["random", "mod"]:
                out.append(_numgen(int(words[at + 3]), int(words[at + 4])))
                at += 5
            elif word == "dnat" and words[at + 1] == "to":
                out.append(_dnat(words[at + 2]))
                at += 3
            elif word in ("jump", "goto") and at + 2 == end:
                out.append(_verdict(word, words[at + 1]))
                at = end
            elif word in ("drop", "accept", "return") and at + 1 == end:
                out.append(_verdict(word))
                at = end
            else:
                raise Unencodable(f"{word!r} in {rule!r}")
    except (IndexError, KeyError) as exc:
        raise Unencodable(rule) from exc
    except ValueError as exc:
        if isinstance(exc, Unencodable):
            raise
        raise Unencodable(rule) from exc
    return b"".join(out)


# ------------------------------------------------------------ operations ---
#
# Each is one or more messages of a batch (agents.proxy.nfnetlink's
# Operation).  NamedTuples: a full sync makes tens of thousands of them.

@functools.lru_cache(maxsize=64)
def _name_attr(kind: int, name: str) -> bytes:
    return strz(kind, name)


class AddTable(NamedTuple):
    """`add table` (NLM_F_CREATE, no EXCL: an existing table is fine)."""

    @property
    def count(self) -> int:
        return 1

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        return message(_NFT | NFT_MSG_NEWTABLE, last_flags | NLM_F_CREATE,
                        seq, family, _name_attr(1, table))

    def nft_command(self, table: str, index: int = 0) -> str:
        return f"add table {table}"


class WriteChain(NamedTuple):
    """A regular chain: `add chain` (an existing one is fine), `flush
    chain` if ``refill`` (DELRULE naming only the chain), then each rule
    appended (NEWRULE; ``expressions`` are rule_expressions of ``rules``)."""

    name: str
    rules: tuple[str, ...] = ()
    expressions: tuple[bytes, ...] = ()
    refill: bool = False

    @property
    def count(self) -> int:
        return 1 + self.refill + len(self.rules)

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        head = _name_attr(1, table)
        in_chain = head + strz(2, self.name)
        last = self.count - 1                # its flags are last_flags

        def flags_of(i: int) -> int:
            return last_flags if i == last else flags
        out = [message(_NFT | NFT_MSG_NEWCHAIN, NLM_F_CREATE | flags_of(0), seq,
                       family, head + strz(3, self.name))]
        if self.refill:
            out.append(message(_NFT | NFT_MSG_DELRULE, flags_of(1), seq + 1,
                               family, in_chain))
        add = NLM_F_CREATE | NLM_F_APPEND
        for i, exprs in enumerate(self.expressions, start=len(out)):
            out.append(message(_NFT | NFT_MSG_NEWRULE, add | flags_of(i),
                               seq + i, family,
                               in_chain + attr(4 | NLA_F_NESTED, exprs)))
        return b"".join(out)

    def nft_command(self, table: str, index: int = 0) -> str:
        if index == 0:
            return f"add chain {table} {self.name}"
        if self.refill and index == 1:
            return f"flush chain {table} {self.name}"
        rule = self.rules[index - 1 - self.refill]
        return f"add rule {table} {self.name} {rule}"


class AddElements(NamedTuple):
    """`add element` to a set (value None) or verdict map; ``encoded`` is
    each element's NFTA_LIST_ELEM (element_bytes)."""

    container: str
    items: tuple[tuple[str, str | None], ...]
    encoded: tuple[bytes, ...]

    @property
    def count(self) -> int:
        return 1

    def encode(self, table: str, seq: int, family: int, flags: int,
               last_flags: int) -> bytes:
        elements = b"".join(self.encoded)
        return message(_NFT | NFT_MSG_NEWSETELEM, last_flags | NLM_F_CREATE,
                       seq, family, _name_attr(1, table)
                       + _name_attr(2, self.container) + nested(3, elements))

    def nft_command(self, table: str, index: int = 0) -> str:
        items = " , ".join(k if v is None else f"{k} : {v}"
                           for k, v in self.items)
        return f"add element {table} {self.container} {{ {items} }}"


Addition = AddTable | WriteChain | AddElements


def element_bytes(e: Element) -> bytes:
    """One element's NFTA_LIST_ELEM { KEY [, DATA verdict] }; Unencodable
    for comments (userdata) and containers that are not the table's."""
    if e.comment is not None or e.container not in _KEY_TYPES:
        raise Unencodable(f"element {e.item()} of {e.container}")
    try:
        key = _fill(("key",), _key(e.key, _KEY_TYPES[e.container]))
    except (ValueError, KeyError, OSError) as exc:
        raise Unencodable(f"element {e.item()}") from exc
    if e.value is None:
        return nested(NFTA_LIST_ELEM, key)
    return nested(NFTA_LIST_ELEM, key,
                  nested(2, verdict_data(*e.value.split())))    # ELEM_DATA


def _key(key: str, types: str) -> bytes:
    """encode_key, with the service maps' "A . proto . port" done fast."""
    if types == "ipv4_addr":
        return socket.inet_aton(key)
    if types == _ADDR_PROTO_PORT:
        address, proto, port = key.split(" . ")
        return (socket.inet_aton(address) + _PROTO_SLOT[proto]
                + struct.pack("!Hxx", int(port)))
    return encode_key(key, types)


_ADDR_PROTO_PORT = "ipv4_addr . inet_proto . inet_service"
_PROTO_SLOT = {name: bytes([number, 0, 0, 0])
               for name, number in PROTOCOLS.items()}


# ---------------------------------------------------------- from a plan ---

def write_chain(chain: Chain, refill: bool = False) -> WriteChain:
    """A regular chain as a WriteChain (Unencodable if a rule is outside
    the shapes)."""
    return WriteChain(chain.name, chain.rules,
                      tuple(rule_expressions(r) for r in chain.rules), refill)


def add_elements(elements: Iterable[tuple[Element, bytes]]
                 ) -> list[AddElements]:
    """(element, element_bytes) per container, ELEMENTS_PER_MESSAGE to a
    message."""
    by: dict[str, list[tuple[Element, bytes]]] = {}
    for e, encoded in elements:
        by.setdefault(e.container, []).append((e, encoded))
    return [AddElements(name, tuple((e.key, e.value) for e, _ in part),
                        tuple(b for _, b in part))
            for name, items in sorted(by.items())
            for at in range(0, len(items), ELEMENTS_PER_MESSAGE)
            for part in [items[at:at + ELEMENTS_PER_MESSAGE]]]


def created_ops(objects: Sequence[ServiceObjects], plan: NftPlan,
                elements: bool = False, refill: bool = False,
                keep: frozenset[str] | set[str] = frozenset()
                ) -> tuple[list[Addition], list[ServiceObjects]]:
    """nft_render.render_created as netlink operations (same arguments,
    same effect): (the operations, the services left out).  A service
    needing a shape not encoded here (affinity sets among them) is left
    out whole, for the caller to write as text."""
    ops: list[Addition] = [AddTable()]
    ops += [WriteChain(c.name) for c in plan.chains if not c.spec]
    left: list[ServiceObjects] = []
    items: list[tuple[Element, bytes]] = []
    for service in objects:
        try:
            if service.affinity_sets:
                raise Unencodable("affinity sets")
            mine = [write_chain(c, refill) for c in service.chains
                    if c.name not in keep]
            encoded = [(e, element_bytes(e)) for e in service.elements] \
                if elements else []
        except Unencodable:
            left.append(service)
            continue
        ops += mine
        items += encoded
    return ops + add_elements(items), left


def partial_ops(change: PartialChange) -> list[Operation]:
    """A partial sync as one netlink transaction, in render_partial's
    order (see PartialChange); Unencodable when it declares affinity sets
    or holds a shape not encoded here (the caller writes text then)."""
    if change.sets:
        raise Unencodable("affinity sets")
    ops: list[Operation] = []
    deleted = sorted(change.changed_values)
    for name, group in groupby(deleted, key=lambda e: e.container):
        ops.append(DeleteElements(name, tuple(e.key for e in group),
                                  _KEY_TYPES[name]))
    ops += [write_chain(c, c.name in change.refilled) for c in change.written]
    ops += add_elements((e, element_bytes(e)) for e in change.added)
    return ops + list(change.removals)


__all__ = ["AddElements", "AddTable", "Addition", "Unencodable",
           "WriteChain", "add_elements", "created_ops",
           "element_bytes", "partial_ops", "rule_expressions", "verdict_data",
           "write_chain"]
