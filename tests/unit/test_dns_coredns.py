"""The cluster DNS run from a Corefile, over real sockets on loopback (no root):
what kubeadm's Corefile answers, the log, errors, cache and loadbalance plugins,
stub-domain server blocks, health and readiness, and reloads that keep answering."""
from __future__ import annotations

import io
import random
import re
import threading
import urllib.error
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from agents.dns import cluster
from agents.dns.chain import Output
from agents.dns.coreconfig import build_config, kubeadm_corefile
from agents.dns.coredns import CoreDns, Reloader
from agents.dns.corefile import parse_corefile
from agents.dns.holder import ZoneHolder
from agents.dns.server import DnsServer
from agents.dns.zone import Record, build_static_zone
from agents.proxy.fixtures import endpoint, service_dict, slice_dict

WEB_IP = "10.96.7.7"
PEERS = [f"192.168.1.{i}" for i in range(1, 6)]


class Outside:
    """The VPC resolver stand-in; `.zone` can be swapped to change its answers."""

    def __init__(self, address: str = "203.0.113.50"):
        self.set(address)

    def set(self, address: str) -> None:
        self.zone = build_static_zone(".", {"db.example.com": [Record("A", address)],
                                            "db.consul.local": [Record("A", "10.150.0.9")]})


@pytest.fixture(scope="module")
def outside():
    records = Outside()
    with DnsServer("127.0.0.1", 0, records) as server:
        server.records = records
        yield server


def holder() -> ZoneHolder:
    return ZoneHolder(services=[service_dict("web", cluster_ip=WEB_IP),
                                service_dict("peers", cluster_ip="None")],
                      slices=[slice_dict("peers", endpoints=[endpoint(ip, "n1") for ip in PEERS])])


def start(text: str, outside_server, zones: ZoneHolder | None = None, **kwargs):
    config = build_config(parse_corefile(text, "Corefile"), node_resolver=outside_server.address)
    out = io.StringIO()
    dns_ = CoreDns(config, zones or holder(), output=Output(out), bind_ip="127.0.0.1",
                   ephemeral=True, upstream_timeout=0.5, **kwargs)
    dns_.start()
    dns_.out = out
    return dns_


def ask(dns_: CoreDns, name: str, rtype: str = "A", port: int = 53):
    return dns.query.udp(dns.message.make_query(name, rtype), "127.0.0.1",
                         port=dns_.port(port), timeout=3)


def addresses(reply) -> list[str]:
    return [r.to_text() for rrset in reply.answer for r in rrset if rrset.rdtype in (1, 28)]


@pytest.fixture
def kubeadm(outside):
    dns_ = start(kubeadm_corefile(), outside)
    yield dns_
    dns_.stop()


