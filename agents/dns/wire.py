"""DNS wire format at the edge: strict query parsing, error replies, truncation.

dnslib does the encoding; this module adds what a server facing hostile
clients needs on top: it checks the header and the question name by hand
before dnslib sees the packet (label lengths, no compression pointers in the
question, name length), decides whether an error reply is possible (FORMERR
needs a header; responses and runts are dropped), and fits an answer into
the client's UDP size with the TC bit.
"""
from __future__ import annotations

import struct

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSHeader, DNSRecord
from dnslib.bimap import BimapError
from dnslib.buffer import BufferError as DnslibBufferError
from dnslib.label import DNSLabelError

from agents.dns.errors import MalformedQuery

HEADER = struct.Struct("!HHHHHH")
HEADER_SIZE = HEADER.size
CLASSIC_UDP_LIMIT = 512
MAX_UDP_PAYLOAD = 4096      # the most we ever send over UDP, whatever the client offers
MAX_TCP_MESSAGE = 65535     # the 2-byte length prefix's limit
OUR_EDNS_PAYLOAD = 1232     # what we advertise (the DNS flag day 2020 value)
MAX_NAME_WIRE_LENGTH = 255
MAX_LABEL_LENGTH = 63
OPCODE_QUERY = 0
CLASS_IN, CLASS_ANY = 1, 255
QR_BIT = 0x8000

# Everything dnslib raises for bytes it cannot decode.
PARSE_ERRORS = (DNSError, DnslibBufferError, BimapError, DNSLabelError, struct.error,
                UnicodeDecodeError, IndexError, ValueError)


def parse_query(data: bytes) -> DNSRecord:
    """A DNSRecord for a well-formed standard query, else MalformedQuery.

    MalformedQuery.header is None when no reply must be sent (runt packet, or a
    packet with the QR bit set, which would let two servers bounce errors forever).
    """
    if len(data) < HEADER_SIZE:
        raise MalformedQuery(f"{len(data)} bytes is shorter than a DNS header")
    _ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data)
    header = data[:HEADER_SIZE]
    if flags & QR_BIT:
        raise MalformedQuery("packet is a response, not a query")
    opcode = (flags >> 11) & 0xF
    if opcode != OPCODE_QUERY:
        raise MalformedQuery(f"opcode {opcode} is not supported", header, RCODE.NOTIMP)
    if qdcount != 1:
        raise MalformedQuery(f"query has {qdcount} questions, expected 1", header)
    _check_question(data, header)
    try:
        return DNSRecord.parse(data)
    except PARSE_ERRORS as error:
        raise MalformedQuery(f"undecodable query: {error}", header) from error


def _check_question(data: bytes, header: bytes) -> None:
    """Walk the question name: plain labels of 1-63 bytes, <= 255 bytes in all."""
    offset = HEADER_SIZE
    while True:
        if offset >= len(data):
            raise MalformedQuery("question name runs past the end of the packet", header)
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length > MAX_LABEL_LENGTH:      # also catches 0xC0 pointers and reserved label types
            raise MalformedQuery(f"label length byte {length:#04x} at offset {offset}", header)
        offset += 1 + length
        if offset - HEADER_SIZE > MAX_NAME_WIRE_LENGTH:
            raise MalformedQuery("question name longer than 255 bytes", header)
    if offset + 4 > len(data):
        raise MalformedQuery("question has no type and class", header)


def error_reply(header: bytes, rcode: int) -> bytes:
    """A header-only reply echoing the query's ID, opcode and RD bit."""
    ident, flags, *_ = HEADER.unpack_from(header)
    reply_flags = QR_BIT | (flags & 0x7900) | (rcode & 0xF)   # keep opcode + RD
    return HEADER.pack(ident, reply_flags, 0, 0, 0, 0)


def request_opt(request: DNSRecord):
    """The request's OPT pseudo-record, or None without EDNS."""
    for record in request.ar:
        if record.rtype == QTYPE.OPT:
            return record
    return None


def udp_limit(request: DNSRecord) -> int:
    """Largest UDP answer for this client: 512, or its EDNS size capped at 4096."""
    opt = request_opt(request)
    if opt is None:
        return CLASSIC_UDP_LIMIT
    return max(CLASSIC_UDP_LIMIT, min(opt.rclass, MAX_UDP_PAYLOAD))


def new_reply(request: DNSRecord, *, authoritative: bool) -> DNSRecord:
    """An empty reply to `request` (same ID, question and RD; RA set; EDNS when asked)."""
    reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=int(authoritative),
                                rd=request.header.rd, ra=1), q=request.q)
    if request_opt(request) is not None:
        reply.add_ar(EDNS0(udp_len=OUR_EDNS_PAYLOAD))
    return reply


def encode(reply: DNSRecord, limit: int | None) -> bytes:
    """Pack `reply`; when it exceeds `limit`, send the header, question and OPT with TC set."""
    data = reply.pack()
    if limit is None or len(data) <= limit:
        return data
    header = DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1)
    truncated = DNSRecord(header, questions=list(reply.questions))
    for record in reply.ar:
        if record.rtype == QTYPE.OPT:
            truncated.add_ar(record)
    return truncated.pack()


def rcode_of(response: bytes) -> int:
    return response[3] & 0xF if len(response) >= 4 else RCODE.SERVFAIL


def rcode_name(rcode: int) -> str:
    return RCODE.get(rcode, f"RCODE{rcode}")


def question_is_internet_class(request: DNSRecord) -> bool:
    return request.q.qclass in (CLASS_IN, CLASS_ANY)
