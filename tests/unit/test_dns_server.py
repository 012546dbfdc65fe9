"""The DNS server over real sockets on loopback, asked by dnspython (an independent client).

Short names are the resolver's job (search paths in the pod's resolv.conf), so
these tests ask fully qualified names.
"""
import socket
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from agents.dns import DnsServer, DnsServerError, Record, ZoneHolder, build_static_zone

OUTSIDE_IP = "203.0.113.50"


def service(name, namespace="default", cluster_ip=None, ports=(), **spec):
    body = {"ports": list(ports), **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"metadata": {"name": name, "namespace": namespace}, "spec": body}


def endpoint_slice(service_name, ips, ready=True, ports=(), hostnames=None):
    hostnames = hostnames or {}
    endpoints = [{"addresses": [ip], "conditions": {"ready": ready},
                  **({"hostname": hostnames[ip]} if ip in hostnames else {})} for ip in ips]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": list(ports)}


SERVICES = [
    service("web-hwk", cluster_ip="10.107.229.55", ports=[{"name": "http", "port": 80}]),
    service("nginx", cluster_ip="None", ports=[{"name": "web", "port": 80}]),
    service("big", cluster_ip="None"),
    service("db", type="ExternalName", externalName="db.example.com"),
]
BIG_IPS = [f"192.168.{i // 200}.{i % 200 + 1}" for i in range(100)]


def base_slices():
    return [endpoint_slice("nginx", ["192.168.1.5", "192.168.2.6"],
                           ports=[{"name": "web", "port": 8080, "protocol": "TCP"}],
                           hostnames={"192.168.1.5": "web-0"}),
            endpoint_slice("big", BIG_IPS)]


@pytest.fixture(scope="module")
def outside():
    """A fake VPC resolver answering for an outside zone (example.com)."""
    zone = build_static_zone("example.com", {"db.example.com": [Record("A", OUTSIDE_IP)],
                                             "www.example.com": [Record("A", "203.0.113.80")]})
    with DnsServer("127.0.0.1", 0, zone) as server:
        yield server


@pytest.fixture
def holder():
    return ZoneHolder(services=SERVICES, slices=base_slices())


@pytest.fixture
def cluster_dns(holder):
    with DnsServer("127.0.0.1", 0, holder, metrics_address=("127.0.0.1", 0)) as server:
        yield server


@pytest.fixture
def chasing_dns(outside):
    holder = ZoneHolder(services=SERVICES)
    with DnsServer("127.0.0.1", 0, holder, upstream=outside.address) as server:
        yield server


def ask(server, name, rdtype="A", tcp=False, **query_options):
    query = dns.message.make_query(name, rdtype, **query_options)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=5)
    return dns.query.udp(query, "127.0.0.1", port=server.port, timeout=5)


def addresses(response, rdtype="A"):
    return sorted(item.to_text() for rrset in response.answer
                  if rrset.rdtype == dns.rdatatype.from_text(rdtype) for item in rrset)


@pytest.mark.parametrize("tcp", [False, True])
def test_cluster_ip_a_over_udp_and_tcp(cluster_dns, tcp):
    response = ask(cluster_dns, "web-hwk.default.svc.cluster.local.", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert addresses(response) == ["10.107.229.55"]
    assert response.answer[0].ttl == 30


def test_headless_answers_follow_zone_updates(cluster_dns, holder):
    name = "nginx.default.svc.cluster.local."
    assert addresses(ask(cluster_dns, name)) == ["192.168.1.5", "192.168.2.6"]
    holder.update(slices=[endpoint_slice("nginx", ["192.168.1.5", "192.168.2.6", "192.168.3.7"]),
                          endpoint_slice("big", BIG_IPS)])
    assert addresses(ask(cluster_dns, name)) == ["192.168.1.5", "192.168.2.6", "192.168.3.7"]
    holder.update(slices=[endpoint_slice("nginx", ["192.168.1.5"], ready=False)])
    assert ask(cluster_dns, name).rcode() == dns.rcode.NXDOMAIN


def test_endpoint_hostname_record(cluster_dns):
    assert addresses(ask(cluster_dns, "web-0.nginx.default.svc.cluster.local.")) == ["192.168.1.5"]


def test_srv_named_ports(cluster_dns):
    response = ask(cluster_dns, "_http._tcp.web-hwk.default.svc.cluster.local.", "SRV")
    assert addresses(response, "SRV") == ["0 100 80 web-hwk.default.svc.cluster.local."]
    headless = ask(cluster_dns, "_web._tcp.nginx.default.svc.cluster.local.", "SRV")
    assert addresses(headless, "SRV") == ["0 50 8080 192-168-2-6.nginx.default.svc.cluster.local.",
                                          "0 50 8080 web-0.nginx.default.svc.cluster.local."]
    assert sorted(rrset.name.to_text() for rrset in headless.additional) == \
        ["192-168-2-6.nginx.default.svc.cluster.local.", "web-0.nginx.default.svc.cluster.local."]


def test_ptr_for_cluster_ip(cluster_dns):
    response = ask(cluster_dns, "55.229.107.10.in-addr.arpa.", "PTR")
    assert addresses(response, "PTR") == ["web-hwk.default.svc.cluster.local."]


def test_pod_record(cluster_dns):
    assert addresses(ask(cluster_dns, "192-168-1-5.default.pod.cluster.local.")) == ["192.168.1.5"]


def test_case_insensitive(cluster_dns):
    response = ask(cluster_dns, "WEB-hwk.Default.SVC.cluster.LOCAL.")
    assert addresses(response) == ["10.107.229.55"]


def test_unknown_name_is_nxdomain_with_soa(cluster_dns):
    response = ask(cluster_dns, "nope.default.svc.cluster.local.")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_aaaa_of_known_name_is_nodata(cluster_dns):
    response = ask(cluster_dns, "web-hwk.default.svc.cluster.local.", "AAAA")
    assert (response.rcode(), response.answer) == (dns.rcode.NOERROR, [])


def test_external_name_without_upstream_is_cname_only(cluster_dns):
    response = ask(cluster_dns, "db.default.svc.cluster.local.")
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response, "CNAME") == ["db.example.com."]
    assert addresses(response, "A") == []


