"""The official `kubernetes` Python client's typed NetworkingV1Api: NetworkPolicy CRUD,
an invalid policy refused with its field path, and a watch that sees every change."""

from __future__ import annotations

import json
import threading

import pytest
from kubernetes import client, config, watch


@pytest.fixture(scope="module")
def net(shared_server) -> client.NetworkingV1Api:
    configuration = client.Configuration()
    config.load_kube_config(str(shared_server.kubeconfig_path),
                            client_configuration=configuration)
    return client.NetworkingV1Api(client.ApiClient(configuration))


def allow_web(name: str = "allow-web") -> client.V1NetworkPolicy:
    return client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name=name, labels={"team": "a"}),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(match_labels={"app": "web"}),
            ingress=[client.V1NetworkPolicyIngressRule(
                _from=[client.V1NetworkPolicyPeer(
                    pod_selector=client.V1LabelSelector(match_labels={"role": "client"})),
                    client.V1NetworkPolicyPeer(ip_block=client.V1IPBlock(
                        cidr="203.0.113.0/24", _except=["203.0.113.128/25"]))],
                ports=[client.V1NetworkPolicyPort(port=80),
                       client.V1NetworkPolicyPort(port=30000, end_port=30100,
                                                  protocol="UDP")])]))


def test_typed_crud(net):
    created = net.create_namespaced_network_policy("default", allow_web())
    assert created.metadata.generation == 1
    assert created.spec.policy_types == ["Ingress"]
    assert [(p.port, p.end_port, p.protocol) for p in created.spec.ingress[0].ports] == \
        [(80, None, "TCP"), (30000, 30100, "UDP")]
    peers = created.spec.ingress[0]._from
    assert peers[0].pod_selector.match_labels == {"role": "client"}
    assert (peers[1].ip_block.cidr, peers[1].ip_block._except) == \
        ("203.0.113.0/24", ["203.0.113.128/25"])

    read = net.read_namespaced_network_policy("allow-web", "default")
    assert read.metadata.uid == created.metadata.uid
    listed = net.list_namespaced_network_policy("default", label_selector="team=a")
    assert [p.metadata.name for p in listed.items] == ["allow-web"]
    assert [p.metadata.name for p in net.list_network_policy_for_all_namespaces().items] == \
        ["allow-web"]

    patched = net.patch_namespaced_network_policy(
        "allow-web", "default",
        {"spec": {"egress": [{"to": [{"namespaceSelector": {}}]}],
                  "policyTypes": ["Ingress", "Egress"]}})
    assert patched.spec.policy_types == ["Ingress", "Egress"]
    assert patched.spec.egress[0].to[0].namespace_selector is not None
    assert patched.metadata.generation == 2

    patched.spec.pod_selector = client.V1LabelSelector(match_expressions=[
        client.V1LabelSelectorRequirement(key="app", operator="In", values=["web", "api"])])
    replaced = net.replace_namespaced_network_policy("allow-web", "default", patched)
    assert replaced.spec.pod_selector.match_expressions[0].values == ["web", "api"]
    assert replaced.metadata.generation == 3

    net.delete_namespaced_network_policy("allow-web", "default")
    with pytest.raises(client.ApiException) as caught:
        net.read_namespaced_network_policy("allow-web", "default")
    assert caught.value.status == 404


def test_invalid_policy_is_refused_with_its_field_path(net):
    body = allow_web("bad")
    body.spec.ingress[0].ports[0].end_port = 79
    with pytest.raises(client.ApiException) as caught:
        net.create_namespaced_network_policy("default", body)
    status = json.loads(caught.value.body)
    assert caught.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.ingress[0].ports[0].endPort",
        "message": "Invalid value: 79: must be greater than or equal to `port`"}]
    assert net.list_namespaced_network_policy("default").items == []


def test_watch_sees_added_modified_deleted(net):
    rv = net.list_namespaced_network_policy("default").metadata.resource_version
    seen = []

    def consume():
        for event in watch.Watch().stream(net.list_namespaced_network_policy, "default",
                                          resource_version=rv, timeout_seconds=10):
            policy = event["object"]
            seen.append((event["type"], policy.metadata.name,
                         policy.spec.pod_selector.match_labels))
            if event["type"] == "DELETED":
                return
    consumer = threading.Thread(target=consume)
    consumer.start()
    net.create_namespaced_network_policy("default", allow_web("watched"))
    net.patch_namespaced_network_policy("watched", "default",
                                        {"spec": {"podSelector": {"matchLabels": {"app": "db"}}}})
    net.delete_namespaced_network_policy("watched", "default")
    consumer.join(15)
    assert seen == [("ADDED", "watched", {"app": "web"}), ("MODIFIED", "watched", {"app": "db"}),
                    ("DELETED", "watched", {"app": "db"})]
