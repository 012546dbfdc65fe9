"""One port's server blocks, as the plugin chain that answers each query.

A DnsServer given a chain source asks its current Chain three things: the
reply it can give without waiting (`in_loop`, on the server's event loop:
zone answers, cache hits, errors), the reply that needs the upstream
(`off_loop`, in a forwarding thread) and, once a reply is out, whether the
log plugin writes a line (`answered`).  A query goes to the server block
with the longest zone it is under (REFUSED when none), then through the
block's plugins in CoreDNS's order: log, errors, loadbalance, cache,
kubernetes, forward.

Zone answers that no cache tier may keep are remembered as bytes, keyed by
the query after its ID, until the zone or the chain changes (as before
Corefiles existed: a storm of repeats costs a dict lookup); with
loadbalance a few shuffled variants are kept and one is picked per reply.
A reload builds a new Chain (empty caches, as a CoreDNS reload does) and
swaps one reference.
"""
from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable

from dnslib import RCODE, DNSRecord

from agents.dns import wire
from agents.dns.answer import answer, forward, normalized_name, rcode_only
from agents.dns.coreconfig import Forward, Server
from agents.dns.errors import DnsAgentError, MalformedQuery, UpstreamError, UpstreamNeeded
from agents.dns.querylog import Query, log_line, type_name
from agents.dns.respcache import ReplyCache, address_count, cap_ttls, shuffle_addresses
from agents.dns.server import FORWARD
from agents.dns.upstream import UpstreamResolver
from agents.dns.zone import Zone, in_domain

SHUFFLED_VARIANTS = 8
BYTE_CACHE_SIZE = 10000


class Output:
    """Lines to the container's stdout (its log), whole lines from any thread."""

    def __init__(self, stream=None):
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


class NoNextPlugin(UpstreamError):
    """The last plugin passed the query on and nothing comes after it."""

    def __init__(self, plugin: str):
        DnsAgentError.__init__(self, f"plugin/{plugin}: no next plugin found")
        self.upstream = None


class ForwardUpstream:
    """The forward plugin: its zone and exceptions, its upstreams in its policy's order."""

    def __init__(self, config: Forward, timeout: float):
        self.config = config
        self.resolvers = [UpstreamResolver(a, timeout, tcp=config.force_tcp) for a in config.to]
        self._next = 0

    def handles(self, name: str) -> bool:
        return in_domain(name, self.config.zone) and not any(
            in_domain(name, zone) for zone in self.config.excepted)

    def __call__(self, question: DNSRecord) -> DNSRecord:
        if not self.handles(str(question.q.qname).lower()):
            raise NoNextPlugin("forward")
        resolvers = list(self.resolvers)
        if self.config.policy == "random":
            random.shuffle(resolvers)
        elif self.config.policy == "round_robin":
            self._next = (self._next + 1) % len(resolvers)
            resolvers = resolvers[self._next:] + resolvers[:self._next]
        failure: UpstreamError | None = None
        for resolver in resolvers:
            try:
                return resolver(question)
            except UpstreamError as err:
                failure = err
        raise failure


class _Block:
    def __init__(self, server: Server, timeout: float):
        self.server = server
        self.upstream = ForwardUpstream(server.forward, timeout) if server.forward else None
        self.cache = ReplyCache(server.cache) if server.cache else None


def _in_loop_guard(block: _Block) -> Callable[[DNSRecord], DNSRecord]:
    def guard(question: DNSRecord) -> DNSRecord:
        if block.upstream is None:
            raise NoNextPlugin("kubernetes" if block.server.kubernetes else "forward")
        if not block.upstream.handles(str(question.q.qname).lower()):
            raise NoNextPlugin("forward")
        raise UpstreamNeeded("answer needs the upstream resolver")
    return guard


