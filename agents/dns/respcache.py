"""The cache and loadbalance plugins over dnslib replies (pure but for the clock).

ReplyCache keeps replies as CoreDNS's cache plugin does (plugin/cache):
successful answers for the smallest TTL in the reply, denials (NXDOMAIN, or
no data) likewise, each bounded below by the tier's minimum (5 s) and above
by its maximum (`cache 30` sets both to 30 s); SERVFAIL for `servfail`
(5 s); nothing for names outside the cache's zones or in a `disable`d zone;
at most `capacity` entries per tier (the oldest goes first).  A reply served
from the cache carries the remaining TTL in every record (the original TTLs
with `keepttl`).  Keys are the lowercased name, type and class.

`shuffle_addresses` is the loadbalance plugin: the A and AAAA records of
each section of a successful reply in random order (their places among the
other records kept).
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, DNSRecord

from agents.dns import wire
from agents.dns.coreplugins import Cache
from agents.dns.zone import in_domain

ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
Key = tuple[str, int, int]


@dataclass
class _Entry:
    reply: DNSRecord
    stored: float
    ttl: int


def _in_any(name: str, zones: tuple[str, ...]) -> bool:
    return any(in_domain(name, zone) for zone in zones)


def _records(reply: DNSRecord) -> list[RR]:
    return [r for r in (*reply.rr, *reply.auth, *reply.ar) if r.rtype != QTYPE.OPT]


def message_ttl(reply: DNSRecord) -> int | None:
    """The smallest TTL of the reply's records (a SOA counts with its MINIMUM too)."""
    ttls = []
    for record in _records(reply):
        ttls.append(record.ttl)
        if record.rtype == QTYPE.SOA:
            ttls.append(record.rdata.times[-1])
    return min(ttls) if ttls else None


def classify(reply: DNSRecord) -> str:
    """success, denial, servfail or other (what the cache does not keep)."""
    rcode = reply.header.rcode
    if rcode == RCODE.NXDOMAIN or (rcode == RCODE.NOERROR and not reply.rr):
        return "denial"
    if rcode == RCODE.NOERROR:
        return "success"
    return "servfail" if rcode == RCODE.SERVFAIL else "other"


class ReplyCache:
    """Thread-safe: the server's loop reads it, its forwarding threads fill it."""

    def __init__(self, config: Cache, clock=time.monotonic):
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._tiers: dict[str, dict[Key, _Entry]] = {"success": {}, "denial": {}}

    def covers(self, name: str) -> bool:
        """Could a reply for `name` ever be cached (a name in the zones, not disabled twice)?"""
        config = self.config
        return _in_any(name, config.zones) and not (
            _in_any(name, config.no_success) and _in_any(name, config.no_denial))

    def get(self, key: Key, request: DNSRecord) -> DNSRecord | None:
        """A reply to `request` from the cache, with the remaining TTL; None on a miss."""
        now = self.clock()
        with self._lock:
            for tier in self._tiers.values():
                entry = tier.get(key)
                if entry is None:
                    continue
                left = entry.ttl - (now - entry.stored)
                if left <= 0:
                    del tier[key]
                    return None
                return self._reply(entry, request, int(left))
        return None

    def put(self, key: Key, reply: DNSRecord) -> int:
        """Keep `reply` if the cache plugin would: for how many seconds (0: not kept)."""
        config, kind = self.config, classify(reply)
        name = key[0]
        if kind == "other" or reply.header.tc or not _in_any(name, config.zones):
            return 0
        if kind == "success":
            if _in_any(name, config.no_success):
                return 0
            bounds, capacity = (config.success_min, config.success_ttl), config.success_capacity
        elif kind == "denial":
            if _in_any(name, config.no_denial):
                return 0
            bounds, capacity = (config.denial_min, config.denial_ttl), config.denial_capacity
        else:
            if config.servfail_ttl <= 0 or _in_any(name, config.no_denial):
                return 0
            bounds, capacity = (config.servfail_ttl, config.servfail_ttl), config.denial_capacity
        found = message_ttl(reply)
        ttl = int(min(max(found if found is not None else bounds[1], bounds[0]), bounds[1]))
        if ttl <= 0 or capacity <= 0:
            return 0
        tier = self._tiers["success" if kind == "success" else "denial"]
        with self._lock:
            tier.pop(key, None)
            while len(tier) >= capacity:
                del tier[next(iter(tier))]
            tier[key] = _Entry(reply, self.clock(), ttl)
        return ttl

    def _reply(self, entry: _Entry, request: DNSRecord, left: int) -> DNSRecord:
        cached = entry.reply
        reply = wire.new_reply(request, authoritative=bool(cached.header.aa))
        reply.header.rcode = cached.header.rcode
        for section, add in ((cached.rr, reply.add_answer), (cached.auth, reply.add_auth),
                             (cached.ar, reply.add_ar)):
            for record in section:
                if record.rtype != QTYPE.OPT:
                    ttl = record.ttl if self.config.keepttl else min(record.ttl, left)
                    add(RR(record.rname, record.rtype, record.rclass, ttl, record.rdata))
        return reply


def cap_ttls(reply: DNSRecord, ttl: int) -> None:
    """A reply the cache keeps goes out with TTLs no longer than it is kept."""
    for record in _records(reply):
        record.ttl = min(record.ttl, ttl)


def shuffle_addresses(reply: DNSRecord, rng: random.Random | None = None) -> DNSRecord:
    """loadbalance: each section's A/AAAA records in random order, NOERROR replies only."""
    if reply.header.rcode != RCODE.NOERROR:
        return reply
    rng = rng or random
    for section in (reply.rr, reply.auth, reply.ar):
        places = [i for i, r in enumerate(section) if r.rtype in ADDRESS_TYPES]
        if len(places) > 1:
            records = [section[i] for i in places]
            rng.shuffle(records)
            for place, record in zip(places, records):
                section[place] = record
    return reply


def address_count(reply: DNSRecord) -> int:
    """The most A/AAAA records in one section (more than one: loadbalance has work)."""
    return max(sum(1 for r in section if r.rtype in ADDRESS_TYPES)
               for section in (reply.rr, reply.auth, reply.ar))
