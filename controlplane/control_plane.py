"""The lab's control plane: controllers and one kubelet per node, as threads.

    with ApiServer(...) as api, ControlPlane(client, LabPodRuntime(lab), node_names):
        ...

ControlPlane owns everything it starts: the shared informers (one list+watch
per resource for all controllers), the deployment, replicaset, scheduler,
endpoints and garbage-collector controllers, and the kubelets; leaving the
`with` block stops them all with bounded joins, then closes the runtime.
"""
from __future__ import annotations

import sys

from base.cri import PodRuntime
from base.kube.client import KubeClient
from base.kube.informer import Informer
from controlplane.controllers.deployment import DeploymentController
from controlplane.controllers.endpoints_controller import EndpointsController
from controlplane.controllers.gc import GarbageCollector
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.controllers.scheduler import Scheduler
from controlplane.kubelet.kubelet import HEARTBEAT_SECONDS, Kubelet

SHARED_RESOURCES = ("pods", "services", "endpoints", "endpointslices", "deployments",
                    "replicasets", "nodes")
STOP_TIMEOUT = 5.0


class ControlPlane:
    def __init__(self, client: KubeClient, runtime: PodRuntime, node_names: list[str], *,
                 python: str = sys.executable,
                 builtin_images: dict[str, list[str]] | None = None,
                 node_clients: dict[str, KubeClient] | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS):
        """node_clients: per node, the client its kubelet uses (in the lab: one
        whose connections leave from the node, so a cut-off node stops
        reporting, as a real one does); default: `client`."""
        self.client = client
        self.runtime = runtime
        self.informers = {r: Informer(client, r) for r in SHARED_RESOURCES}
        self.controllers = [cls(client, self.informers) for cls in (
            DeploymentController, ReplicaSetController, Scheduler, EndpointsController,
            GarbageCollector)]
        node_clients = node_clients or {}
        self.kubelets = [Kubelet(node_clients.get(name, client), runtime, name, python=python,
                                 builtin_images=builtin_images, heartbeat=heartbeat_seconds)
                         for name in node_names]
        self._started = False

    def start(self) -> ControlPlane:
        self._started = True
        for kubelet in self.kubelets:
            kubelet.start()
        for controller in self.controllers:
            controller.start()
        for informer in self.informers.values():
            informer.start()
        return self

    def wait_synced(self, timeout: float = 10.0) -> bool:
        return all(i.wait_synced(timeout) for i in self.informers.values()) and all(
            k.wait_synced(timeout) for k in self.kubelets)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        for controller in self.controllers:
            controller.stop(timeout)
        for informer in self.informers.values():
            informer.stop(timeout)
        for kubelet in self.kubelets:
            kubelet.stop(timeout)
        self.runtime.close()

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
