"""The kubelet of one node: runs the pods bound to it, and says the node lives.

It watches only its own pods (fieldSelector spec.nodeName=<node>), gives
each pod a PodWorker thread (keyed by uid, so a pod recreated under the same
name is a new pod), and posts the node's Ready heartbeat every few seconds
and renews the node's Lease in kube-node-lease (nodelease.py).
Like a real kubelet it also watches every Service (its own informer, through
its node's connection), to give containers their service-link variables, and
the ConfigMaps and Secrets its pods use (controlplane/kubelet/configsource.py)
for their environment and volumes.
"""
from __future__ import annotations

import logging
import sys
import threading
import time

from base.cri import PodRuntime
from base.kube.client import ApiError, KubeClient
from base.kube.informer import Informer
from controlplane.controllers.objects import now_rfc3339
from controlplane.events import NORMAL, EventRecorder, NullRecorder, node_reference
from controlplane.kubelet.configsource import ConfigSource
from controlplane.kubelet.dns import KubeletDns
from controlplane.kubelet.env import container_env
from controlplane.kubelet.nodelease import NodeLease
from controlplane.kubelet.podworker import PodWorker
from controlplane.kubelet.sandbox import CLUSTER_DOMAIN, ContainerConfigError, service_env
from controlplane.kubelet.volumes import Sources, VolumePlan, plan_volumes

log = logging.getLogger("controlplane.kubelet")
HEARTBEAT_SECONDS = 5.0
RELIST_SECONDS = 1.0       # the PLEG's relist period: how soon an ended container is seen
SERVICES_SYNC_WAIT = 5.0   # how long a container start waits for the first list of Services


