"""The official `kubernetes` Python client can list, create and watch services."""

from __future__ import annotations

import threading

from kubernetes import client, config, watch


def core_api(server) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(str(server.kubeconfig_path), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def test_python_client_lists_creates_and_watches(api_server):
    v1 = core_api(api_server)
    assert [s.metadata.name for s in v1.list_namespaced_service("default").items] == ["kubernetes"]
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "py"},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)]))
    created = v1.create_namespaced_service("default", body)
    assert created.spec.cluster_ip.startswith("10.")
    assert 30000 <= created.spec.ports[0].node_port <= 32767
    rv = v1.list_namespaced_service("default").metadata.resource_version
    seen = []

    def consume():
        for event in watch.Watch().stream(v1.list_namespaced_service, "default",
                                          resource_version=rv, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                return
    consumer = threading.Thread(target=consume)
    consumer.start()
    v1.patch_namespaced_service("py", "default", {"metadata": {"labels": {"x": "y"}}})
    v1.delete_namespaced_service("py", "default")
    consumer.join(15)
    assert seen == [("MODIFIED", "py"), ("DELETED", "py")]
    try:
        v1.read_namespaced_service("py", "default")
        raise AssertionError("service still readable after delete")
    except client.ApiException as exc:
        assert exc.status == 404
