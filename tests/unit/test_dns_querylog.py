"""The log plugin's lines, field by field, as CoreDNS writes them."""
from __future__ import annotations

from dnslib import EDNS0, RCODE, RR, DNSRecord

from agents.dns.coreplugins import COMBINED_LOG_FORMAT, LogRule
from agents.dns.querylog import log_line, response_class, uncompressed_size

NAME = "kubernetes.default.svc.cluster.local"
CLIENT = ("10.244.0.5", 57323)


def exchange(name=NAME, qtype="A", *, answers=(), rcode=RCODE.NOERROR, edns=None, ident=45139,
             ra=False):
    query = DNSRecord.question(name, qtype)
    query.header.id = ident
    if edns is not None:
        query.add_ar(edns)
    reply = query.reply(ra=int(ra), aa=1)
    reply.header.rcode = rcode
    for text in answers:
        reply.add_answer(*RR.fromZone(text))
    return query.pack(), reply.pack()


def test_the_common_log_format_as_coredns_prints_it():
    query, reply = exchange(answers=[f"{NAME}. 30 A 10.96.0.1"])
    line = log_line((LogRule("."),), query, reply, True, CLIENT, "0.0.0.0", 0.000123)
    assert line == ('[INFO] 10.244.0.5:57323 - 45139 "A IN kubernetes.default.svc.cluster.local. '
                    'udp 54 false 512" NOERROR qr,aa,rd 106 0.000123s')


def test_edns_tcp_ipv6_and_small_durations():
    query, reply = exchange("Web.Default.svc.cluster.local", "AAAA",
                            edns=EDNS0(udp_len=1232, flags="do"), ra=True)
    line = log_line((LogRule("."),), query, reply, False, ("fd00::5", 40000), "", 1.5e-05)
    assert line.startswith('[INFO] [fd00::5]:40000 - 45139 "AAAA IN '
                           'web.default.svc.cluster.local. tcp 58 true 65535" NOERROR qr,aa,rd,ra ')
    assert line.endswith(" 0.000015s")
    udp = log_line((LogRule("."),), query, reply, True, CLIENT, "", 0.25)
    assert '58 true 1232" NOERROR' in udp and udp.endswith(" 0.25s")


def test_rules_by_name_and_by_class():
    query, nxdomain = exchange("nope.example.org", rcode=RCODE.NXDOMAIN)
    _, success = exchange("www.example.org", answers=["www.example.org. 60 A 203.0.113.8"])
    www, _ = exchange("www.example.org")
    rules = (LogRule("example.org.", COMBINED_LOG_FORMAT, frozenset({"denial", "error"})),
             LogRule("."))
    denied = log_line(rules, query, nxdomain, True, CLIENT, "", 0.001)
    assert denied.endswith('NXDOMAIN qr,aa,rd 34 0.001s "0"')
    # the first rule whose name matches decides: a success under example.org is not logged
    assert log_line(rules, www, success, True, CLIENT, "", 0.001) is None
    other, reply = exchange()
    assert log_line(rules, other, reply, True, CLIENT, "", 0.001).startswith("[INFO] 10.")
    assert log_line((LogRule("example.org."),), other, reply, True, CLIENT, "", 0.1) is None


def test_custom_formats_keep_unknown_placeholders():
    query, reply = exchange()
    rule = LogRule(".", "{proto} Request: {name} {type} {>id} {/log/class} {nothing}")
    assert log_line((rule,), query, reply, True, CLIENT, "", 0.1) == (
        f"[INFO] udp Request: {NAME}. A 45139 - {{nothing}}")


def test_response_classes_and_sizes():
    _, nodata = exchange(answers=())
    _, servfail = exchange(rcode=RCODE.SERVFAIL)
    _, found = exchange(answers=[f"{NAME}. 30 A 10.96.0.1"])
    assert [response_class(r) for r in (nodata, servfail, found)] == [
        "denial", "error", "success"]
    assert uncompressed_size(found) == 106 and len(found) == 70
    assert log_line((LogRule("."),), b"\x00\x01", found, True, CLIENT, "", 0.1) is None
