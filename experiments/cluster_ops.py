"""What the Service experiments do to a lab: deployments, pods, services, waits.

The distribution, traffic-policy and failover experiments all place pods
(optionally pinned to a node with spec.nodeName), expose them, wait until
the endpoints say what they should, and look up a host's process to run
things inside it.  Manifests are plain dicts built by pure functions; the
rest talks to the lab's API and state.  Every wait has a timeout and raises
ExperimentError naming what it waited for.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from base.errors import LabError
from base.waiting import wait_until
from topo.netns import run_in
from topo.plan import node_segment
from topo.spec import load_spec
from topo.state import LabPaths, read_state

T = TypeVar("T")
N10, N11, N12 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"
WORKERS = (N11, N12)
NODE_IPS = {N10: "172.31.0.10", N11: "172.31.0.11", N12: "172.31.0.12"}
PUBLIC_IPS = {N10: "198.51.100.10", N11: "198.51.100.11", N12: "198.51.100.12"}
CLIENT_IP = "203.0.113.100"
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}


class ExperimentError(LabError):
    """An experiment step that did not happen in time or gave unusable data."""


# --- manifests (pure) --------------------------------------------------------

def deployment(name: str, replicas: int, labels: dict[str, str], *, node: str | None = None,
               grace_seconds: int = 1, port: int = 80) -> dict:
    """A Deployment of the built-in workload server, optionally pinned to `node`."""
    pod_spec: dict = {"terminationGracePeriodSeconds": grace_seconds,
                      "containers": [{"name": "web", "image": "svclab/workload",
                                      "ports": [{"containerPort": port}]}]}
    if node:
        pod_spec["nodeName"] = node
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec}}}


def pod(name: str, node: str, labels: dict[str, str] | None = None) -> dict:
    """A bare pod pinned to `node` (a caller to run clients in)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"role": "caller"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "svclab/workload"}]}}


def service(name: str, selector: dict[str, str], *, type: str = "ClusterIP", port: int = 80,
            annotations: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"type": type, "selector": dict(selector),
                     "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}], **spec}}


# --- waits --------------------------------------------------------------------

def wait_for(what: str, probe: Callable[[], T], timeout: float = 30.0,
             every: float = 0.1) -> T:
    return wait_until(what, probe, timeout, every, error=ExperimentError)


def ready_endpoints(lab, service_name: str, namespace: str = "default") -> list[dict]:
    """Ready endpoints of a Service from its EndpointSlices: [{ip, node, pod}]."""
    slices, _ = lab.api.list("endpointslices", namespace,
                             label_selector=f"kubernetes.io/service-name={service_name}")
    found = []
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                found.append({"ip": endpoint["addresses"][0], "node": endpoint.get("nodeName"),
                              "pod": (endpoint.get("targetRef") or {}).get("name")})
    return sorted(found, key=lambda e: tuple(int(x) for x in e["ip"].split(".")))


def wait_endpoints(lab, service_name: str, count: int, timeout: float = 30.0,
                   where: Callable[[dict], bool] = lambda e: True) -> list[dict]:
    seen: list = []

    def probe():
        seen[:] = [e for e in ready_endpoints(lab, service_name) if where(e)]
        return list(seen) if len(seen) == count else None
    try:
        return wait_for(f"{count} ready endpoints of {service_name}", probe, timeout)
    except ExperimentError as err:
        pods = lab.kubectl("get", "pods", "-o", "wide", check=False)
        raise ExperimentError(f"{err}; ready: {seen}\n{pods}") from err


def running_pod(lab, name: str, namespace: str = "default") -> dict:
    """Wait until pod `name` runs as a lab host; returns the pod object."""
    def probe():
        obj = lab.api.find("pods", name, namespace)
        if obj is None or obj.get("status", {}).get("phase") != "Running":
            return None
        state = read_state(LabPaths(lab.name))
        hosts = [r for r in state.hosts.values()
                 if r.kind == "pod" and r.name == name and r.namespace == namespace]
        return obj if hosts and hosts[0].proc.alive() else None
    return wait_for(f"pod {name} running", probe, timeout=30)


def cluster_ip(lab, name: str) -> str:
    return lab.api.get("services", name, "default")["spec"]["clusterIP"]


def node_port(lab, name: str) -> int:
    return int(lab.api.get("services", name, "default")["spec"]["ports"][0]["nodePort"])


def host_pid(lab, host: str, namespace: str | None = None) -> int:
    return read_state(LabPaths(lab.name)).find_host(host, namespace).pid


def agent(lab, node: str) -> dict:
    """The proxy agent of a node as the lab recorded it: {pid, restarts}."""
    return read_state(LabPaths(lab.name)).agents[f"proxy/{node}"]


def switch_port_of(lab, node: str) -> tuple[int, str]:
    """(pid of the node's switch host, name of its port cabled to the node's eth0).

    The switch is the VPC's bridge (`vpc`), or in a lab with zones the bridge
    of the node's zone (az1, az2, ...).  Taking that port down cuts the node
    off the VPC the way a failed NIC or cable would, while the node keeps its
    own routes (bringing the node's own eth0 down would make the kernel flush
    its static routes)."""
    paths = LabPaths(lab.name)
    state = read_state(paths)
    record = state.find_host(node)
    spec = load_spec(paths.spec)
    switch = state.hosts[node_segment(spec, spec.node(record.name)).bridge]
    peer = json.loads(run_in(record.pid, ["ip", "-j", "link", "show", "eth0"]))[0]["link_index"]
    port = next(link["ifname"] for link in json.loads(run_in(switch.pid, ["ip", "-j", "link"]))
                if link["ifindex"] == peer)
    return switch.pid, port


def set_link(pid: int, port: str, up: bool) -> None:
    run_in(pid, ["ip", "link", "set", "dev", port, "up" if up else "down"])


def node_ready(lab, node: str) -> str:
    conditions = lab.api.get("nodes", node).get("status", {}).get("conditions") or []
    return next((c.get("status", "?") for c in conditions if c.get("type") == "Ready"), "?")
