"""Builders of API-shaped Service and EndpointSlice JSON.

Tests, the sync benchmark and experiments need many realistic objects; these
helpers produce dicts shaped exactly like the API server's answers (the same
input service_from_k8s / endpoint_slice_from_k8s get in the agent), so the
parsing path is exercised too.  No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def service_dict(name: str, namespace: str = "default", *,
                 cluster_ip: str | None = "10.96.0.10",
                 type: str = "ClusterIP",
                 ports: Iterable[dict[str, Any]] = (
                     {"name": "http", "port": 80, "targetPort": 8080},),
                 external_ips: Iterable[str] = (),
                 etp: str | None = None, itp: str | None = None,
                 health_check_node_port: int | None = None,
                 affinity_timeout: int | None = None,
                 source_ranges: Iterable[str] = (),
                 ingress: Iterable[dict[str, str]] = (),
                 labels: dict[str, str] | None = None,
                 external_name: str | None = None) -> dict[str, Any]:
    """A v1 Service as returned by GET /api/v1/namespaces/NS/services/NAME."""
    spec: dict[str, Any] = {
        "type": type,
        "ports": [{"protocol": "TCP", **p} for p in ports],
        "sessionAffinity": "None",
        "internalTrafficPolicy": itp or "Cluster",
    }
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    if type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = etp or "Cluster"
    elif etp:
        spec["externalTrafficPolicy"] = etp
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if health_check_node_port:
        spec["healthCheckNodePort"] = health_check_node_port
    if affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {
            "clientIP": {"timeoutSeconds": affinity_timeout}}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    if external_name:
        spec["externalName"] = external_name
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "uid": f"uid-{namespace}-{name}",
                            "resourceVersion": "1"}
    if labels:
        meta["labels"] = dict(labels)
    status: dict[str, Any] = {"loadBalancer": {}}
    if ingress:
        status["loadBalancer"]["ingress"] = [dict(i) for i in ingress]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": spec, "status": status}


def endpoint(ip: str, node: str | None, *, ready: bool = True,
             serving: bool | None = None, terminating: bool = False,
             zone: str | None = None, for_zones: Iterable[str] = (),
             for_nodes: Iterable[str] = ()) -> dict[str, Any]:
    """One EndpointSlice endpoint entry; zone is the endpoint's own zone,
    for_zones / for_nodes its hints (hints.forZones / hints.forNodes)."""
    entry: dict[str, Any] = {
        "addresses": [ip],
        "conditions": {"ready": ready,
                       "serving": ready if serving is None else serving,
                       "terminating": terminating},
    }
    if node is not None:
        entry["nodeName"] = node
    if zone is not None:
        entry["zone"] = zone
    hints: dict[str, Any] = {}
    if for_zones:
        hints["forZones"] = [{"name": z} for z in for_zones]
    if for_nodes:
        hints["forNodes"] = [{"name": n} for n in for_nodes]
    if hints:
        entry["hints"] = hints
    return entry


def slice_dict(service: str, namespace: str = "default", *,
               name: str | None = None,
               ports: Iterable[dict[str, Any]] = ({"name": "http",
                                                   "port": 8080},),
               endpoints: Iterable[dict[str, Any]] = (),
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A discovery.k8s.io/v1 EndpointSlice for service."""
    all_labels = {"kubernetes.io/service-name": service,
                  "endpointslice.kubernetes.io/managed-by":
                      "endpointslice-controller.k8s.io"}
    all_labels.update(labels or {})
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service}-abcde",
                     "namespace": namespace, "labels": all_labels,
                     "resourceVersion": "1"},
        "addressType": "IPv4",
        "ports": [{"protocol": "TCP", **p} for p in ports],
        "endpoints": list(endpoints),
    }
