"""The official `kubernetes` Python client's typed NetworkingV1Api on Ingresses and
IngressClasses: CRUD, the status subresource, an invalid Ingress refused with its field
path, and a watch that sees every change (what an ingress controller's informer does)."""

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


def path(value: str, service: str, port: int | str, path_type: str = "Prefix"):
    number, name = (port, None) if isinstance(port, int) else (None, port)
    return client.V1HTTPIngressPath(
        path=value, path_type=path_type,
        backend=client.V1IngressBackend(service=client.V1IngressServiceBackend(
            name=service, port=client.V1ServiceBackendPort(number=number, name=name))))


def shop(name: str = "shop") -> client.V1Ingress:
    return client.V1Ingress(
        metadata=client.V1ObjectMeta(name=name, labels={"team": "a"},
                                     annotations={"alb.ingress.kubernetes.io/scheme":
                                                  "internet-facing"}),
        spec=client.V1IngressSpec(
            ingress_class_name="alb",
            tls=[client.V1IngressTLS(hosts=["shop.example.com"], secret_name="shop-tls")],
            rules=[client.V1IngressRule(host="shop.example.com", http=client.V1HTTPIngressRuleValue(
                paths=[path("/", "web", 80), path("/api", "api", "http", "Exact")]))]))


def test_typed_crud_and_status(net):
    created = net.create_namespaced_ingress("default", shop())
    assert created.metadata.generation == 1
    assert created.spec.ingress_class_name == "alb"
    paths = created.spec.rules[0].http.paths
    assert [(p.path, p.path_type, p.backend.service.name) for p in paths] == \
        [("/", "Prefix", "web"), ("/api", "Exact", "api")]
    assert paths[1].backend.service.port.name == "http"
    assert created.spec.tls[0].secret_name == "shop-tls"

    listed = net.list_namespaced_ingress("default", label_selector="team=a")
    assert [i.metadata.name for i in listed.items] == ["shop"]
    assert [i.metadata.name for i in net.list_ingress_for_all_namespaces().items] == ["shop"]

    host = "k8s-default-shop-0123456789-1234567890.us-east-1.elb.amazonaws.com"
    status = net.patch_namespaced_ingress_status(
        "shop", "default", {"status": {"loadBalancer": {"ingress": [{"hostname": host}]}}})
    assert status.status.load_balancer.ingress[0].hostname == host
    read = net.read_namespaced_ingress_status("shop", "default")
    assert read.status.load_balancer.ingress[0].hostname == host

    read = net.read_namespaced_ingress("shop", "default")
    read.spec.rules[0].http.paths.append(path("/static", "web", 80))
    read.status = None                  # the main resource keeps the stored status
    replaced = net.replace_namespaced_ingress("shop", "default", read)
    assert len(replaced.spec.rules[0].http.paths) == 3
    assert replaced.metadata.generation == 2
    assert replaced.status.load_balancer.ingress[0].hostname == host

    net.delete_namespaced_ingress("shop", "default")
    with pytest.raises(client.ApiException) as caught:
        net.read_namespaced_ingress("shop", "default")
    assert caught.value.status == 404


def test_ingressclass_crud(net):
    body = client.V1IngressClass(
        metadata=client.V1ObjectMeta(
            name="alb", annotations={"ingressclass.kubernetes.io/is-default-class": "true"}),
        spec=client.V1IngressClassSpec(
            controller="ingress.k8s.aws/alb",
            parameters=client.V1IngressClassParametersReference(
                api_group="elbv2.k8s.aws", kind="IngressClassParams", name="alb")))
    created = net.create_ingress_class(body)
    assert created.spec.parameters.scope == "Cluster"
    assert [c.metadata.name for c in net.list_ingress_class().items] == ["alb"]
    # An Ingress without a class gets the default one.
    ingress = shop("classless")
    ingress.spec.ingress_class_name = None
    assert net.create_namespaced_ingress("default", ingress).spec.ingress_class_name == "alb"
    net.delete_namespaced_ingress("classless", "default")
    net.delete_ingress_class("alb")
    assert net.list_ingress_class().items == []


def test_invalid_ingress_is_refused_with_its_field_path(net):
    body = shop("bad")
    body.spec.rules[0].http.paths[0].backend.service.port.number = 70000
    body.spec.rules[0].host = "*.*.example.com"
    with pytest.raises(client.ApiException) as caught:
        net.create_namespaced_ingress("default", body)
    status = json.loads(caught.value.body)
    assert caught.value.status == 422 and status["reason"] == "Invalid"
    assert [c["field"] for c in status["details"]["causes"]] == [
        "spec.rules[0].host", "spec.rules[0].http.paths[0].backend.service.port.number"]
    assert net.list_namespaced_ingress("default").items == []


def test_watch_sees_added_modified_deleted(net):
    rv = net.list_namespaced_ingress("default").metadata.resource_version
    seen = []

    def consume():
        for event in watch.Watch().stream(net.list_namespaced_ingress, "default",
                                          resource_version=rv, timeout_seconds=10):
            ing = event["object"]
            addresses = [p.hostname for p in (ing.status.load_balancer.ingress or [])]
            seen.append((event["type"], ing.metadata.name, len(ing.spec.rules[0].http.paths),
                         addresses))
            if event["type"] == "DELETED":
                return
    consumer = threading.Thread(target=consume)
    consumer.start()
    net.create_namespaced_ingress("default", shop("watched"))
    net.patch_namespaced_ingress_status(
        "watched", "default", {"status": {"loadBalancer": {"ingress": [{"hostname": "a.b"}]}}})
    net.delete_namespaced_ingress("watched", "default")
    consumer.join(15)
    assert seen == [("ADDED", "watched", 2, []), ("MODIFIED", "watched", 2, ["a.b"]),
                    ("DELETED", "watched", 2, ["a.b"])]