class Chain:
    """The blocks of one port; `holder` gives the kubernetes plugin's zone."""

    def __init__(self, servers: tuple[Server, ...], holder, *, output: Output | None = None,
                 local_ip: str = "0.0.0.0", upstream_timeout: float = 2.0):
        self.blocks = [_Block(s, upstream_timeout) for s in servers]
        self.holder = holder
        self.output = output or Output()
        self.local_ip = local_ip
        self.logging = any(s.log for s in servers)
        limits = [s.forward.max_concurrent for s in servers if s.forward]
        self.max_concurrent = min((x for x in limits if x), default=0)
        self._bytes: dict[tuple[bool, bytes], bytes | tuple[bytes, ...]] = {}
        self._zone: Zone | None = None

    # --- what the server asks ---------------------------------------------------------

    def in_loop(self, data: bytes, udp: bool):
        """Reply bytes, None to drop, or FORWARD when the upstream must be asked."""
        zone = self.holder.zone
        if zone is not self._zone:
            self._bytes.clear()
            self._zone = zone
        key = (udp, data[2:])
        kept = self._bytes.get(key)
        if kept is not None:
            return data[:2] + (kept if type(kept) is bytes else random.choice(kept))
        try:
            request = wire.parse_query(data)
        except MalformedQuery as error:
            if error.header is None:
                return None
            return self._remember(key, data, wire.error_reply(error.header, error.rcode))
        name = normalized_name(request.q.qname)
        block = self._block_for(name)
        if block is None:
            return self._remember(key, data, self._encode(None, rcode_only(
                request, RCODE.REFUSED), request, udp))
        cache = block.cache if name is not None and block.cache is not None \
            and block.cache.covers(name) else None
        if cache is not None:
            cached = cache.get(self._cache_key(name, request), request)
            if cached is not None:
                return self._encode(block, cached, request, udp)
        try:
            reply = self._compute(block, zone, request, _in_loop_guard(block))
        except UpstreamNeeded:
            return FORWARD
        if cache is not None and self._keep(cache, name, request, reply):
            return self._encode(block, reply, request, udp)
        if reply.header.rcode == RCODE.SERVFAIL:        # errors logs each failure: no shortcut
            return self._encode(block, reply, request, udp)
        return self._remember(key, data, self._variants(block, reply, request, udp))

    def off_loop(self, data: bytes, udp: bool) -> bytes | None:
        """The reply to a query `in_loop` said needs the upstream (a forwarding thread)."""
        request = wire.parse_query(data)
        name = normalized_name(request.q.qname)
        block = self._block_for(name)
        reply = self._compute(block, self.holder.zone, request, block.upstream)
        if block.cache is not None and name is not None and block.cache.covers(name):
            self._keep(block.cache, name, request, reply)
        return self._encode(block, reply, request, udp)

    def answered(self, data: bytes, response: bytes | None, udp: bool, addr,
                 seconds: float) -> None:
        """The log plugin: one line for the reply just sent."""
        if not self.logging or response is None:
            return
        query = Query.read(data)
        block = self._block_for(query.name) if query is not None else None
        if block is None or not block.server.log:
            return
        line = log_line(block.server.log, data, response, udp, (addr[0], addr[1]),
                        self.local_ip, seconds)
        if line is not None:
            self.output.write(line)

    # --- the plugins --------------------------------------------------------------------

    def _block_for(self, name: str | None) -> _Block | None:
        best, depth = None, -1
        for block in self.blocks:
            for zone in block.server.zones:
                if (name is None and zone == ".") or (name is not None and in_domain(name, zone)):
                    if len(zone) > depth:
                        best, depth = block, len(zone)
        return best

    def _compute(self, block: _Block, zone: Zone, request: DNSRecord, upstream) -> DNSRecord:
        failures: list[UpstreamError] = []
        forwarded: list[DNSRecord] = []

        def recorded(question: DNSRecord) -> DNSRecord:
            try:
                forwarded.append(upstream(question))
                return forwarded[-1]
            except UpstreamError as err:
                failures.append(err)
                raise
        ask = recorded if upstream is not None else None
        if block.server.kubernetes is not None:
            reply = answer(zone, request, ask)
        elif not wire.question_is_internet_class(request):
            reply = rcode_only(request, RCODE.REFUSED)
        else:
            reply = forward(request, ask or _no_next)
        # CoreDNS's own answers (and errors) do not offer recursion; forwarded ones say
        # what the upstream said.
        reply.header.ra = forwarded[-1].header.ra if forwarded else 0
        if failures and block.server.errors:
            self.output.write(f"[ERROR] plugin/errors: {reply.header.rcode} "
                              f"{str(request.q.qname).lower()} {type_name(request.q.qtype)}: "
                              f"{failures[-1]}")
        return reply

    @staticmethod
    def _cache_key(name: str, request: DNSRecord) -> tuple[str, int, int]:
        return name, request.q.qtype, request.q.qclass

    def _keep(self, cache: ReplyCache, name: str, request: DNSRecord, reply: DNSRecord) -> bool:
        ttl = cache.put(self._cache_key(name, request), reply)
        if ttl:
            cap_ttls(reply, ttl)
        return bool(ttl)

    @staticmethod
    def _encode(block: _Block | None, reply: DNSRecord, request: DNSRecord, udp: bool) -> bytes:
        if block is not None and block.server.loadbalance:
            shuffle_addresses(reply)
        return bytes(wire.encode(reply, wire.udp_limit(request) if udp
                                 else wire.MAX_TCP_MESSAGE))

    def _variants(self, block: _Block, reply: DNSRecord, request: DNSRecord,
                  udp: bool) -> bytes | tuple[bytes, ...]:
        if not block.server.loadbalance or address_count(reply) < 2:
            return self._encode(None, reply, request, udp)
        return tuple({self._encode(block, reply, request, udp) for _ in range(SHUFFLED_VARIANTS)})

    def _remember(self, key, data: bytes, response) -> bytes | None:
        if len(self._bytes) >= BYTE_CACHE_SIZE:
            self._bytes.clear()
        self._bytes[key] = (response[2:] if type(response) is bytes
                            else tuple(r[2:] for r in response))
        return response if type(response) is bytes else random.choice(response)


def _no_next(_question: DNSRecord) -> DNSRecord:
    raise NoNextPlugin("forward")
