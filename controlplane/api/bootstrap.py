"""Cluster bootstrap from the lab's cluster-info dict, and the node heartbeat monitor.

Creates what kubeadm leaves behind: the four system namespaces, the
``default/kubernetes`` Service with its Endpoints and EndpointSlice pointing
at the control plane, and one Node object per lab node. :class:`NodeMonitor`
plays the node-lifecycle controller: a node whose Ready heartbeat is older
than the grace period turns Unknown (NotReady) and gets the unreachable taint;
like the node lifecycle controller it records a NodeNotReady Event on the node
and on each of its pods.
"""

from __future__ import annotations

import datetime as dt
import os
import threading

from controlplane.api import events
from controlplane.api.discovery import KUBE_VERSION
from controlplane.api.registry import Registry, now_rfc3339
from controlplane.api.resources import BY_PLURAL

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNREACHABLE_TAINT = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
NODE_CONTROLLER = "node-controller"


def node_object(node: dict) -> dict:
    name = node["name"]
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
              "kubernetes.io/os": "linux"}
    spec: dict = {}
    if node.get("podCIDR"):
        spec["podCIDR"], spec["podCIDRs"] = node["podCIDR"], [node["podCIDR"]]
    for scope in ("zone", "region"):
        # As cloud-provider-aws labels them: the GA key and the deprecated beta one.
        if node.get(scope):
            labels[f"topology.kubernetes.io/{scope}"] = node[scope]
            labels[f"failure-domain.beta.kubernetes.io/{scope}"] = node[scope]
    if node.get("role") == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    addresses = [{"type": "InternalIP", "address": node["internalIP"]}]
    if node.get("externalIP"):
        addresses.append({"type": "ExternalIP", "address": node["externalIP"]})
    addresses.append({"type": "Hostname", "address": name})
    now = now_rfc3339()

    def condition(kind: str, status: str, reason: str, message: str) -> dict:
        return {"type": kind, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": now, "reason": reason, "message": message}
    resources = {"cpu": "2", "ephemeral-storage": "20134592Ki", "memory": "3928460Ki",
                 "pods": "110"}
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {
                         "node.alpha.kubernetes.io/ttl": "0",
                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "addresses": addresses, "capacity": resources, "allocatable": dict(resources),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                          "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                          "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "",
                         "containerRuntimeVersion": "containerd://2.1.4",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "",
                         "kubeletVersion": KUBE_VERSION, "machineID": "",
                         "operatingSystem": "linux", "osImage": "Ubuntu 24.04.3 LTS",
                         "systemUUID": ""},
        },
    }


