"""An in-process cluster without root: API server on loopback + ControlPlane + fake runtime.

    with InProcessCluster(tmp_dir) as cluster:
        cluster.client.create("deployments", {...})

What the controller and kubelet unit tests (and quick experiments) run
against: the real API server and the real controllers and kubelets, each with
the identity the lab gives it (so under RBAC as in a lab), with a
FakePodRuntime in place of Mininet hosts and processes; `client` is the admin.
"""
from __future__ import annotations

import socket
from pathlib import Path

from base.errors import LabTimeout
from base.kube.client import KubeClient
from controlplane.api import ApiServer
from controlplane.control_plane import ControlPlane
from controlplane.identities import KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, kubelet
from labd.credentials import identity_client
from support.fake_runtime import FakePodRuntime

NODES = (
    {"name": "ip-172-31-0-10", "role": "control-plane", "internalIP": "172.31.0.10",
     "externalIP": "198.51.100.10", "podCIDR": "192.168.0.0/24"},
    {"name": "ip-172-31-0-11", "role": "worker", "internalIP": "172.31.0.11",
     "externalIP": "198.51.100.11", "podCIDR": "192.168.1.0/24"},
    {"name": "ip-172-31-0-12", "role": "worker", "internalIP": "172.31.0.12",
     "externalIP": "198.51.100.12", "podCIDR": "192.168.2.0/24"},
)
WORKERS = ("ip-172-31-0-11", "ip-172-31-0-12")


def cluster_info(nodes=NODES) -> dict:
    return {"serviceCIDR": "10.96.0.0/12", "nodePortRange": "30000-32767",
            "podCIDR": "192.168.0.0/16", "clusterDomain": "cluster.local",
            "controlPlaneEndpoint": {"ip": "172.31.0.10", "port": 6443}, "nodes": list(nodes)}


class InProcessCluster:
    def __init__(self, state_dir: Path, *, runtime: FakePodRuntime | None = None):
        self.server = ApiServer(Path(state_dir), cluster_info(), node_grace_period=None, seed=1)
        self.runtime = runtime or FakePodRuntime({n["name"]: n["podCIDR"] for n in NODES})
        self.client: KubeClient | None = None
        self.plane: ControlPlane | None = None

    def __enter__(self) -> InProcessCluster:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.server.add_listener(sock)
        self.server.start()
        try:
            self.client = KubeClient.from_kubeconfig(str(self.server.kubeconfig_path))
            # Each component as the lab runs it: its own identity, RBAC-bound.
            server = self.server
            self.plane = ControlPlane(
                identity_client(server, KUBE_CONTROLLER_MANAGER), self.runtime,
                [n["name"] for n in NODES],
                scheduler_client=identity_client(server, KUBE_SCHEDULER),
                node_clients={n["name"]: identity_client(server, kubelet(n["name"]))
                              for n in NODES})
            self.plane.start()
            if not self.plane.wait_synced(10.0):
                raise LabTimeout("control plane informers did not sync in 10 s")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.plane is not None:
            self.plane.stop()
        self.server.stop()

    # --- reading, for assertions -------------------------------------------------

    def pods(self, selector: str | None = None, namespace: str = "default") -> list[dict]:
        return self.client.list("pods", namespace, label_selector=selector)[0]

    def get(self, resource: str, name: str, namespace: str = "default") -> dict | None:
        return self.client.find(resource, name, namespace)

    def slices(self, service: str, namespace: str = "default") -> list[dict]:
        return self.client.list("endpointslices", namespace,
                                label_selector=f"kubernetes.io/service-name={service}")[0]


def deployment(name: str, replicas: int = 1, image: str = "nginx", **pod_spec) -> dict:
    container = {"name": image.split(":")[0].split("/")[-1], "image": image}
    container.update(pod_spec.pop("container", {}))
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [container],
                                           "terminationGracePeriodSeconds": 1, **pod_spec}}}}


def service(name: str, selector: dict | None, ports: list[dict], **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": ports, **spec}}
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def ready_pods(cluster: InProcessCluster, selector: str, count: int) -> list[dict]:
    """Exactly `count` live pods, all Ready (else [])."""
    pods = [p for p in cluster.pods(selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in pods if is_ready(p)]
    return ready if len(ready) == len(pods) == count else []
