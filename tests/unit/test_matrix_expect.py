"""The matrix's expected cells, from Service objects alone, and how it shows them."""
from __future__ import annotations

from probes.matrix.expect import Cell, Node, Source, SvcEndpoint, SvcInfo, SvcPort, plan_cells
from probes.matrix.probe import Matrix, service_info

N10, N11, N12 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"
NODES = [Node(N10, "172.31.0.10", "198.51.100.10"), Node(N11, "172.31.0.11", "198.51.100.11"),
         Node(N12, "172.31.0.12", "198.51.100.12")]
SOURCES = [Source("pod 172-31-0-10", "dns-0", "kube-system", "pod", N10),
           Source("pod 172-31-0-11", "web-a", "default", "pod", N11),
           Source("node 172-31-0-10", N10, None, "node", N10),
           Source("node 172-31-0-12", N12, None, "node", N12),
           Source("client", "client", None, "client", None)]
ON_N12 = (SvcEndpoint("192.168.2.5", N12, "solo-x"),)
WEB = (SvcEndpoint("192.168.1.2", N11, "web-a"), SvcEndpoint("192.168.2.1", N12, "web-b"))
HTTP = SvcPort("http", 80, "tcp", None, 80)


def svc(name, type="ClusterIP", endpoints=WEB, ports=(HTTP,), cluster_ip="10.96.0.20", **kw):
    return SvcInfo("default", name, type, cluster_ip, ports, endpoints=endpoints, **kw)


def cells(*services):
    plan = plan_cells(list(services), SOURCES, NODES)
    return {(s.label, t.label): (expected, why) for s, t, expected, why in plan.cells}, plan


def outcome(table, source, prefix):
    found = {k[1]: v[0] for k, v in table.items() if k[0] == source and k[1].startswith(prefix)}
    assert len(found) == 1, (source, prefix, found)
    return next(iter(found.values()))


def test_cluster_ip_is_open_inside_dropped_from_the_internet_rejected_without_endpoints():
    table, _ = cells(svc("web"), svc("empty", endpoints=(), cluster_ip="10.96.0.21"))
    assert outcome(table, "pod 172-31-0-11", "svc/web 10.96.0.20") == "open"
    assert outcome(table, "node 172-31-0-10", "svc/web 10.96.0.20") == "open"
    assert outcome(table, "client", "svc/web 10.96.0.20") == "dropped"
    assert outcome(table, "pod 172-31-0-10", "svc/empty 10.96.0.21") == "rejected"
    assert outcome(table, "client", "svc/empty 10.96.0.21") == "dropped"


def test_internal_traffic_policy_local_needs_an_endpoint_on_the_source_node():
    table, _ = cells(svc("itp", endpoints=ON_N12, itp="Local"))
    assert outcome(table, "node 172-31-0-12", "svc/itp ") == "open"
    assert outcome(table, "node 172-31-0-10", "svc/itp ") == "dropped"
    assert outcome(table, "pod 172-31-0-11", "svc/itp ") == "dropped"


def test_external_traffic_policy_local_node_ports():
    port = SvcPort("", 80, "tcp", 31000, 80)
    table, _ = cells(svc("etp", "NodePort", endpoints=ON_N12, ports=(port,), etp="Local"))
    # a node without a local endpoint drops external sources ...
    assert outcome(table, "client", "svc/etp 172-31-0-10:31000/tcp (198.51.100.10)") == "dropped"
    assert outcome(table, "node 172-31-0-12", "svc/etp 172-31-0-10:31000") == "dropped"
    assert outcome(table, "pod 172-31-0-11", "svc/etp 172-31-0-10:31000") == "dropped"
    # ... but short-circuits the node itself and its own pods
    assert outcome(table, "node 172-31-0-10", "svc/etp 172-31-0-10:31000") == "open"
    assert outcome(table, "pod 172-31-0-10", "svc/etp 172-31-0-10:31000") == "open"
    # the node with the endpoint serves everyone
    assert outcome(table, "client", "svc/etp 172-31-0-12:31000/tcp (198.51.100.12)") == "open"
    # the client reaches node ports only on public IPs
    assert not any(k[0] == "client" and "(172.31." in k[1] for k in table)


def test_cluster_policy_node_port_without_endpoints_is_rejected_everywhere():
    port = SvcPort("", 80, "tcp", 31001, 80)
    table, _ = cells(svc("empty", "NodePort", endpoints=(), ports=(port,)))
    assert {v[0] for k, v in table.items() if ":31001/" in k[1]} == {"rejected"}


