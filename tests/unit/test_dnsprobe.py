"""probes.dnsprobe without a lab: its worker against a real svclab DNS server on loopback."""
import json
import socket
import subprocess

import pytest

import probes.dnsprobe as dnsprobe
from agents.dns import DnsServer, ZoneHolder
from base.errors import UsageError
from probes.dnsprobe import (
    DnsAnswer,
    DnsResult,
    ResolveResult,
    first_nameserver,
    parse_server,
    query_name,
    run_query,
    run_resolve,
    worker,
)

SERVICES = [
    {"metadata": {"name": "web", "namespace": "default"},
     "spec": {"clusterIP": "10.96.5.5", "ports": [{"name": "http", "port": 80}]}},
    {"metadata": {"name": "many", "namespace": "default"}, "spec": {"clusterIP": "None"}},
]
SLICES = [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "many-1", "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "many"}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": [f"192.168.1.{i}"], "conditions": {"ready": True}}
                         for i in range(1, 61)],
           "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]
WEB = "web.default.svc.cluster.local."
MANY = "many.default.svc.cluster.local."


@pytest.fixture(scope="module")
def server():
    with DnsServer("127.0.0.1", 0, ZoneHolder(services=SERVICES, slices=SLICES)) as running:
        yield running


def ask(server, name, rtype="A", tcp=False, timeout=2.0, port=None):
    item = {"name": name, "rtype": rtype, "server": "127.0.0.1",
            "port": port or server.port, "tcp": tcp, "timeout": timeout}
    return DnsResult.from_json({**run_query(item, None), "source": "here", "namespace": None})


# --- pure helpers ---------------------------------------------------------------------

