"""kubeadm's CoreDNS add-on as the lab installs it: the Corefile in ConfigMap
kube-system/coredns, mounted by the coredns pods, and the program that stands in
for the image reading it."""
from __future__ import annotations

import dataclasses

from agents.dns.coreconfig import build_config, kubeadm_corefile
from agents.dns.corefile import parse_corefile
from labd import addons
from topo.spec import load_spec


def test_the_configmap_holds_kubeadms_corefile_for_the_cluster_domain():
    config_map = addons.coredns_config_map()
    assert config_map["metadata"] == {"name": "coredns", "namespace": "kube-system"}
    corefile = config_map["data"]["Corefile"]
    assert corefile == kubeadm_corefile("cluster.local")
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in corefile
    config = build_config(parse_corefile(corefile), node_resolver=("172.31.0.2", 53))
    assert config.kubernetes.domain == "cluster.local."


def test_the_deployment_mounts_it_as_kubeadms_does():
    _, deployment = addons.coredns_objects(load_spec())
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert container["volumeMounts"] == [{"name": "config-volume", "mountPath": "/etc/coredns",
                                          "readOnly": True}]
    assert pod["volumes"] == [{"name": "config-volume", "configMap": {
        "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}]
    assert pod["dnsPolicy"] == "Default"


def test_the_stand_in_reads_that_corefile_on_the_labs_clock():
    spec = dataclasses.replace(load_spec(), time_factor=0.25)
    argv = addons.coredns_stand_in(spec)
    assert argv[1:5] == ["-m", "agents.dns.cluster", "-conf", "/etc/coredns/Corefile"]
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options == {"--upstream": f"{spec.network.vpc_resolver}:53",
                       "--service-cidr": str(spec.network.service_cidr),
                       "--domain": "cluster.local", "--time-factor": "0.25"}
