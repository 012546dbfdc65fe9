"""Ingresses are garbage-collected by their ownerReferences, as upstream's generic garbage
collector does: an Ingress owned by a Service or a Deployment (what Helm charts and operators
make) goes when its owner goes; one with another owner still alive stays."""
from __future__ import annotations

import socket

import pytest

from base.kube.client import KubeClient, credentials_from_kubeconfig
from base.kube.informer import Informer
from base.waiting import wait_until
from controlplane.api import ApiServer
from controlplane.controllers.gc import GarbageCollector
from support import controller_harness as harness


@pytest.fixture
def cluster(tmp_path):
    """An admin client and a running garbage collector (kube-controller-manager's identity)."""
    server = ApiServer(tmp_path / "api", harness.cluster_info(), node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.add_listener(sock)
    with server.start():
        admin = KubeClient.from_kubeconfig(str(server.kubeconfig_path))
        path = server.write_kubeconfig(tmp_path / "kcm", f"https://{server.addresses[0]}",
                                       token=server.mint_token("system:kube-controller-manager"))
        kcm = KubeClient(credentials_from_kubeconfig(str(path)))
        informers = {r: Informer(kcm, r) for r in GarbageCollector.reads}
        gc = GarbageCollector(kcm, informers)
        for informer in informers.values():
            informer.start()
        gc.start()
        try:
            yield admin
        finally:
            gc.stop()
            for informer in informers.values():
                informer.stop()


def ref(owner: dict, controller: bool = True) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": controller}


def service(admin: KubeClient, name: str) -> dict:
    return admin.create("services", {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": name},
                                     "spec": {"ports": [{"port": 80}]}}, "default")


def ingress(admin: KubeClient, name: str, *refs: dict) -> dict:
    return admin.create("ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "ownerReferences": list(refs)},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}},
        "default")


def names(admin: KubeClient) -> list[str]:
    return sorted(i["metadata"]["name"] for i in admin.list("ingresses", "default")[0])


def test_an_ingress_goes_with_its_owner_and_stays_with_another_alive(cluster):
    web, api = service(cluster, "web"), service(cluster, "api")
    ingress(cluster, "owned", ref(web))
    ingress(cluster, "shared", ref(web), ref(api, controller=False))
    ingress(cluster, "free")
    cluster.delete("services", "web", "default")
    wait_until("the owned Ingress collected", lambda: "owned" not in names(cluster),
               timeout=10)
    assert names(cluster) == ["free", "shared"]
