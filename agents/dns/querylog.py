"""The log plugin's lines: one per query, in CoreDNS's format (pure).

CoreDNS's log plugin (plugin/log, plugin/pkg/replacer) writes, for each
query under a rule's name, the rule's format with its placeholders filled
from the query and the reply; the default is the Common Log Format
(COMMON_LOG_FORMAT in agents/dns/coreplugins.py), printed with the `[INFO] `
prefix of CoreDNS's logger, e.g. (one line)

    [INFO] 10.244.0.5:57323 - 45139 "A IN kubernetes.default.svc.cluster.local.
    udp 54 false 512" NOERROR qr,aa,rd 106 0.000123s

A rule logs only the response classes it names (success, denial, error,
all), classified as plugin/pkg/response does.  The first rule whose name
matches the query decides, as in the plugin.
"""
from __future__ import annotations

import re
import struct
from decimal import Decimal

from dnslib import CLASS, QTYPE, DNSBuffer, DNSRecord

from agents.dns.coreplugins import LogRule
from agents.dns.wire import HEADER, HEADER_SIZE, PARSE_ERRORS, rcode_name

FLAG_NAMES = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"),
              (0x0040, "z"), (0x0020, "ad"), (0x0010, "cd"))
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
OPT = 41
EMPTY = "-"


class Query:
    """What the log needs from a query's bytes; `Query.read(data)` is None if unreadable."""

    __slots__ = ("ident", "opcode", "qname", "name", "qtype", "qclass", "size", "udp_size",
                 "do")

    @classmethod
    def read(cls, data: bytes) -> Query | None:
        try:
            return cls(data)
        except (IndexError, struct.error, ValueError):
            return None

    def __init__(self, data: bytes):
        ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
        if qdcount != 1:
            raise ValueError("not one question")
        self.ident, self.opcode, self.size = ident, (flags >> 11) & 0xF, len(data)
        labels, offset = [], HEADER_SIZE
        while (length := data[offset]) != 0:
            if length & 0xC0:
                raise ValueError("compressed question")
            labels.append(data[offset + 1:offset + 1 + length])
            offset += 1 + length
        self.qname = ".".join(_escape(x) for x in labels) + "."
        self.name = self.qname.lower()
        self.qtype, self.qclass = struct.unpack_from("!HH", data, offset + 1)
        self.udp_size, self.do = 0, False
        offset += 5
        for index in range(ancount + nscount + arcount):
            offset = _skip_name(data, offset)
            rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
            if rtype == OPT and index >= ancount + nscount:
                self.udp_size, self.do = rclass, bool(ttl & 0x8000)
            offset += 10 + rdlength

    def bufsize(self, udp: bool) -> int:
        """What CoreDNS's {>bufsize} shows: 65535 over TCP, else the EDNS size, 512 at least."""
        return 65535 if not udp else max(512, self.udp_size)


def _escape(label: bytes) -> str:
    out = []
    for byte in label:
        char = chr(byte)
        if char in '.\\"();@$ ':
            out.append("\\" + char)
        elif 0x21 <= byte <= 0x7E:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def response_class(response: bytes) -> str:
    """success, denial (NXDOMAIN or no data) or error, as plugin/pkg/response classifies."""
    _, flags, _, ancount, nscount, _ = HEADER.unpack_from(response)
    rcode = flags & 0xF
    if rcode == 3:
        return "denial"
    if rcode != 0:
        return "error"
    return "success" if ancount or (nscount and not _has_soa(response)) else "denial"


def _has_soa(response: bytes) -> bool:
    try:
        _, _, qdcount, ancount, nscount, _ = HEADER.unpack_from(response)
        offset = HEADER_SIZE
        for _ in range(qdcount):
            offset = _skip_name(response, offset) + 4
        for index in range(ancount + nscount):
            offset = _skip_name(response, offset)
            rtype, _, _, rdlength = struct.unpack_from("!HHIH", response, offset)
            if rtype == 6 and index >= ancount:
                return True
            offset += 10 + rdlength
    except (IndexError, struct.error):
        return False
    return False


class _Uncompressed(DNSBuffer):
    def encode_name(self, name) -> None:
        self.encode_name_nocompress(name)


def uncompressed_size(response: bytes) -> int:
    """CoreDNS's {rsize}: the reply's length without name compression."""
    try:
        reply = DNSRecord.parse(response)
        buffer = _Uncompressed()
        reply.header.pack(buffer)
        for question in reply.questions:
            question.pack(buffer)
        for record in (*reply.rr, *reply.auth, *reply.ar):
            record.pack(buffer)
        return len(buffer.data)
    except PARSE_ERRORS:        # a reply dnslib cannot read again: its own length
        return len(response)


def _flags(response: bytes) -> str:
    flags = HEADER.unpack_from(response)[1]
    return ",".join(name for bit, name in FLAG_NAMES if flags & bit) or EMPTY


def _duration(seconds: float) -> str:
    """Go's strconv.FormatFloat(secs, 'f', -1, 64) + "s": shortest digits, no exponent."""
    return format(Decimal(repr(max(0.0, seconds))), "f") + "s"


def type_name(qtype: int) -> str:
    return QTYPE.forward.get(qtype, f"TYPE{qtype}")


def _class_name(qclass: int) -> str:
    return CLASS.forward.get(qclass, f"CLASS{qclass}")


def _address(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def render(fmt: str, query: Query, response: bytes, udp: bool, remote: tuple[str, int],
           local: str, seconds: float) -> str:
    """One log line (without the `[INFO] ` prefix) for `fmt`'s placeholders."""
    values = {
        "{type}": lambda: type_name(query.qtype),
        "{name}": lambda: query.name,
        "{class}": lambda: _class_name(query.qclass),
        "{proto}": lambda: "udp" if udp else "tcp",
        "{size}": lambda: str(query.size),
        "{remote}": lambda: _address(remote[0]),
        "{port}": lambda: str(remote[1]),
        "{local}": lambda: _address(local),
        "{>id}": lambda: str(query.ident),
        "{>opcode}": lambda: str(query.opcode),
        "{>do}": lambda: "true" if query.do else "false",
        "{>bufsize}": lambda: str(query.bufsize(udp)),
        "{rcode}": lambda: rcode_name(HEADER.unpack_from(response)[1] & 0xF),
        "{rsize}": lambda: str(uncompressed_size(response)),
        "{duration}": lambda: _duration(seconds),
        "{>rflags}": lambda: _flags(response),
    }
    def value(match: re.Match) -> str:
        label = match.group(0)
        if label in values:
            return values[label]()
        return EMPTY if label.startswith("{/") else label     # no metadata; others literal
    return _PLACEHOLDER.sub(value, fmt)


def matching_rule(rules: tuple[LogRule, ...], name: str) -> LogRule | None:
    for rule in rules:
        if rule.zone == "." or name == rule.zone or name.endswith("." + rule.zone):
            return rule
    return None


def log_line(rules: tuple[LogRule, ...], data: bytes, response: bytes | None, udp: bool,
             remote: tuple[str, int], local: str, seconds: float) -> str | None:
    """The `[INFO] ...` line the log plugin writes for this exchange, or None."""
    if not rules or response is None or len(response) < HEADER_SIZE:
        return None
    query = Query.read(data)
    if query is None:
        return None
    rule = matching_rule(rules, query.name)
    if rule is None:
        return None
    if "all" not in rule.classes and response_class(response) not in rule.classes:
        return None
    return "[INFO] " + render(rule.format, query, response, udp, remote, local, seconds)