def test_load_balancer_cells_are_for_the_client_and_nlb_without_endpoints_drops():
    port = SvcPort("", 80, "tcp", 31002, 80)
    classic = svc("lb", "LoadBalancer", ports=(port,), lb_hostname="a-1.elb.amazonaws.com",
                  lb_vip="203.0.113.11", lb_flavour="classic")
    nlb = svc("nlb", "LoadBalancer", endpoints=(), ports=(port,), cluster_ip="10.96.0.22",
              lb_hostname="b-2.elb.amazonaws.com", lb_vip="203.0.113.12", lb_flavour="nlb")
    pending = svc("later", "LoadBalancer", ports=(port,), cluster_ip="10.96.0.23")
    table, plan = cells(classic, nlb, pending)
    lb_cells = {k: v[0] for k, v in table.items() if "elb.amazonaws.com" in k[1]}
    assert lb_cells == {("client", "svc/lb a-1.elb.amazonaws.com:80/tcp"): "open",
                        ("client", "svc/nlb b-2.elb.amazonaws.com:80/tcp"): "dropped"}
    assert any("default/later" in n and "hostname" in n for n in plan.notes)


def test_external_name_and_headless_have_no_vip_cells_but_endpoints_stay_probed():
    table, plan = cells(svc("db", "ExternalName", endpoints=(), cluster_ip=None),
                        svc("hl", cluster_ip=None))
    assert not any(k[1].startswith(("svc/db", "svc/hl")) for k in table)
    assert outcome(table, "node 172-31-0-10", "pod web-a 192.168.1.2:80/tcp") == "open"
    assert outcome(table, "client", "pod web-b 192.168.2.1:80/tcp") == "dropped"
    assert any("ExternalName" in n for n in plan.notes) and any("headless" in n
                                                                for n in plan.notes)


def test_affinity_does_not_change_reachability_and_every_cell_says_why():
    table, _ = cells(svc("sticky", affinity="ClientIP"))
    assert outcome(table, "pod 172-31-0-11", "svc/sticky") == "open"
    assert all(why for _, why in table.values())


def test_service_info_reads_api_objects():
    service = {"metadata": {"name": "web", "namespace": "default",
                            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type":
                                            "nlb"}},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30",
                        "externalTrafficPolicy": "Local",
                        "ports": [{"name": "http", "port": 80, "targetPort": "web",
                                   "protocol": "TCP", "nodePort": 30080}]},
               "status": {"loadBalancer": {"ingress": [{"hostname": "x.elb.amazonaws.com"}]}}}
    slices = [{"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": [
                   {"addresses": ["192.168.1.2"], "nodeName": N11,
                    "conditions": {"ready": True}, "targetRef": {"name": "web-a"}},
                   {"addresses": ["192.168.2.9"], "nodeName": N12,
                    "conditions": {"ready": False}}]}]
    info = service_info(service, slices, {"x.elb.amazonaws.com": ["203.0.113.15"]})
    assert info.ports == (SvcPort("http", 80, "tcp", 30080, 8080),)
    assert info.endpoints == (SvcEndpoint("192.168.1.2", N11, "web-a"),)
    assert (info.etp, info.lb_vip, info.lb_flavour) == ("Local", "203.0.113.15", "nlb")
    headless = service_info({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}, [], {})
    assert headless.cluster_ip is None and headless.lb_flavour is None


def test_render_marks_unexpected_cells_and_ok_turns_false():
    good = Cell("client", "svc/web 10.96.0.20:80/tcp", "10.96.0.20", 80, "tcp", "dropped",
                "not routed", "dropped")
    bad = Cell("node 172-31-0-10", "svc/web 10.96.0.20:80/tcp", "10.96.0.20", 80, "tcp", "open",
               "DNAT", "rejected")
    matrix = Matrix("lab", "default", ("node 172-31-0-10", "client"), (good, bad))
    assert not matrix.ok and matrix.unexpected == (bad,)
    text = matrix.render()
    assert "rejected (want open)*" in text and "2 cells, 1 unexpected" in text
    assert "saw rejected, expected open because DNAT" in text
    assert Matrix("lab", "default", ("client",), (good,)).ok
    assert Matrix("lab", "default", ("client",), (good,)).to_json()["unexpected"] == 0
