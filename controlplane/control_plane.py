"""The lab's control plane: controllers and one kubelet per node, as threads.

    with ApiServer(...) as api, ControlPlane(client, LabPodRuntime(lab), node_names):
        ...

ControlPlane owns everything it starts: the shared informers (one list+watch
per resource for all controllers), the deployment, replicaset, scheduler,
endpoints, garbage-collector and service-account controllers, the workload
controllers (StatefulSet, DaemonSet, Job, TTL-after-finished, CronJob,
ReplicationController), the kubelets, and one Event recorder per component
(a kubelet's writes through its node's client, with the node as the Events'
host); leaving the `with` block stops them all with
bounded joins (the recorders last, so the final Events are written), then
closes the runtime.

A controller that declares the resources it `reads` is handed only those
informers, so it starts as soon as they have listed (one the API refuses
holds back only the controllers that read it); the others get the core set.
`time_factor` scales the kubelets' node Lease and the Job back-off (the lab
passes its spec's, 0.1 by default; 1.0 is Kubernetes' own timing).
"""
from __future__ import annotations

import concurrent.futures
import sys
import time

from base.cri import PodRuntime
from base.kube.client import KubeClient
from base.kube.informer import Informer
from controlplane.controllers.clusterrole_aggregation import ClusterRoleAggregationController
from controlplane.controllers.cronjob import CronJobController
from controlplane.controllers.daemonset_controller import DaemonSetController
from controlplane.controllers.deployment import DeploymentController
from controlplane.controllers.endpoints_controller import EndpointsController
from controlplane.controllers.gc import GarbageCollector
from controlplane.controllers.job_controller import JobController, TTLAfterFinishedController
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.controllers.replicationcontroller import ReplicationControllerController
from controlplane.controllers.scheduler import Scheduler
from controlplane.controllers.serviceaccounts import ServiceAccountsController
from controlplane.controllers.statefulset import StatefulSetController
from controlplane.events import EventRecorder
from controlplane.kubelet.dns import KubeletDns
from controlplane.kubelet.kubelet import HEARTBEAT_SECONDS, Kubelet

CORE_RESOURCES = ("pods", "services", "endpoints", "endpointslices", "deployments",
                  "replicasets", "nodes", "networkpolicies", "ingresses", "namespaces",
                  "serviceaccounts", "clusterroles")
WORKLOAD_RESOURCES = ("statefulsets", "daemonsets", "controllerrevisions", "jobs", "cronjobs",
                      "replicationcontrollers")
SHARED_RESOURCES = CORE_RESOURCES + WORKLOAD_RESOURCES
CONTROLLERS = (DeploymentController, ReplicaSetController, Scheduler, EndpointsController,
               GarbageCollector, ServiceAccountsController, ClusterRoleAggregationController,
               StatefulSetController, DaemonSetController, JobController,
               TTLAfterFinishedController, CronJobController, ReplicationControllerController)
STOP_TIMEOUT = 5.0
KUBELET_STARTERS = 8       # kubelets starting at once


class ControlPlane:
    def __init__(self, client: KubeClient, runtime: PodRuntime | None, node_names: list[str], *,
                 controllers: bool = True, python: str = sys.executable,
                 builtin_images: dict[str, list[str]] | None = None,
                 node_clients: dict[str, KubeClient] | None = None,
                 scheduler_client: KubeClient | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, time_factor: float = 1.0,
                 kubelet_dns: KubeletDns | None = None):
        """client: the controllers' (kube-controller-manager's identity in the lab);
        scheduler_client: the scheduler's writes (default: `client`);
        node_clients: per node, the client its kubelet uses (in the lab: one
        whose connections leave from the node, so a cut-off node stops
        reporting, as a real one does); default: `client`;
        controllers=False: the kubelets only (the lab runs its controllers
        beside the API server, in that server's process); runtime=None: the
        controllers only (no nodes)."""
        if runtime is None and node_names:
            raise ValueError("kubelets need a pod runtime")
        self.client = client
        self.runtime = runtime
        self.informers = ({r: Informer(client, r) for r in SHARED_RESOURCES}
                          if controllers else {})
        self.recorders: list[EventRecorder] = []
        own = {Scheduler: scheduler_client or client}
        options = {JobController: {"time_factor": time_factor}}
        self.controllers = [cls(own.get(cls, client), self._informers_for(cls),
                                self._recorder(own.get(cls, client), cls.component),
                                **options.get(cls, {}))
                            for cls in (CONTROLLERS if controllers else ())]
        node_clients = node_clients or {}
        self._kubelet_options = {"python": python, "builtin_images": builtin_images,
                                 "heartbeat": heartbeat_seconds, "time_factor": time_factor,
                                 "dns": kubelet_dns}
        self.kubelets = [self._kubelet(name, node_clients.get(name, client))
                         for name in node_names]
        self._started = False

    def _kubelet(self, name: str, client: KubeClient) -> Kubelet:
        return Kubelet(client, self.runtime, name, **self._kubelet_options,
                       recorder=self._recorder(client, "kubelet", name))

    def add_kubelet(self, name: str, client: KubeClient) -> Kubelet:
        """A node joined: its kubelet, started (the Node object is the caller's)."""
        if any(k.node_name == name for k in self.kubelets):
            raise ValueError(f"node {name} already has a kubelet")
        kubelet = self._kubelet(name, client)
        self.kubelets.append(kubelet)
        if self._started:
            kubelet.recorder.start()
            kubelet.start()
        return kubelet

    def remove_kubelet(self, name: str, timeout: float = STOP_TIMEOUT) -> None:
        """A node left: stop its kubelet (its pods are already gone) and its recorder."""
        for kubelet in [k for k in self.kubelets if k.node_name == name]:
            kubelet.stop(timeout)
            self.kubelets.remove(kubelet)
            if kubelet.recorder in self.recorders:
                kubelet.recorder.stop(timeout)
                self.recorders.remove(kubelet.recorder)

    def _informers_for(self, cls) -> dict[str, Informer]:
        reads = getattr(cls, "reads", None) or CORE_RESOURCES
        return {resource: self.informers[resource] for resource in reads}

    def _recorder(self, client: KubeClient, component: str,
                  host: str = "") -> EventRecorder | None:
        if not component:
            return None
        recorder = EventRecorder(client, component, host)
        self.recorders.append(recorder)
        return recorder

    def start(self) -> ControlPlane:
        self._started = True
        for recorder in self.recorders:
            recorder.start()
        # Each kubelet's start is a few round trips from its own node: 50 of them one
        # after the other took 4.7 s of a 50-node lab's `up`.
        with concurrent.futures.ThreadPoolExecutor(KUBELET_STARTERS) as pool:
            for started in [pool.submit(kubelet.start) for kubelet in self.kubelets]:
                started.result()
        for controller in self.controllers:
            controller.start()
        for informer in self.informers.values():
            informer.start()
        return self

    def wait_synced(self, timeout: float = 10.0) -> bool:
        return all(i.wait_synced(timeout) for i in self.informers.values()) and all(
            k.wait_synced(timeout) for k in self.kubelets)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every part; each kind shares one budget of ``timeout`` seconds,
        so a few slow parts cannot add up to a minute-long teardown."""
        for parts in (self.controllers, list(self.informers.values()), self.kubelets,
                      self.recorders):
            deadline = time.monotonic() + timeout
            for part in parts:
                part.stop(max(0.0, deadline - time.monotonic()))
        if self.runtime is not None:
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
