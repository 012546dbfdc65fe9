"""The cache plugin's rules over replies, on a clock the test moves, and loadbalance."""
from __future__ import annotations

import random

from dnslib import RCODE, RR, DNSRecord

from agents.dns.coreplugins import Cache
from agents.dns.respcache import ReplyCache, shuffle_addresses


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reply(name, *records, rcode=RCODE.NOERROR):
    message = DNSRecord.question(name).reply()
    message.header.rcode = rcode
    for text in records:
        message.add_answer(*RR.fromZone(text))
    return message


def key(name):
    return (name, 1, 1)


def test_answers_are_kept_for_their_ttl_within_the_bounds_and_age():
    clock = Clock()
    cache = ReplyCache(Cache(success_ttl=30, denial_ttl=30), clock)
    a = reply("a.example.com", "a.example.com. 300 A 1.1.1.1")
    assert cache.put(key("a.example.com."), a) == 30
    b = reply("b.example.com", "b.example.com. 1 A 1.1.1.2")
    assert cache.put(key("b.example.com."), b) == 5
    clock.now += 12.4
    request = DNSRecord.question("A.example.com")
    hit = cache.get(key("a.example.com."), request)
    assert [(str(r.rname), r.ttl, str(r.rdata)) for r in hit.rr] == [
        ("a.example.com.", 17, "1.1.1.1")]
    assert hit.header.id == request.header.id and str(hit.q.qname) == "A.example.com."
    clock.now += 18
    assert cache.get(key("a.example.com."), request) is None      # expired


def test_denials_servfail_and_what_is_never_kept():
    clock = Clock()
    cache = ReplyCache(Cache(success_ttl=30, denial_ttl=30, no_success=("cluster.local.",),
                             no_denial=("cluster.local.",)), clock)
    nxdomain = reply("x.example.com", rcode=RCODE.NXDOMAIN)
    nxdomain.add_auth(*RR.fromZone("example.com. 60 SOA ns. host. 1 7200 1800 86400 10"))
    assert cache.put(key("x.example.com."), nxdomain) == 10           # the SOA's minimum
    assert cache.put(key("y.example.com."), reply("y.example.com", rcode=RCODE.SERVFAIL)) == 5
    assert cache.put(key("z.example.com."), reply("z.example.com", rcode=RCODE.REFUSED)) == 0
    web = reply("web.default.svc.cluster.local", "web.default.svc.cluster.local. 30 A 10.96.0.5")
    assert cache.put(key("web.default.svc.cluster.local."), web) == 0
    assert not cache.covers("web.default.svc.cluster.local.")
    assert cache.covers("5.0.96.10.in-addr.arpa.") and cache.covers("example.com.")


def test_only_the_cache_zones_and_at_most_the_capacity():
    cache = ReplyCache(Cache(zones=("example.com.",), success_capacity=2), Clock())
    outside = reply("a.example.org", "a.example.org. 60 A 1.1.1.1")
    assert cache.put(key("a.example.org."), outside) == 0
    for name in ("a", "b", "c"):
        cache.put(key(f"{name}.example.com."), reply(f"{name}.example.com",
                                                    f"{name}.example.com. 60 A 1.1.1.1"))
    request = DNSRecord.question("a.example.com")
    assert cache.get(key("a.example.com."), request) is None        # the oldest went first
    assert cache.get(key("c.example.com."), request) is not None


def test_loadbalance_shuffles_addresses_in_place_of_addresses():
    message = reply("web.example.com", "web.example.com. 30 CNAME lb.example.com.",
                    *[f"lb.example.com. 30 A 10.0.0.{i}" for i in range(1, 6)])
    orders = set()
    rng = random.Random(1)
    for _ in range(20):
        shuffle_addresses(message, rng)
        assert message.rr[0].rtype == 5                        # the CNAME stays first
        orders.add(tuple(str(r.rdata) for r in message.rr[1:]))
    assert len(orders) > 5
    failed = reply("web.example.com", "lb.example.com. 30 A 10.0.0.1",
                   "lb.example.com. 30 A 10.0.0.2", rcode=RCODE.SERVFAIL)
    before = [str(r.rdata) for r in failed.rr]
    for _ in range(10):
        shuffle_addresses(failed, rng)
    assert [str(r.rdata) for r in failed.rr] == before
