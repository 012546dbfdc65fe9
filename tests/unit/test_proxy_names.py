"""Chain names and rule text match what kube-proxy produces.

Names seen on real clusters (kubeadm's default/kubernetes and kube-dns, a
kind cluster) and the names kube-proxy's own iptables proxier tests expect
for their service set: computing the same inputs must give the same names.
"""

from __future__ import annotations

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyOptions,
    compute_ruleset,
    endpoint_slice_from_k8s,
    names,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict


@pytest.mark.parametrize("port_name,protocol,chain", [
    ("default/kubernetes:https", "TCP", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns:dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("default/nginx", "TCP", "KUBE-SVC-2CMXP7HKUVJN7L6M"),
    ("default/test-svc", "tcp", "KUBE-SVC-QKNQQNIN727HO3XU"),
    ("ns1/svc1:p80", "TCP", "KUBE-SVC-XPGD46QRK7WJZT7O"),
])
def test_service_chain_names_seen_on_real_clusters(port_name, protocol, chain):
    assert names.cluster_chain(port_name, protocol) == chain
    assert len(chain) <= 28


def test_endpoint_chain_name_includes_the_endpoint():
    assert names.endpoint_chain("ns1/svc1:p80", "TCP", "10.180.0.1:80") == \
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert names.endpoint_chain("ns1/svc1:p80", "TCP", "10.180.0.2:80") == \
        "KUBE-SEP-LXVODXWDISEETFEF"


def test_prefixes_share_one_hash():
    h = names.port_proto_hash("ns2/svc2:p80", "TCP")
    assert names.local_chain("ns2/svc2:p80", "TCP") == f"KUBE-SVL-{h}"
    assert names.external_chain("ns2/svc2:p80", "TCP") == f"KUBE-EXT-{h}"
    assert names.firewall_chain("ns2/svc2:p80", "TCP") == f"KUBE-FW-{h}"
    assert names.is_service_chain(f"KUBE-FW-{h}")
    assert not names.is_service_chain("KUBE-SERVICES")


def p80(**extra):
    return [{"name": "p80", "port": 80, **extra}]


def kube_proxy_test_services():
    """The service set of kube-proxy's TestOverallIPTablesRules."""
    return [
        service_dict("svc1", "ns1", cluster_ip="172.30.0.41", ports=p80()),
        service_dict("svc2", "ns2", cluster_ip="172.30.0.42",
                     type="LoadBalancer", etp="Local",
                     ports=p80(nodePort=3001), external_ips=["192.168.99.22"],
                     health_check_node_port=30000, ingress=[{"ip": "1.2.3.4"}]),
        service_dict("svc3", "ns3", cluster_ip="172.30.0.43", type="NodePort",
                     ports=p80(nodePort=3003)),
        service_dict("svc4", "ns4", cluster_ip="172.30.0.44", type="NodePort",
                     external_ips=["192.168.99.33"], ports=p80(targetPort=80)),
        service_dict("svc5", "ns5", cluster_ip="172.30.0.45",
                     type="LoadBalancer", ports=p80(nodePort=3002),
                     ingress=[{"ip": "5.6.7.8"}], health_check_node_port=30000,
                     source_ranges=[" 203.0.113.0/25"], affinity_timeout=10800),
        service_dict("svc6", "ns6", cluster_ip="172.30.0.46", ports=p80()),
    ]


def kube_proxy_test_slices():
    def one(ns, svc, *eps):
        return slice_dict(svc, ns, name=f"{svc}-1",
                          ports=[{"name": "p80", "port": 80}], endpoints=eps)
    return [
        one("ns1", "svc1", endpoint("10.180.0.1", None)),
        one("ns2", "svc2", endpoint("10.180.0.2", None)),
        one("ns3", "svc3", endpoint("10.180.0.3", None)),
        one("ns4", "svc4", endpoint("10.180.0.4", None),
            endpoint("10.180.0.5", "test-node")),
        one("ns5", "svc5", endpoint("10.180.0.3", None)),
    ]


@pytest.fixture(scope="module")
def kube_proxy_scenario() -> str:
    ruleset = compute_ruleset(
        [service_from_k8s(s) for s in kube_proxy_test_services()],
        [endpoint_slice_from_k8s(s) for s in kube_proxy_test_slices()],
        NodeInfo("test-node", ("192.168.0.2",), "10.0.0.0/8", None),
        ProxyOptions(localhost_nodeports=True, random_fully=False))
    return render_iptables(ruleset)


def declared(text: str, table: str) -> set[str]:
    section = text.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0]
    return {line[1:].split()[0] for line in section.splitlines()
            if line.startswith(":")}


