"""The cluster DNS zone and answers as pure functions of API objects (no sockets)."""
import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from agents.dns import MalformedQuery, UpstreamTimeout, ZoneError, ZoneHolder, answer, build_zone
from agents.dns.zone import Authority, Record

DOMAIN = "cluster.local."


def service(name, namespace="default", cluster_ip=None, ports=(), **spec):
    body = {"ports": [dict(p) for p in ports], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def endpoint_slice(service_name, endpoints, ports=(), namespace="default", suffix="abcde"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": list(ports)}


def ep(ip, ready=True, hostname=None):
    entry = {"addresses": [ip], "conditions": {"ready": ready}}
    if hostname:
        entry["hostname"] = hostname
    return entry


def query(zone, name, qtype="A"):
    return answer(zone, DNSRecord.question(name, qtype))


def rdatas(reply, rtype=None):
    return sorted(str(rr.rdata) for rr in reply.rr if rtype is None or QTYPE[rr.rtype] == rtype)


HEADLESS_PORTS = [{"name": "web", "port": 8080, "protocol": "TCP"}]


@pytest.fixture
def zone():
    return build_zone(
        services=[
            service("web-hwk", cluster_ip="10.107.229.55", type="NodePort",
                    ports=[{"name": "http", "port": 80, "protocol": "TCP"}]),
            service("kube-dns", "kube-system", cluster_ip="10.96.0.10",
                    ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                           {"name": "metrics", "port": 9153, "protocol": "TCP"}]),
            service("nameless", cluster_ip="10.96.7.7", ports=[{"port": 80}]),
            service("nginx", cluster_ip="None", ports=[{"name": "web", "port": 80}]),
            service("idle", cluster_ip="None"),
            service("db", type="ExternalName", externalName="DB.Example.com."),
            service("alias", type="ExternalName", externalName="web-hwk.default.svc.cluster.local"),
        ],
        slices=[
            endpoint_slice("nginx", [ep("192.168.1.5", hostname="web-0"), ep("192.168.2.6"),
                                     ep("192.168.1.9", ready=False)], HEADLESS_PORTS),
            endpoint_slice("idle", [ep("192.168.1.11", ready=False)]),
        ])


def test_cluster_ip_a_record_with_ttl_30(zone):
    reply = query(zone, "web-hwk.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert rdatas(reply) == ["10.107.229.55"]
    assert {rr.ttl for rr in reply.rr} == {30}


def test_headless_has_one_a_per_ready_endpoint_and_endpoint_names(zone):
    assert rdatas(query(zone, "nginx.default.svc.cluster.local")) == ["192.168.1.5", "192.168.2.6"]
    assert rdatas(query(zone, "web-0.nginx.default.svc.cluster.local")) == ["192.168.1.5"]
    assert rdatas(query(zone, "192-168-2-6.nginx.default.svc.cluster.local")) == ["192.168.2.6"]
    assert query(zone, "192-168-1-9.nginx.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_headless_without_ready_endpoints_is_nxdomain(zone):
    assert query(zone, "idle.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_publish_not_ready_addresses_counts_every_endpoint():
    zone = build_zone([service("idle", cluster_ip="None", publishNotReadyAddresses=True)],
                      [endpoint_slice("idle", [ep("192.168.1.11", ready=False)])])
    assert rdatas(query(zone, "idle.default.svc.cluster.local")) == ["192.168.1.11"]


def test_srv_for_named_ports_only(zone):
    reply = query(zone, "_http._tcp.web-hwk.default.svc.cluster.local", "SRV")
    assert rdatas(reply) == ["0 100 80 web-hwk.default.svc.cluster.local."]
    assert [str(rr.rdata) for rr in reply.ar] == ["10.107.229.55"]
    dns_udp = query(zone, "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert rdatas(dns_udp) == ["0 100 53 kube-dns.kube-system.svc.cluster.local."]
    assert query(zone, "_dns._tcp.kube-dns.kube-system.svc.cluster.local", "SRV").header.rcode \
        == RCODE.NXDOMAIN
    assert query(zone, "nameless.default.svc.cluster.local", "SRV").rr == []


def test_headless_srv_targets_each_endpoint(zone):
    reply = query(zone, "_web._tcp.nginx.default.svc.cluster.local", "SRV")
    assert rdatas(reply) == ["0 50 8080 192-168-2-6.nginx.default.svc.cluster.local.",
                             "0 50 8080 web-0.nginx.default.svc.cluster.local."]
    assert sorted(str(rr.rdata) for rr in reply.ar) == ["192.168.1.5", "192.168.2.6"]


def test_external_name_is_a_cname_without_upstream(zone):
    reply = query(zone, "db.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [("CNAME", "db.example.com.")]


def test_external_name_is_chased_upstream():
    asked = []

    def upstream(question):
        asked.append((str(question.q.qname), QTYPE[question.q.qtype]))
        reply = DNSRecord.question(str(question.q.qname))
        return reply.replyZone(f"{question.q.qname} 60 A 203.0.113.50")

    zone = build_zone([service("db", type="ExternalName", externalName="db.example.com")])
    reply = answer(zone, DNSRecord.question("db.default.svc.cluster.local"), upstream)
    assert asked == [("db.example.com.", "A")]
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == \
        [("CNAME", "db.example.com."), ("A", "203.0.113.50")]


def test_external_name_into_the_cluster_resolves_locally(zone):
    reply = query(zone, "alias.default.svc.cluster.local")
    assert [(QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == \
        [("CNAME", "web-hwk.default.svc.cluster.local."), ("A", "10.107.229.55")]


def test_ptr_for_cluster_ips_and_headless_endpoints(zone):
    assert rdatas(query(zone, "55.229.107.10.in-addr.arpa", "PTR")) == \
        ["web-hwk.default.svc.cluster.local."]
    assert rdatas(query(zone, "5.1.168.192.in-addr.arpa", "PTR")) == \
        ["web-0.nginx.default.svc.cluster.local."]
    unknown_in_cidr = query(zone, "99.99.96.10.in-addr.arpa", "PTR")
    assert unknown_in_cidr.header.rcode == RCODE.NXDOMAIN
    assert zone.classify("4.3.2.1.in-addr.arpa.") is Authority.UPSTREAM


@pytest.mark.parametrize("name, expected", [
    ("10-244-1-5.default.pod.cluster.local", ["10.244.1.5"]),
    ("192-168-0-1.kube-system.pod.cluster.local", ["192.168.0.1"]),
])
def test_pod_records_come_from_the_name(zone, name, expected):
    assert rdatas(query(zone, name)) == expected


@pytest.mark.parametrize("name", ["10-244-1.default.pod.cluster.local",
                                  "10-244-1-256.default.pod.cluster.local",
                                  "10-244-01-5.default.pod.cluster.local",
                                  "x.10-244-1-5.default.pod.cluster.local"])
def test_bad_pod_names_are_nxdomain(zone, name):
    assert query(zone, name).header.rcode == RCODE.NXDOMAIN


def test_pods_verified_mode_needs_the_pod():
    pods = [{"metadata": {"name": "p", "namespace": "default"}, "status": {"podIP": "10.244.1.5"}}]
    zone = build_zone(pods=pods, pod_mode="verified")
    assert rdatas(query(zone, "10-244-1-5.default.pod.cluster.local")) == ["10.244.1.5"]
    assert query(zone, "10-244-1-6.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_names_match_case_insensitively_and_echo_the_question(zone):
    reply = query(zone, "Web-HWK.DEFAULT.svc.Cluster.Local")
    assert rdatas(reply) == ["10.107.229.55"]
    assert str(reply.rr[0].rname) == "Web-HWK.DEFAULT.svc.Cluster.Local."


def test_unknown_names_are_nxdomain_with_soa(zone):
    reply = query(zone, "nope.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]
    assert reply.auth[0].ttl == 30


@pytest.mark.parametrize("name, qtype", [("web-hwk.default.svc.cluster.local", "AAAA"),
                                         ("default.svc.cluster.local", "A"),
                                         ("svc.cluster.local", "A"),
                                         ("_tcp.web-hwk.default.svc.cluster.local", "SRV")])
def test_existing_names_without_that_type_are_nodata(zone, name, qtype):
    reply = query(zone, name, qtype)
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])
    assert [QTYPE[rr.rtype] for rr in reply.auth] == ["SOA"]


def test_apex_soa_and_ns(zone):
    assert [QTYPE[rr.rtype] for rr in query(zone, "cluster.local", "SOA").rr] == ["SOA"]
    assert rdatas(query(zone, "cluster.local", "NS")) == ["ns.dns.cluster.local."]


def test_outside_names_are_refused_without_upstream_and_forwarded_with(zone):
    assert query(zone, "example.org").header.rcode == RCODE.REFUSED

    def upstream(question):
        return DNSRecord.question(str(question.q.qname)).replyZone("example.org 60 A 203.0.113.9")

    reply = answer(zone, DNSRecord.question("example.org"), upstream)
    assert (reply.header.rcode, rdatas(reply)) == (RCODE.NOERROR, ["203.0.113.9"])


def test_upstream_failure_is_servfail(zone):

    def upstream(question):
        raise UpstreamTimeout(("127.0.0.1", 9), "no answer")

    assert answer(zone, DNSRecord.question("example.org"), upstream).header.rcode == RCODE.SERVFAIL
    assert answer(zone, DNSRecord.question("db.default.svc.cluster.local"), upstream).header.rcode \
        == RCODE.SERVFAIL


def test_endpoints_v1_work_like_slices():
    zone = build_zone([service("nginx", cluster_ip="None")],
                      [{"apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": "nginx", "namespace": "default"},
                        "subsets": [{"addresses": [{"ip": "192.168.1.5", "hostname": "web-0"}],
                                     "notReadyAddresses": [{"ip": "192.168.1.6"}],
                                     "ports": [{"name": "web", "port": 80}]}]}])
    assert rdatas(query(zone, "nginx.default.svc.cluster.local")) == ["192.168.1.5"]
    assert rdatas(query(zone, "_web._tcp.nginx.default.svc.cluster.local", "SRV")) == \
        ["0 100 80 web-0.nginx.default.svc.cluster.local."]


def test_zone_holder_swaps_whole_zones():
    holder = ZoneHolder(services=[service("nginx", cluster_ip="None")],
                        slices=[endpoint_slice("nginx", [ep("192.168.1.5")])])
    first = holder.zone
    second = holder.update(slices=[endpoint_slice("nginx", [ep("192.168.1.5"), ep("192.168.2.5")])])
    assert holder.zone is second and second.serial == first.serial + 1
    assert rdatas(query(first, "nginx.default.svc.cluster.local")) == ["192.168.1.5"]
    assert rdatas(query(second, "nginx.default.svc.cluster.local")) == \
        ["192.168.1.5", "192.168.2.5"]
    with pytest.raises(ZoneError):
        holder.update(services=[{"metadata": {}}])
    assert holder.zone is second              # a bad update keeps the zone being served


@pytest.mark.parametrize("bad, where", [
    ({"metadata": {"namespace": "default"}, "spec": {}}, "metadata.name"),
    (service("web", cluster_ip="10.96.0.300"), "10.96.0.300"),
    (service("Bad_Name", cluster_ip="10.96.0.3"), "Bad_Name"),
    (service("db", type="ExternalName", externalName="a" * 64 + ".com"), "externalName"),
])
def test_bad_objects_raise_zone_error_naming_the_problem(bad, where):
    with pytest.raises(ZoneError, match=where):
        build_zone([bad])


def test_zone_records_are_frozen(zone):
    with pytest.raises(TypeError):
        zone.records["x."] = (Record("A", "1.2.3.4"),)


def test_answer_rejects_undecodable_bytes(zone):
    with pytest.raises(MalformedQuery):
        answer(zone, b"\x00\x01garbage")