def bootstrap(registry: Registry, info: dict) -> None:
    """Create the objects a fresh kubeadm cluster has. Raises StatusError if one is rejected."""
    ns_rt, svc_rt = BY_PLURAL["namespaces"], BY_PLURAL["services"]
    for name in SYSTEM_NAMESPACES:
        registry.create(ns_rt, "", {"metadata": {"name": name}})
    endpoint = info.get("controlPlaneEndpoint") or {}
    cp_ip, cp_port = endpoint.get("ip"), int(endpoint.get("port", 6443))
    registry.create(svc_rt, "default", {
        "metadata": {"name": "kubernetes",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": registry.config.service_range.address(0), "type": "ClusterIP",
                 "sessionAffinity": "None",
                 "ports": [{"name": "https", "protocol": "TCP", "port": 443,
                            "targetPort": cp_port}]}})
    if cp_ip:
        registry.create(BY_PLURAL["endpoints"], "default", {
            "metadata": {"name": "kubernetes",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": cp_ip}],
                         "ports": [{"name": "https", "port": cp_port, "protocol": "TCP"}]}]})
        registry.create(BY_PLURAL["endpointslices"], "default", {
            "metadata": {"name": "kubernetes",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [cp_ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": cp_port, "protocol": "TCP"}]})
    for node in info.get("nodes", []):
        register_node(registry, node)


def register_node(registry: Registry, node: dict) -> dict:
    """A node's Node object, as its kubelet registers it (a node that joins
    a running lab is registered the same way as the lab's first ones)."""
    return registry.create(BY_PLURAL["nodes"], "", node_object(node))


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def mark_stale_nodes(registry: Registry, grace_seconds: float, now: dt.datetime) -> list[str]:
    """One monitor pass; returns the names of nodes whose status changed."""
    changed = []
    rt = BY_PLURAL["nodes"]
    with registry.store.lock:
        nodes, _ = registry.store.list("nodes")
        for node in nodes:
            conditions = (node.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), None)
            if ready is None:
                continue
            stale = (now - _parse_time(ready["lastHeartbeatTime"])).total_seconds() > grace_seconds
            taints = (node.get("spec") or {}).get("taints") or []
            tainted = any(t.get("key") == UNREACHABLE_TAINT["key"] for t in taints)
            if stale and ready.get("status") != "Unknown":
                stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
                for cond in conditions:
                    cond.update({"status": "Unknown", "reason": "NodeStatusUnknown",
                                 "message": "Kubelet stopped posting node status.",
                                 "lastTransitionTime": stamp})
                node["status"]["conditions"] = conditions
                registry.update(rt, "", node["metadata"]["name"], {**node, "metadata": {
                    **node["metadata"], "resourceVersion": ""}}, "status")
                node = registry.get(rt, "", node["metadata"]["name"])
                changed.append(node["metadata"]["name"])
                name = node["metadata"]["name"]
                _record(registry, node, "Normal", "NodeNotReady",
                        f"Node {name} status is now: NodeNotReady", now)
                _mark_pods_not_ready(registry, name, now)
            if (stale or ready.get("status") == "Unknown") and not tainted:
                node["spec"]["taints"] = taints + [dict(UNREACHABLE_TAINT, timeAdded=now_rfc3339())]
                registry.update(rt, "", node["metadata"]["name"], {**node, "metadata": {
                    **node["metadata"], "resourceVersion": ""}})
            elif not stale and ready.get("status") == "True" and tainted:
                node["spec"]["taints"] = [t for t in taints
                                          if t.get("key") != UNREACHABLE_TAINT["key"]]
                registry.update(rt, "", node["metadata"]["name"], {**node, "metadata": {
                    **node["metadata"], "resourceVersion": ""}})
    return changed


def _record(registry: Registry, obj: dict, event_type: str, reason: str, message: str,
            now: dt.datetime) -> None:
    """An Event from the node lifecycle controller (written straight to the store: it runs
    inside the API server here)."""
    meta = obj["metadata"]
    ref = {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"],
           "uid": meta["uid"], **({"namespace": meta["namespace"]} if meta.get("namespace")
                                  else {})}
    event = events.new_event(ref, event_type, reason, message, NODE_CONTROLLER, "", now)
    registry.create(BY_PLURAL["events"], event["metadata"]["namespace"], event)


def _mark_pods_not_ready(registry: Registry, node_name: str, now: dt.datetime) -> None:
    """The node lifecycle controller's MarkPodsNotReady: pods of a node that
    stopped reporting are not ready (so endpoints drop them) until its kubelet
    reports again."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    pods_rt = BY_PLURAL["pods"]
    pods, _ = registry.store.list("pods")
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") != node_name:
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        was_ready = False
        for cond in conditions:
            if cond.get("type") == "Ready" and cond.get("status") != "False":
                was_ready = True
                cond.update({"status": "False", "reason": "NodeNotReady",
                             "lastTransitionTime": stamp})
        pod.setdefault("status", {})["conditions"] = conditions
        registry.update(pods_rt, pod["metadata"]["namespace"], pod["metadata"]["name"],
                        {**pod, "metadata": {**pod["metadata"], "resourceVersion": ""}},
                        "status")
        if was_ready:
            _record(registry, pod, "Warning", "NodeNotReady", "Node is not ready", now)


def post_heartbeat(registry: Registry, node_name: str) -> dict:
    """What a kubelet's status update does: Ready=True with a fresh lastHeartbeatTime."""
    rt = BY_PLURAL["nodes"]
    with registry.store.lock:
        node = registry.get(rt, "", node_name)
        now = now_rfc3339()
        for cond in node["status"].get("conditions") or []:
            if cond.get("type") == "Ready":
                if cond.get("status") != "True":
                    cond.update({"status": "True", "reason": "KubeletReady",
                                 "message": "kubelet is posting ready status",
                                 "lastTransitionTime": now})
                cond["lastHeartbeatTime"] = now
        node["metadata"]["resourceVersion"] = ""
        return registry.update(rt, "", node_name, node, "status")


class NodeMonitor:
    """Background thread running :func:`mark_stale_nodes`; owned and stopped by the ApiServer."""

    def __init__(self, registry: Registry, grace_seconds: float) -> None:
        self.registry = registry
        self.grace_seconds = grace_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="svclab-api-node-monitor",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        interval = max(0.2, min(5.0, self.grace_seconds / 4))
        while not self._stop.wait(interval):
            # A rejected node update is a bug: let it end the thread loudly (threading.excepthook).
            mark_stale_nodes(self.registry, self.grace_seconds, dt.datetime.now(dt.timezone.utc))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
