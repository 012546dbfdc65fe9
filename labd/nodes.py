"""Nodes joining and leaving a running lab: `svclab node add|remove`.

`add` is a new EC2 instance running `kubeadm join`: the instance is wired
into its subnet (topo/node_join.py), its Node is registered as a kubelet
registers it, its kubelet, kube-proxy and calico-node agents start, its
names go into the public DNS, and it returns once both agents have
programmed their first rule set (the node can serve Services).

`remove` is what cluster-autoscaler does to a node it scales down:
`kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --force`,
`kubectl delete node NODE`, the DaemonSet pods evicted, and the instance
terminated, in that order: cordoned, then every pod but DaemonSet ones
deleted with its own grace period (their controllers recreate them
elsewhere) and waited for, the Node deleted, its DaemonSet pods deleted
gracefully too (forced as the pod garbage collector would if they outlast
their grace), the node's programs stopped by their PIDs, and its host and
routes withdrawn.

Pure placement and its validation (names, zones, addresses) live in
topo/spec_nodes.py; bad input is a SpecError (the CLI's exit 2) raised
before anything changes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from base.errors import LabTimeout
from base.kube.client import ApiError, KubeClient
from base.waiting import wait_until
from controlplane.control_plane import ControlPlane
from labd.components import (
    kubelet_client,
    start_policy_agent,
    start_proxy_agent,
    wait_for_node_agents,
)
from labd.supervisor import Supervisor
from topo import node_join
from topo.apihost import node_info
from topo.network import LabNetwork
from topo.plan import outside_dns_records
from topo.spec import ClusterSpec
from topo.spec_nodes import join_node, leave_node, nodes_data

log = logging.getLogger("svclab.nodes")
DRAIN_SLACK = 30.0        # seconds past the longest grace period before a drain gives up
POD_STOP_TIMEOUT = 15.0
POLL = 0.1


@dataclass
class NodeMembership:
    """The daemon's side of nodes coming and going; one change at a time."""

    spec: ClusterSpec
    lab: LabNetwork
    api: object                       # the API server's process (labd/apiproc.py)
    admin: KubeClient
    supervisor: Supervisor
    control_plane: ControlPlane
    # The public DNS's static records (EC2 names): the cloud controller writes
    # them with the load balancers' names.
    publish_static_dns: Callable[[dict[str, list[str]]], None]

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, name: str | None = None, zone: str | None = None, role: str = "worker",
            address: str | None = None) -> dict:
        with self._lock:
            spec = join_node(self.spec, name, role=role, zone=zone, address=address)
            node = spec.nodes[-1]
            started = time.monotonic()
            record = node_join.join(self.lab, spec, node)
            self.api.register_node(node_info(spec, node))
            start_proxy_agent(spec, self.lab, self.api, self.supervisor, record)
            start_policy_agent(spec, self.lab, self.api, self.supervisor, record)
            self.control_plane.add_kubelet(node.name,
                                           kubelet_client(spec, self.lab, self.api, record))
            self._publish(spec)
            wait_for_node_agents(self.lab, node.name)
            seconds = time.monotonic() - started
            log.info("node %s ready in %.2f s", node.name, seconds)
            return {"name": node.name, "host": record.host, "zone": node.zone,
                    "address": str(node.address), "publicIP": str(node.public_ip),
                    "podBlock": str(node.pod_block), "seconds": round(seconds, 3)}

    def remove(self, name: str) -> dict:
        with self._lock:
            spec, node = leave_node(self.spec, name)
            started = time.monotonic()
            evicted = drain(self.admin, name)
            _delete_node(self.admin, name)
            removed = _remove_bound_pods(self.admin, name)
            kubelet = next(k for k in self.control_plane.kubelets if k.node_name == name)
            try:
                wait_until(f"node {name}'s kubelet stopping its pods",
                           lambda: not kubelet.workers, POD_STOP_TIMEOUT, every=POLL)
            except LabTimeout as err:      # its hosts go with the node anyway
                log.warning("%s", err)
            self.control_plane.remove_kubelet(name)
            for agent in ("proxy", "policy"):
                self.supervisor.remove(f"{agent}/{name}")
            node_join.leave(self.lab, spec, node)
            self._publish(spec)
            seconds = time.monotonic() - started
            log.info("node %s removed in %.2f s", name, seconds)
            return {"name": name, "evicted": evicted, "deleted": removed,
                    "seconds": round(seconds, 3)}

    def _publish(self, spec: ClusterSpec) -> None:
        """The lab's spec file and the public DNS follow the nodes."""
        self.spec = spec
        paths = self.lab.paths
        data = yaml.safe_load(paths.spec.read_text()) or {}
        data["nodes"] = nodes_data(spec)
        tmp = paths.spec.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(paths.spec)
        self.publish_static_dns(outside_dns_records(spec))


def drain(client: KubeClient, node: str, timeout_slack: float = DRAIN_SLACK) -> list[str]:
    """Cordon `node`, delete its pods but DaemonSet ones (each with its own
    grace period) and wait until they are gone; returns namespace/name of each."""
    client.patch("nodes", node, {"spec": {"unschedulable": True}})
    pods = [p for p in _pods_on(client, node) if not _daemonset_pod(p)]
    longest = max([(p.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                   for p in pods] or [0])
    for pod in pods:
        _delete_pod(client, pod)
    names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
    deadline = time.monotonic() + longest + timeout_slack
    while True:
        left = {(p["metadata"]["namespace"], p["metadata"]["name"])
                for p in _pods_on(client, node)} & names
        if not left:
            return sorted(f"{ns}/{n}" for ns, n in names)
        if time.monotonic() > deadline:
            raise LabTimeout(f"drain {node}: pods still terminating: "
                             + ", ".join(sorted(f"{ns}/{n}" for ns, n in left)))
        time.sleep(POLL)



def _pods_on(client: KubeClient, node: str) -> list[dict]:
    items, _ = client.list("pods", field_selector=f"spec.nodeName={node}")
    return items


def _daemonset_pod(pod: dict) -> bool:
    return any(ref.get("kind") == "DaemonSet" and ref.get("controller")
               for ref in pod["metadata"].get("ownerReferences") or [])


def _delete_node(client: KubeClient, node: str) -> None:
    try:
        client.delete("nodes", node)
    except ApiError as err:
        if not err.not_found:
            raise


def _remove_bound_pods(client: KubeClient, node: str) -> list[str]:
    """Pods still bound to the deleted node (DaemonSet ones): deleted with their
    grace period, as cluster-autoscaler evicts DaemonSet pods before it takes
    a node away, so their endpoints stop taking new connections before the
    pods stop; force-deleted (the pod garbage collector's way) if they outlast it."""
    pods = _pods_on(client, node)
    longest = max([(p.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                   for p in pods] or [0])
    for pod in pods:
        _delete_pod(client, pod)
    deadline = time.monotonic() + longest + POD_STOP_TIMEOUT
    while (left := _pods_on(client, node)) and time.monotonic() < deadline:
        time.sleep(POLL)
    for pod in left:
        _delete_pod(client, pod, grace_period=0)
    return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods)


def _delete_pod(client: KubeClient, pod: dict, grace_period: int | None = None) -> None:
    meta = pod["metadata"]
    try:
        client.delete("pods", meta["name"], meta["namespace"], grace_period=grace_period)
    except ApiError as err:
        if not err.not_found:
            raise