def test_parse_server_takes_ip_or_ip_port():
    assert parse_server("10.96.0.10") == ("10.96.0.10", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    for bad in ("dns.example", "10.0.0.1:0", "10.0.0.1:dns", "::1"):
        with pytest.raises(UsageError):
            parse_server(bad)


def test_first_nameserver_reads_resolv_conf_like_glibc():
    text = "# generated\nsearch default.svc.cluster.local\nnameserver 10.96.0.10\n" \
           "nameserver 172.31.0.2\noptions ndots:5\n"
    assert first_nameserver(text) == "10.96.0.10"
    assert first_nameserver("search x\n") is None


def test_query_name_is_absolute_and_ptr_accepts_an_address():
    assert query_name("web.default", "A") == "web.default."
    assert query_name(WEB, "A") == WEB
    assert query_name("10.96.0.10", "PTR") == "10.0.96.10.in-addr.arpa."
    for bad in ("", "a" * 64 + ".example", "a..b"):
        with pytest.raises(UsageError):
            query_name(bad, "A")
    with pytest.raises(UsageError):
        dnsprobe.check_rtype("AXFR")
    assert dnsprobe.check_rtype("srv") == "SRV"


# --- the worker against a server -------------------------------------------------------

def test_an_answer_records_rcode_answers_ttl_responder_and_latency(server):
    result = ask(server, "Web.Default.svc.cluster.local")
    assert result.ok and result.authoritative and not result.truncated
    assert result.answers == (DnsAnswer("Web.Default.svc.cluster.local.", "A", 30, "10.96.5.5"),)
    assert result.addresses == ["10.96.5.5"] and result.data() == ["10.96.5.5"]
    assert result.responder == "127.0.0.1" and result.server == f"127.0.0.1:{server.port}"
    assert 0 < result.latency_ms < 2000


def test_nxdomain_srv_with_glue_and_ptr(server):
    assert ask(server, "nope.default.svc.cluster.local").rcode == "NXDOMAIN"
    srv = ask(server, f"_http._tcp.{WEB}", "SRV")
    assert srv.data() == [f"0 100 80 {WEB}"]
    assert [(a.name, a.rtype, a.data) for a in srv.additional] == [(WEB, "A", "10.96.5.5")]
    ptr = ask(server, query_name("10.96.5.5", "PTR"), "PTR")
    assert ptr.data() == [WEB]


def test_truncation_over_udp_and_the_full_answer_over_tcp(server):
    udp = ask(server, MANY)
    assert udp.ok and udp.truncated and udp.answers == ()
    assert "truncated" in udp.describe()
    tcp = ask(server, MANY, tcp=True)
    assert tcp.transport == "tcp" and not tcp.truncated
    assert sorted(tcp.addresses) == sorted(f"192.168.1.{i}" for i in range(1, 61))


def test_silence_is_a_timeout_and_a_closed_port_is_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        item = {"name": WEB, "rtype": "A", "server": "127.0.0.1",
                "port": silent.getsockname()[1], "tcp": False, "timeout": 0.2}
        timed_out = run_query(item, None)
        closed_port = silent.getsockname()[1]
    assert timed_out["rcode"] is None and timed_out["error"].startswith("timeout")
    refused = run_query({**item, "port": closed_port}, None)
    assert refused["rcode"] is None and refused["error"].startswith("refused")
    tcp_refused = run_query({**item, "port": closed_port, "tcp": True}, None)
    assert tcp_refused["error"].startswith("refused")
    assert run_query({**item, "server": None}, None)["error"].startswith("no nameserver")


def test_the_default_server_is_the_hosts_first_nameserver(server, monkeypatch):
    monkeypatch.setattr(dnsprobe, "_own_nameserver", lambda: "127.0.0.1")
    [result] = worker({"op": "query", "items": [{"name": WEB, "rtype": "A", "server": None,
                                                 "port": server.port, "tcp": False,
                                                 "timeout": 2.0}]})
    assert result["server"] == f"127.0.0.1:{server.port}" and result["rcode"] == "NOERROR"


def test_a_loop_repeats_the_query_for_the_duration(server):
    item = {"name": WEB, "rtype": "A", "server": "127.0.0.1", "port": server.port,
            "tcp": False, "timeout": 1.0}
    results = worker({"op": "query", "items": [item], "repeat_seconds": 0.3, "interval": 0.02})
    assert len(results) >= 3 and {r["rcode"] for r in results} == {"NOERROR"}


def test_resolve_uses_getaddrinfo(monkeypatch):
    assert run_resolve({"name": "127.0.0.1"})["addresses"] == ["127.0.0.1"]

    def not_found(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", not_found)
    failed = ResolveResult.from_json({**run_resolve({"name": "nope"}), "source": "pod-a",
                                      "namespace": "team-a"})
    assert not failed.ok and failed.error.startswith("not found")
    assert failed.describe() == "nope from team-a/pod-a: not found (Name or service not known)"


# --- results -------------------------------------------------------------------------------

def test_results_round_trip_through_json_and_describe_what_happened(server):
    result = ask(server, f"_http._tcp.{WEB}", "SRV")
    again = DnsResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
    text = result.describe()
    assert text.startswith(f"_http._tcp.{WEB} SRV from here via 127.0.0.1:{server.port}/udp: "
                           "NOERROR in ")
    assert f"0 100 80 {WEB}" in text and "additional:" in text
    silent = DnsResult("box", "default", WEB, "A", "10.96.0.10:53", "udp", None,
                       error="timeout after 2 s")
    assert not silent.answered and silent.describe().endswith("no answer (timeout after 2 s)")
    spoofed = DnsResult("box", "default", WEB, "A", "10.96.0.10:53", "udp", "NOERROR",
                        responder="192.168.0.1", latency_ms=1.0)
    assert "reply from 192.168.0.1, not the server asked" in spoofed.describe()


def test_query_runs_the_worker_module_in_the_host(server, monkeypatch):
    """The lab side: JSON to `python -m probes.dnsprobe` and back (run here, not in a host)."""
    calls = []

    def fake_run_in(pid, argv, *, input, timeout, where):
        calls.append((pid, argv[1:], where))
        return subprocess.run(argv, input=input, capture_output=True, text=True, check=True,
                              timeout=timeout).stdout
    monkeypatch.setattr(dnsprobe, "_find_host",
                        lambda lab, source, ns: dnsprobe._Host(4242, source, ns))
    monkeypatch.setattr(dnsprobe, "run_in", fake_run_in)
    result = dnsprobe.query("lab", "box", "team-a", "web.default.svc.cluster.local",
                            server=f"127.0.0.1:{server.port}")
    assert calls == [(4242, ["-m", "probes.dnsprobe"], "box")]
    assert (result.source, result.namespace, result.addresses) == ("box", "team-a", ["10.96.5.5"])
    tcp = dnsprobe.query("lab", "box", "team-a", "10.96.5.5", "ptr", tcp=True,
                         server=f"127.0.0.1:{server.port}")
    assert tcp.rtype == "PTR" and tcp.data() == [WEB] and tcp.transport == "tcp"


def test_the_cli_function_prints_and_exits_like_dig(server, monkeypatch):
    monkeypatch.setattr(dnsprobe, "_find_host",
                        lambda lab, source, ns: dnsprobe._Host(1, source, ns))
    monkeypatch.setattr(dnsprobe, "run_in", lambda pid, argv, *, input, timeout, where:
                        json.dumps(worker(json.loads(input))))
    text, code = dnsprobe.probe_dns_command("lab", "box", "default", "nope.cluster.local",
                                            server=f"127.0.0.1:{server.port}")
    assert code == 0 and "NXDOMAIN" in text
    text, code = dnsprobe.probe_dns_command("lab", "box", "default", WEB, "SRV",
                                            server=f"127.0.0.1:{server.port}", as_json=True)
    assert code == 0 and json.loads(text)["rcode"] == "NOERROR"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
    text, code = dnsprobe.probe_dns_command("lab", "box", "default", WEB,
                                            server=f"127.0.0.1:{port}")
    assert code == 1 and "no answer (refused" in text
    text, code = dnsprobe.probe_dns_command("lab", "box", "default", "127.0.0.1",
                                            system_resolver=True)
    assert code == 0 and text.startswith("127.0.0.1 from default/box: 127.0.0.1")