def test_same_chains_as_kube_proxy(kube_proxy_scenario):
    assert declared(kube_proxy_scenario, "nat") == {
        "KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING",
        "KUBE-EXT-4SW47YFZTEDKD3PK", "KUBE-EXT-GNZBNJ2PO5MGZ6GT",
        "KUBE-EXT-NUKIZ6OKUXPJNT4C", "KUBE-EXT-X27LE4BHSL4DOUIK",
        "KUBE-FW-NUKIZ6OKUXPJNT4C",
        "KUBE-SEP-C6EBXVWJJZMIWKLZ", "KUBE-SEP-I77PXRDZVX7PMWMN",
        "KUBE-SEP-OYPFS5VJICHGATKP", "KUBE-SEP-RS4RBKLTHTF2IUXJ",
        "KUBE-SEP-SXIVWICOYRO3J4NJ", "KUBE-SEP-UKSFD7AGPMPPLUHC",
        "KUBE-SVC-4SW47YFZTEDKD3PK", "KUBE-SVC-GNZBNJ2PO5MGZ6GT",
        "KUBE-SVC-NUKIZ6OKUXPJNT4C", "KUBE-SVC-X27LE4BHSL4DOUIK",
        "KUBE-SVC-XPGD46QRK7WJZT7O",
    }
    assert declared(kube_proxy_scenario, "filter") == {
        "KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"}


@pytest.mark.parametrize("rule", [
    # filter
    '-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port"'
    ' -m tcp -p tcp --dport 30000 -j ACCEPT',
    '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints"'
    ' -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT',
    '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local'
    ' endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP',
    '-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not'
    ' accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80'
    ' -j DROP',
    # nat
    '-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp'
    ' --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT',
    '-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP"'
    ' -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C',
    '-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for'
    ' ns2/svc2:p80 external destinations" -s 10.0.0.0/8'
    ' -j KUBE-SVC-GNZBNJ2PO5MGZ6GT',
    '-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80'
    ' loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C',
    '-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80'
    ' -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp'
    ' -j DNAT --to-destination 10.180.0.3:80',
    '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 ->'
    ' 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000'
    ' -j KUBE-SEP-UKSFD7AGPMPPLUHC',
    '-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 ->'
    ' 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck'
    ' --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN',
    '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster'
    ' IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8'
    ' -j KUBE-MARK-MASQ',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic'
    ' requiring SNAT" -j MASQUERADE',
])
def test_rules_read_like_kube_proxy(kube_proxy_scenario, rule):
    assert rule in kube_proxy_scenario.splitlines()


def test_ext_chain_of_local_policy_without_local_endpoints(kube_proxy_scenario):
    """ns2/svc2 has eTP Local and no local endpoint: the EXT chain only
    short-circuits pod and node traffic, and has no final jump."""
    ext = [line for line in kube_proxy_scenario.splitlines()
           if line.startswith("-A KUBE-EXT-GNZBNJ2PO5MGZ6GT ")]
    assert [line.rsplit(" -j ", 1)[1] for line in ext] == [
        "KUBE-SVC-GNZBNJ2PO5MGZ6GT", "KUBE-MARK-MASQ",
        "KUBE-SVC-GNZBNJ2PO5MGZ6GT"]