def test_external_name_chased_through_upstream(chasing_dns):
    response = ask(chasing_dns, "db.default.svc.cluster.local.")
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response, "CNAME") == ["db.example.com."]
    assert addresses(response, "A") == [OUTSIDE_IP]


def test_outside_names_are_forwarded(chasing_dns):
    assert addresses(ask(chasing_dns, "www.example.com.")) == ["203.0.113.80"]
    assert ask(chasing_dns, "nothing.example.com.").rcode() == dns.rcode.NXDOMAIN
    assert addresses(ask(chasing_dns, "www.example.com.", tcp=True)) == ["203.0.113.80"]


def test_silent_upstream_gives_servfail():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        with DnsServer("127.0.0.1", 0, ZoneHolder(services=SERVICES),
                       upstream=black_hole.getsockname(), upstream_timeout=0.5) as server:
            assert ask(server, "www.example.com.").rcode() == dns.rcode.SERVFAIL
            assert ask(server, "db.default.svc.cluster.local.").rcode() == dns.rcode.SERVFAIL
            # the zone itself still answers while the upstream is silent
            assert addresses(ask(server, "web-hwk.default.svc.cluster.local.")) == ["10.107.229.55"]


def test_service_type_change_between_external_name_and_cluster_ip(cluster_dns, holder):
    name = "db.default.svc.cluster.local."
    others = [s for s in SERVICES if s["metadata"]["name"] != "db"]
    holder.update(services=others + [service("db", cluster_ip="10.96.44.44")])
    response = ask(cluster_dns, name)
    assert (addresses(response, "CNAME"), addresses(response)) == ([], ["10.96.44.44"])
    holder.update(services=SERVICES)
    assert addresses(ask(cluster_dns, name), "CNAME") == ["db.example.com."]


def test_udp_truncation_and_full_answer_over_tcp(cluster_dns):
    name = "big.default.svc.cluster.local."
    plain = ask(cluster_dns, name)
    assert plain.flags & dns.flags.TC
    assert plain.answer == []
    over_tcp = ask(cluster_dns, name, tcp=True)
    assert not over_tcp.flags & dns.flags.TC
    assert addresses(over_tcp) == sorted(BIG_IPS)
    with_edns = ask(cluster_dns, name, use_edns=0, payload=4096)
    assert not with_edns.flags & dns.flags.TC
    assert len(addresses(with_edns)) == 100
    small_edns = ask(cluster_dns, name, use_edns=0, payload=1000)
    assert small_edns.flags & dns.flags.TC


def test_several_queries_on_one_tcp_connection(cluster_dns):
    with socket.create_connection(("127.0.0.1", cluster_dns.port), timeout=5) as sock:
        for name in ("web-hwk.default.svc.cluster.local.", "nginx.default.svc.cluster.local."):
            query = dns.message.make_query(name, "A")
            dns.query.send_tcp(sock, query)
            response, _ = dns.query.receive_tcp(sock, expiration=None)
            assert response.id == query.id and response.answer


def test_metrics_count_queries_by_rcode(cluster_dns):
    ask(cluster_dns, "web-hwk.default.svc.cluster.local.")
    ask(cluster_dns, "nope.default.svc.cluster.local.")
    ask(cluster_dns, "nope.default.svc.cluster.local.", tcp=True)
    host, port = cluster_dns.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert 'coredns_dns_responses_total{rcode="NOERROR"} 1' in text
    assert 'coredns_dns_responses_total{rcode="NXDOMAIN"} 2' in text
    assert 'coredns_dns_requests_total{proto="tcp"} 1' in text
    assert "coredns_dns_request_duration_seconds_count 3" in text
    assert 'coredns_dns_request_duration_seconds_bucket{le="+Inf"} 3' in text


def test_port_already_taken_fails_loudly(cluster_dns):
    with pytest.raises(DnsServerError, match=str(cluster_dns.port)):
        DnsServer("127.0.0.1", cluster_dns.port, ZoneHolder()).start()


def test_answer_too_big_even_for_tcp_is_truncated_not_dropped():
    ips = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(5000)]   # ~80 KB of A
    holder = ZoneHolder(services=[service("huge", cluster_ip="None")],
                        slices=[endpoint_slice("huge", ips)])
    with DnsServer("127.0.0.1", 0, holder) as server:
        response = ask(server, "huge.default.svc.cluster.local.", tcp=True)
        assert response.flags & dns.flags.TC
        assert server.metrics.internal_errors == 0