class Kubelet:
    def __init__(self, client: KubeClient, runtime: PodRuntime, node_name: str, *,
                 python: str = sys.executable, heartbeat: float = HEARTBEAT_SECONDS,
                 builtin_images: dict[str, list[str]] | None = None,
                 recorder: EventRecorder | NullRecorder | None = None,
                 cluster_domain: str = CLUSTER_DOMAIN, time_factor: float = 1.0,
                 dns: KubeletDns | None = None):
        """time_factor: scales the node Lease's duration and renewal (nodelease.py);
        dns: clusterDNS and the node's resolver (None: the runtime's default)."""
        self.client = client
        self.cluster_domain = cluster_domain
        self.dns = dns
        self.recorder = recorder or NullRecorder()     # Events: component "kubelet", host=node
        self.runtime = runtime
        self.node_name = node_name
        self.python = python
        self.builtin_images = builtin_images or {}
        self.heartbeat = heartbeat
        self.host_ip = ""
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._stopping = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self._relist_thread: threading.Thread | None = None
        self.lease = NodeLease(client, node_name, time_factor=time_factor)
        self.informer = Informer(client, "pods", self._on_pod,
                                 field_selector=f"spec.nodeName={node_name}")
        self.services = Informer(client, "services")
        self.config = ConfigSource(client, self._config_changed)
        self._allocatable: dict[str, str] | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        node = self.client.get("nodes", self.node_name)
        self.host_ip = next((a["address"] for a in (node.get("status") or {}).get("addresses")
                             or [] if a.get("type") == "InternalIP"), "")
        self.recorder.event(node_reference(self.node_name), NORMAL, "Starting", "Starting kubelet.")
        self._post_heartbeat()
        self._heartbeat_thread = threading.Thread(target=self._heartbeats, daemon=True,
                                                  name=f"kubelet-heartbeat-{self.node_name}")
        self._heartbeat_thread.start()
        self._relist_thread = threading.Thread(target=self._relists, daemon=True,
                                               name=f"kubelet-relist-{self.node_name}")
        self._relist_thread.start()
        self.lease.start(node["metadata"].get("uid", ""))
        self.services.start()
        self.informer.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.informer.stop(timeout)
        self.services.stop(timeout)
        self.config.stop(timeout)
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:          # all told first, then waited for together
            worker.request_stop()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        for thread in (self._heartbeat_thread, self._relist_thread):
            if thread is not None:
                thread.join(timeout)
        self.lease.stop(timeout)

    def wait_synced(self, timeout: float) -> bool:
        return self.informer.wait_synced(timeout)

    @property
    def workers(self) -> list[PodWorker]:
        with self._lock:
            return list(self._workers.values())

    def container_env(self, pod: dict, container: dict, pod_ip: str) -> dict[str, str]:
        """A container's environment now: its env and the Services its pod may see."""
        if not self.services.wait_synced(SERVICES_SYNC_WAIT):
            raise ContainerConfigError("services have not yet been read at least once, "
                                       "cannot construct envvars")
        links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
        services = service_env(self.services.items(), pod["metadata"]["namespace"], links)
        return container_env(pod, container, pod_ip, self.host_ip, services, self.config,
                             self.node_allocatable())

    # --- ConfigMaps, Secrets, volumes ----------------------------------------------

    def volume_plan(self, pod: dict, tokens: dict, token_errors: dict) -> VolumePlan:
        """The pod's volumes as the API holds their sources now (pure but for the reads)."""
        return plan_volumes(pod, Sources(self.config, tokens, token_errors,
                                         self.node_allocatable()))

    def node_allocatable(self) -> dict[str, str]:
        """The node's allocatable resources (what resourceFieldRef limits default to)."""
        if self._allocatable is None:
            try:
                node = self.client.get("nodes", self.node_name)
            except (ApiError, OSError) as err:          # asked again next time
                log.warning("node %s: allocatable not read: %s", self.node_name, err)
                return {}
            self._allocatable = dict((node.get("status") or {}).get("allocatable") or {})
        return self._allocatable

    def _config_changed(self) -> None:
        for worker in self.workers:
            worker.config_changed()

    # --- pods --------------------------------------------------------------------

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        uid = pod["metadata"].get("uid")
        with self._lock:
            worker = self._workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.mark_gone()
                return
            if self._stopping.is_set():
                return
            if worker is None:
                if pod["spec"].get("nodeName") != self.node_name:
                    return
                worker = self._workers[uid] = PodWorker(self, pod)
                worker.start()
        worker.update(pod)

    def worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    # --- the node ----------------------------------------------------------------

    def _heartbeats(self) -> None:
        while not self._stopping.wait(self.heartbeat):
            try:
                self._post_heartbeat()
            except (ApiError, OSError) as err:   # the next beat tries again
                log.warning("node %s heartbeat: %s", self.node_name, err)

    def _relists(self) -> None:
        """One pass over the node's pods a period, in one thread: a pod whose
        container ended is woken; the others sleep on (see PodWorker.relist)."""
        while not self._stopping.wait(RELIST_SECONDS):
            for worker in self.workers:
                try:
                    worker.relist()
                except Exception:   # one pod's runtime error must not end the relist
                    log.exception("node %s: relist of %s/%s failed", self.node_name,
                                  worker.namespace, worker.name)

    def _post_heartbeat(self) -> None:
        node = self.client.get("nodes", self.node_name)
        now = now_rfc3339()
        conditions = (node.get("status") or {}).get("conditions") or []
        for condition in conditions:
            condition["lastHeartbeatTime"] = now
            if condition.get("type") == "Ready" and condition.get("status") != "True":
                condition.update({"status": "True", "reason": "KubeletReady",
                                  "message": "kubelet is posting ready status",
                                  "lastTransitionTime": now})
                self.recorder.event(node_reference(self.node_name), NORMAL, "NodeReady",
                                    f"Node {self.node_name} status is now: NodeReady")
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                               "message": "kubelet is posting ready status",
                               "lastHeartbeatTime": now, "lastTransitionTime": now})
        node.setdefault("status", {})["conditions"] = conditions
        self.client.update("nodes", node, subresource="status")
