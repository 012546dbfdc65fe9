"""The resolver the kubelet gives a pod: dnsPolicy, hostNetwork and dnsConfig, as
the "DNS for Services and Pods" page of kubernetes.io describes them, written the
way containerd writes a pod's /etc/resolv.conf."""
from __future__ import annotations

import pytest

from base.cri import DnsConfig
from controlplane.kubelet.dns import KubeletDns, pod_dns

NODE = DnsConfig(servers=("172.31.0.2",), searches=("ec2.internal",),
                 options=("timeout:2", "attempts:5"))
KUBELET = KubeletDns(cluster_dns=("10.96.0.10",), cluster_domain="cluster.local", node=NODE)


def pod(namespace: str = "default", **spec) -> dict:
    return {"metadata": {"name": "p", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def resolv_conf(the_pod: dict, kubelet: KubeletDns = KUBELET) -> str:
    config, warnings = pod_dns(the_pod, kubelet)
    assert warnings == []
    return config.resolv_conf()


def test_cluster_first_is_the_default_and_appends_the_nodes_search_path():
    expected = ("search team-a.svc.cluster.local svc.cluster.local cluster.local ec2.internal\n"
                "nameserver 10.96.0.10\n"
                "options ndots:5\n")
    assert resolv_conf(pod("team-a")) == expected
    assert resolv_conf(pod("team-a", dnsPolicy="ClusterFirst")) == expected


def test_default_inherits_the_nodes_resolver():
    assert resolv_conf(pod(dnsPolicy="Default")) == (
        "search ec2.internal\nnameserver 172.31.0.2\noptions timeout:2 attempts:5\n")


@pytest.mark.parametrize("policy, cluster", [
    ("ClusterFirst", False),            # a hostNetwork pod falls back to Default
    ("ClusterFirstWithHostNet", True),
])
def test_host_network_pods_need_cluster_first_with_host_net(policy, cluster):
    config, _ = pod_dns(pod(dnsPolicy=policy, hostNetwork=True), KUBELET)
    assert config.servers == (("10.96.0.10",) if cluster else ("172.31.0.2",))


def test_the_pages_dns_config_example_with_policy_none():
    example = pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["192.0.2.1"],
        "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert resolv_conf(example) == (
        "search ns1.svc.cluster-domain.example my.dns.search.suffix\n"
        "nameserver 192.0.2.1\n"
        "options ndots:2 edns0\n")


def test_dns_config_is_merged_into_the_policys_resolver():
    merged = pod(dnsConfig={"nameservers": ["10.96.0.10", "192.0.2.1"],
                            "searches": ["cluster.local", "corp.example"],
                            "options": [{"name": "ndots", "value": "1"},
                                        {"name": "single-request-reopen"}]})
    config, _ = pod_dns(merged, KUBELET)
    assert config.servers == ("10.96.0.10", "192.0.2.1")          # duplicates dropped
    assert config.searches == ("default.svc.cluster.local", "svc.cluster.local",
                               "cluster.local", "ec2.internal", "corp.example")
    assert config.options == ("ndots:1", "single-request-reopen")  # the pod's ndots wins


def test_what_a_resolver_cannot_use_is_cut_with_the_kubelets_warning():
    crowded = pod(dnsConfig={"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                             "searches": [f"s{i}.example" for i in range(40)]})
    config, warnings = pod_dns(crowded, KUBELET)
    assert config.servers == ("10.96.0.10", "192.0.2.1", "192.0.2.2")
    assert len(config.searches) == 32
    assert warnings == [
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied "
        "nameserver line is: 10.96.0.10 192.0.2.1 192.0.2.2",
        "Search Line limits were exceeded, some search paths have been omitted, the applied "
        "search line is: " + " ".join(config.searches)]


def test_without_a_cluster_dns_cluster_first_uses_the_node():
    kubelet = KubeletDns(cluster_dns=(), cluster_domain="cluster.local", node=NODE)
    assert pod_dns(pod(), kubelet)[0] == NODE