def test_kubeadms_corefile_answers_as_coredns_does(kubeadm):
    web = ask(kubeadm, "web.default.svc.cluster.local")
    assert addresses(web) == [WEB_IP] and web.answer[0].ttl == 30
    # its own answers are authoritative and, as CoreDNS's, offer no recursion
    assert web.flags & dns.flags.AA and not web.flags & dns.flags.RA
    outside = ask(kubeadm, "db.example.com")
    assert addresses(outside) == ["203.0.113.50"] and outside.flags & dns.flags.RA
    ptr = ask(kubeadm, "7.7.96.10.in-addr.arpa", "PTR")
    assert [r.to_text() for rrset in ptr.answer for r in rrset] == [
        "web.default.svc.cluster.local."]
    assert ask(kubeadm, "nope.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    lines = kubeadm.out.getvalue().splitlines()
    sha = parse_corefile(kubeadm_corefile()).sha512
    assert lines[:3] == [".:53", f"[INFO] plugin/reload: Running configuration SHA512 = {sha}",
                         "CoreDNS-1.12.0"]
    assert re.fullmatch(r"linux/\w+, python3\.\d+\.\d+, svclab", lines[3])
    assert len(lines) == 4                                  # no log plugin: no query lines


def test_forwarded_answers_are_cached_cluster_ones_are_not(kubeadm, outside):
    assert addresses(ask(kubeadm, "db.example.com")) == ["203.0.113.50"]
    outside.records.set("203.0.113.51")
    try:
        again = ask(kubeadm, "db.example.com")
        assert addresses(again) == ["203.0.113.50"] and again.answer[0].ttl <= 30
    finally:
        outside.records.set("203.0.113.50")
    kubeadm.holder.update(services=[service_dict("web", cluster_ip="10.96.7.8")])
    assert addresses(ask(kubeadm, "web.default.svc.cluster.local")) == ["10.96.7.8"]


def test_loadbalance_varies_the_order_of_addresses(kubeadm, outside):
    orders = {tuple(addresses(ask(kubeadm, "peers.default.svc.cluster.local")))
              for _ in range(30)}
    assert all(sorted(order) == sorted(PEERS) for order in orders) and len(orders) > 1
    plain = start(kubeadm_corefile().replace("    loadbalance\n", ""), outside)
    try:
        orders = {tuple(addresses(ask(plain, "peers.default.svc.cluster.local")))
                  for _ in range(10)}
        assert orders == {tuple(PEERS)}
    finally:
        plain.stop()


def test_the_log_and_errors_plugins_write_to_the_containers_output(outside):
    text = kubeadm_corefile().replace("    errors\n", "    log\n    errors\n")
    text = text.replace("forward . /etc/resolv.conf", "forward . 127.0.0.1:9")  # nobody there
    dns_ = start(text, outside)
    try:
        ask(dns_, "kubernetes.default.svc.cluster.local")
        assert ask(dns_, "db.example.com").rcode() == dns.rcode.SERVFAIL
    finally:
        dns_.stop()
    lines = dns_.out.getvalue().splitlines()[4:]
    assert re.fullmatch(r'\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN kubernetes\.default\.svc\.'
                        r'cluster\.local\. udp \d+ (true|false) \d+" NXDOMAIN qr,aa,rd \d+ '
                        r'[\d.]+s', lines[0]), lines
    assert lines[1].startswith("[ERROR] plugin/errors: 2 db.example.com. A: upstream "
                               "127.0.0.1:9: "), lines
    assert re.fullmatch(r'\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN db\.example\.com\. udp \d+ '
                        r'(true|false) \d+" SERVFAIL qr,rd \d+ [\d.]+s', lines[2]), lines


def test_a_stub_domain_has_its_own_server_block(outside):
    text = (f"consul.local:53 {{\n  forward . {outside.address[0]}:{outside.address[1]}\n}}\n"
            ".:53 {\n  kubernetes cluster.local\n}\n")
    dns_ = start(text, outside)
    try:
        assert addresses(ask(dns_, "db.consul.local")) == ["10.150.0.9"]
        assert addresses(ask(dns_, "web.default.svc.cluster.local")) == [WEB_IP]
        # the `.` block has no forward: nothing answers other names
        assert ask(dns_, "db.example.com").rcode() == dns.rcode.SERVFAIL
    finally:
        dns_.stop()
    assert dns_.out.getvalue().splitlines()[:2] == [".:53", "consul.local.:53"]  # sorted


def test_fallthrough_and_reverse_zones(outside):
    no_reverse = start(".:53 {\n  kubernetes cluster.local {\n    fallthrough\n  }\n"
                       "  forward . /etc/resolv.conf\n}", outside)
    try:
        # an unknown name of the cluster domain goes on to forward, answered outside
        reply = ask(no_reverse, "nope.default.svc.cluster.local")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert [rrset.name.to_text() for rrset in reply.authority] == ["."]   # the outside's SOA
        ours = ask(no_reverse, "default.svc.cluster.local")                     # exists: no data
        assert [rrset.name.to_text() for rrset in ours.authority] == ["cluster.local."]
        assert ask(no_reverse, "7.7.96.10.in-addr.arpa", "PTR").answer == []
    finally:
        no_reverse.stop()
    strict = start(".:53 {\n  kubernetes cluster.local in-addr.arpa\n"
                   "  forward . /etc/resolv.conf\n}", outside)
    try:
        reply = ask(strict, "9.9.9.9.in-addr.arpa", "PTR")      # no fallthrough: ours
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
    finally:
        strict.stop()


def get(address) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/ready", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_health_and_ready_listen_only_when_the_corefile_has_them(outside):
    ready = threading.Event()
    dns_ = start(kubeadm_corefile(), outside, ready=ready)
    try:
        assert get(dns_.ready_address) == (503, "not ready")
        ready.set()
        assert get(dns_.ready_address) == (200, "OK")
        assert dns_.health_address is not None
    finally:
        dns_.stop()
    bare = start(".:53 {\n  kubernetes cluster.local\n}", outside)
    try:
        assert (bare.health_address, bare.ready_address) == (None, None)
    finally:
        bare.stop()


def reloader(dns_: CoreDns, text: dict, outside, time_factor: float = 1.0) -> Reloader:
    def build(body):
        return build_config(parse_corefile(body, "Corefile"), node_resolver=outside.address)
    return Reloader(dns_, lambda: text["now"], build,
                    lambda body: parse_corefile(body, "Corefile", check=False).sha512,
                    time_factor=time_factor, rng=random.Random(3))


def test_a_reload_swaps_the_configuration_without_dropping_a_query(kubeadm, outside):
    text = {"now": kubeadm_corefile()}
    watch = reloader(kubeadm, text, outside)
    assert watch.check() is False                              # unchanged: nothing to do
    port = kubeadm.port(53)
    failures, stop = [], threading.Event()

    def query_loop():
        while not stop.is_set():
            try:
                if addresses(ask(kubeadm, "web.default.svc.cluster.local")) != [WEB_IP]:
                    failures.append("wrong answer")
            except dns.exception.Timeout:
                failures.append("timeout")
    loop = threading.Thread(target=query_loop)
    loop.start()
    try:
        text["now"] = kubeadm_corefile().replace("    errors\n", "    log\n    errors\n")
        assert watch.check() is True
    finally:
        stop.set()
        loop.join(10)
    assert failures == [] and kubeadm.port(53) == port
    ask(kubeadm, "web.default.svc.cluster.local")
    lines = kubeadm.out.getvalue().splitlines()[4:]
    sha = parse_corefile(text["now"]).sha512
    assert lines[:3] == ["[INFO] Reloading",
                         f"[INFO] plugin/reload: Running configuration SHA512 = {sha}",
                         "[INFO] Reloading complete"]
    assert re.search(r'"A IN web\.default\.svc\.cluster\.local\. udp', lines[-1])


def test_a_corefile_coredns_refuses_is_logged_and_the_running_one_kept(kubeadm, outside):
    text = {"now": kubeadm_corefile().replace("       ttl 30\n",
                                              "       ttl 30\n       upstream\n")}
    watch = reloader(kubeadm, text, outside)
    assert watch.check() is False and watch.check() is False     # not retried unchanged
    lines = kubeadm.out.getvalue().splitlines()[4:]
    why = ("starting with listener file descriptors: plugin/kubernetes: Corefile:11 - Error "
           "during parsing: unknown property 'upstream'")
    assert lines == ["[INFO] Reloading", f"[ERROR] Restart failed: {why}",
                     f"[ERROR] plugin/reload: Corefile changed but reload failed: {why}"]
    assert addresses(ask(kubeadm, "web.default.svc.cluster.local")) == [WEB_IP]
    text["now"] = ".:53 {\n  kubernetes cluster.local {\n"         # does not parse
    assert watch.check() is False
    assert kubeadm.out.getvalue().splitlines()[-1].startswith(
        "[WARNING] plugin/reload: Corefile parse failed: Corefile:")


def test_a_reload_that_moves_the_listeners_opens_them_again(kubeadm, outside):
    text = {"now": kubeadm_corefile().replace("    ready\n", "    ready :8182\n")}
    before = kubeadm.ready_address
    assert reloader(kubeadm, text, outside).check() is True
    assert kubeadm.ready_address != before and kubeadm.config.ready == ("0.0.0.0", 8182)
    assert addresses(ask(kubeadm, "web.default.svc.cluster.local")) == [WEB_IP]


def test_the_reload_interval_runs_on_the_labs_clock(kubeadm, outside):
    watch = reloader(kubeadm, {"now": ""}, outside, time_factor=0.1)
    waits = [watch.interval() for _ in range(200)]
    assert all(2.25 <= w <= 3.75 for w in waits) and max(waits) - min(waits) > 1


def test_the_command_refuses_a_corefile_coredns_refuses(tmp_path, capsys):
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n    errors\n    hostz\n}\n")
    assert cluster.main(["-conf", str(corefile)]) == 1
    assert capsys.readouterr().err == (f"{corefile}:3 - Error during parsing: Unknown "
                                       "directive 'hostz'\n")
    assert cluster.main(["-conf", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == (f"open {tmp_path / 'missing'}: no such file or "
                                       "directory\n")
