"""How the cluster DNS answers one query, as a function of the Zone.

`answer(zone, request, upstream)` follows the Kubernetes DNS specification as
CoreDNS's `kubernetes` plugin implements it (kubeadm's Corefile: pods
insecure, ttl 30, reverse zones, forward to the VPC resolver). It does no I/O
itself: the only way out is the `upstream` callable, used for names outside
the zone and to chase ExternalName CNAMEs. With upstream=None, outside names
are REFUSED and ExternalName answers stop at the CNAME.
"""
from __future__ import annotations

from collections.abc import Callable

from dnslib import (
    AAAA,
    CNAME,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    SRV,
    A,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from agents.dns import wire
from agents.dns.errors import MalformedQuery, UpstreamError
from agents.dns.zone import REVERSE_V4, Authority, Record, Zone

Upstream = Callable[[DNSRecord], DNSRecord]
MAX_CNAME_HOPS = 8
SOA_TIMES = (7200, 1800, 86400)       # refresh, retry, expire as CoreDNS announces them


def _rdata(record: Record):
    if record.rtype == "A":
        return A(record.target)
    if record.rtype == "AAAA":
        return AAAA(record.target)
    if record.rtype == "CNAME":
        return CNAME(record.target)
    if record.rtype == "PTR":
        return PTR(record.target)
    if record.rtype == "NS":
        return NS(record.target)
    if record.rtype == "SRV":
        return SRV(record.priority, record.weight, record.port, record.target)
    raise ValueError(f"unknown record type {record.rtype}")


def _rr(owner, record: Record, ttl: int) -> RR:
    return RR(owner, getattr(QTYPE, record.rtype), rdata=_rdata(record), ttl=ttl)


def _under(domain: str) -> str:
    """`domain` as a suffix for names below it ("" + "." is the root)."""
    return "" if domain == "." else domain


def _soa(zone: Zone, authority: Authority) -> RR:
    owner = zone.domain if authority is Authority.CLUSTER else REVERSE_V4
    rdata = SOA(f"ns.dns.{_under(zone.domain)}", f"hostmaster.{_under(zone.domain)}",
                (zone.serial, *SOA_TIMES, zone.ttl))
    return RR(owner, QTYPE.SOA, rdata=rdata, ttl=zone.ttl)


def _apex_records(zone: Zone, name: str) -> tuple[Record, ...]:
    if name == zone.domain:
        return (Record("NS", f"ns.dns.{_under(zone.domain)}"),)
    return ()


def answer(zone: Zone, request: DNSRecord | bytes, upstream: Upstream | None = None) -> DNSRecord:
    """The reply to one query (not yet fitted to a transport; see wire.encode).

    Raises MalformedQuery for undecodable bytes; UpstreamNeeded propagates from
    an upstream placeholder that refuses to be called (the server's in-loop pass).
    """
    if isinstance(request, (bytes, bytearray)):
        request = wire.parse_query(bytes(request))
    if not wire.question_is_internet_class(request):
        return rcode_only(request, RCODE.REFUSED)
    name = normalized_name(request.q.qname)
    authority = zone.classify(name) if name is not None else Authority.UPSTREAM
    if authority is Authority.CLUSTER and zone.fallthrough and zone.falls_through(name) \
            and not zone.lookup(name).exists:
        authority = Authority.UPSTREAM          # `fallthrough`: the next plugin answers
    if authority is Authority.UPSTREAM:
        return forward(request, upstream)
    reply = wire.new_reply(request, authoritative=True)
    _answer_authoritative(zone, request, name, authority, reply, upstream)
    return reply


def normalized_name(qname: DNSLabel) -> str | None:
    """Lowercase dotted name; None when a label holds bytes no zone name can contain."""
    labels = []
    for label in qname.label:
        if b"." in label:
            return None
        try:
            labels.append(label.decode("ascii").lower())
        except UnicodeDecodeError:
            return None
    return ".".join(labels) + "."


def rcode_only(request: DNSRecord, rcode: int) -> DNSRecord:
    reply = wire.new_reply(request, authoritative=False)
    reply.header.rcode = rcode
    return reply


def _answer_authoritative(zone, request, name, authority, reply, upstream) -> None:
    qtype = request.q.qtype
    owner = request.q.qname
    for _hop in range(MAX_CNAME_HOPS):
        lookup = zone.lookup(name)
        records = lookup.records + _apex_records(zone, name)
        if not lookup.exists:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa(zone, authority))
            return
        if qtype == QTYPE.SOA and name == zone.domain:
            reply.add_answer(_soa(zone, authority))
            return
        matching = [r for r in records if qtype == QTYPE.ANY or getattr(QTYPE, r.rtype) == qtype]
        if matching:
            for record in matching:
                reply.add_answer(_rr(owner, record, zone.ttl))
            _add_srv_glue(zone, matching, reply)
            return
        cnames = [r for r in records if r.rtype == "CNAME"]
        if not cnames:
            reply.add_auth(_soa(zone, authority))      # NODATA: the name exists, not this type
            return
        reply.add_answer(_rr(owner, cnames[0], zone.ttl))
        target = cnames[0].target.lower()
        target_authority = zone.classify(target)
        if target_authority is Authority.UPSTREAM:
            _chase_upstream(request, target, reply, upstream)
            return
        name, owner, authority = target, target, target_authority
    reply.header.rcode = RCODE.SERVFAIL                 # a CNAME loop inside the zone


