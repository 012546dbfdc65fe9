"""A pod's sandbox as planned: the kubelet's /etc/hosts, /etc/hostname, a private /tmp."""
from __future__ import annotations

import ipaddress

from base.cri import HostAlias, PodSandboxConfig
from topo.plan import etc_hosts_for_pod, plan_pod
from topo.spec import parse_spec

HEADER = ("# Kubernetes-managed hosts file.\n"
          "127.0.0.1\tlocalhost\n"
          "::1\tlocalhost ip6-localhost ip6-loopback\n"
          "fe00::0\tip6-localnet\n"
          "fe00::0\tip6-mcastprefix\n"
          "fe00::1\tip6-allnodes\n"
          "fe00::2\tip6-allrouters\n")


def test_hosts_file_names_the_pod_by_its_hostname():
    assert etc_hosts_for_pod(["192.168.1.5"], "web-1") == HEADER + "192.168.1.5\tweb-1\n"


def test_hosts_file_with_a_subdomain_has_the_fqdn_first():
    assert etc_hosts_for_pod(["192.168.1.5"], "db-0", "db.shop.svc.cluster.local") == (
        HEADER + "192.168.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n")


def test_host_aliases_follow_under_their_own_comment():
    text = etc_hosts_for_pod(["192.168.1.5"], "web-1", aliases=(
        HostAlias("10.1.2.3", ("foo.local", "bar.local")), HostAlias("10.1.2.4", ("baz",))))
    assert text == (HEADER + "192.168.1.5\tweb-1\n\n# Entries added by HostAliases.\n"
                    "10.1.2.3\tfoo.local\tbar.local\n10.1.2.4\tbaz\n")


def test_plan_pod_carries_the_sandbox():
    spec = parse_spec({"nodes": [{"name": "ip-172-31-0-10", "role": "control-plane"},
                                 {"name": "ip-172-31-0-11"}]})
    sandbox = PodSandboxConfig(hostname="db-0", domain="db.default.svc.cluster.local",
                               kernel_hostname="db-0.db.default.svc.cluster.local")
    plan = plan_pod(spec, 1, "p1", "db-0", "default", ipaddress.IPv4Address("192.168.1.7"),
                    sandbox)
    files = dict(plan.pod.etc_files)
    assert plan.pod.hostname == "db-0.db.default.svc.cluster.local"
    assert files["/etc/hostname"] == "db-0.db.default.svc.cluster.local\n"
    assert files["/etc/hosts"].endswith("192.168.1.7\tdb-0.db.default.svc.cluster.local\tdb-0\n")
    assert plan.pod.private_tmp and "\nnameserver 10.96.0.10\n" in plan.pod.resolv_conf
    plain = plan_pod(spec, 1, "p2", "web-1", "default", ipaddress.IPv4Address("192.168.1.8"))
    assert plain.pod.hostname == "web-1"
    assert dict(plain.pod.etc_files)["/etc/hosts"].endswith("192.168.1.8\tweb-1\n")