def _add_srv_glue(zone: Zone, answered: list[Record], reply: DNSRecord) -> None:
    """A/AAAA of SRV targets in the additional section, as CoreDNS sends them."""
    targets = sorted({r.target for r in answered if r.rtype == "SRV"})
    for target in targets:
        for record in zone.lookup(target).records:
            if record.rtype in ("A", "AAAA"):
                reply.add_ar(_rr(target, record, zone.ttl))


def _chase_upstream(request, target: str, reply: DNSRecord, upstream: Upstream | None) -> None:
    """Resolve an ExternalName's target upstream and append what it answers."""
    if upstream is None or request.q.qtype == QTYPE.CNAME:
        return
    question = DNSRecord(q=DNSQuestion(target, request.q.qtype, request.q.qclass))
    try:
        response = upstream(question)
    except UpstreamError:
        reply.header.rcode = RCODE.SERVFAIL
        return
    for record in response.rr:
        reply.add_answer(record)
    reply.header.rcode = response.header.rcode


def forward(request: DNSRecord, upstream: Upstream | None) -> DNSRecord:
    """Names outside the cluster zone go to the VPC resolver, answered as it answers."""
    if upstream is None:
        return rcode_only(request, RCODE.REFUSED)
    question = DNSRecord(q=DNSQuestion(request.q.qname, request.q.qtype, request.q.qclass))
    try:
        response = upstream(question)
    except UpstreamError:
        return rcode_only(request, RCODE.SERVFAIL)
    reply = wire.new_reply(request, authoritative=False)
    reply.header.rcode = response.header.rcode
    reply.header.aa = response.header.aa
    for record in response.rr:
        reply.add_answer(record)
    for record in response.auth:
        reply.add_auth(record)
    for record in response.ar:
        if record.rtype != QTYPE.OPT:
            reply.add_ar(record)
    return reply


def answer_packet(zone: Zone, data: bytes, *, udp: bool,
                  upstream: Upstream | None = None) -> bytes | None:
    """Bytes in, bytes out: FORMERR/NOTIMP for bad queries, None when nothing must be sent."""
    try:
        request = wire.parse_query(data)
    except MalformedQuery as error:
        return wire.error_reply(error.header, error.rcode) if error.header is not None else None
    reply = answer(zone, request, upstream)
    return wire.encode(reply, wire.udp_limit(request) if udp else wire.MAX_TCP_MESSAGE)
