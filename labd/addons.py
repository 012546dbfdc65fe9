"""Cluster add-ons the lab installs, as kubeadm does: cluster DNS.

The objects are kubeadm's CoreDNS add-on (ConfigMap `coredns` holding
kubeadm's Corefile for the cluster domain, Deployment `coredns` labelled
k8s-app=kube-dns with 2 replicas mounting that ConfigMap at /etc/coredns and
started with `-conf /etc/coredns/Corefile`, Service `kube-dns` at the
service CIDR's .10 with 53/UDP, 53/TCP and 9153/TCP, ServiceAccount
`coredns`).  The lab's kubelets run svclab's own cluster DNS
(agents/dns/cluster.py) for the coredns image; like a real CoreDNS pod it
reads the Corefile from its configMap volume (and reloads it when the
ConfigMap changes: `kubectl -n kube-system edit configmap coredns`), uses
the service-account token its kubelet mounted
(system:serviceaccount:kube-system:coredns, bound to system:coredns) and
reaches the API through 10.96.0.1:443, the `kubernetes` Service.
"""
from __future__ import annotations

import sys
import time

from agents.dns.coreconfig import kubeadm_corefile
from base.errors import LabTimeout
from base.kube.client import ApiError, KubeClient
from topo.plan import CLUSTER_DOMAIN, cluster_dns_ip
from topo.spec import ClusterSpec

COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.0"
COREFILE_DIR = "/etc/coredns"
COREFILE = f"{COREFILE_DIR}/Corefile"
DNS_READY_TIMEOUT = 30.0


def coredns_service_account() -> dict:
    """kubeadm's ServiceAccount kube-system/coredns (its pods' token is for it)."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"}}


def coredns_config_map(domain: str = CLUSTER_DOMAIN) -> dict:
    """kubeadm's ConfigMap kube-system/coredns: its Corefile for the cluster domain."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": kubeadm_corefile(domain)}}


def coredns_objects(spec: ClusterSpec) -> tuple[dict, dict]:
    """kubeadm's kube-dns Service and coredns Deployment (pure data)."""
    labels = {"k8s-app": "kube-dns"}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {**labels, "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153",
                                     "prometheus.io/scrape": "true"}},
        "spec": {"clusterIP": cluster_dns_ip(spec), "selector": labels,
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP",
                            "targetPort": 9153}]}}
    container = {
        "name": "coredns", "image": COREDNS_IMAGE, "args": ["-conf", COREFILE],
        "volumeMounts": [{"name": "config-volume", "mountPath": COREFILE_DIR,
                          "readOnly": True}],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                           "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                          "initialDelaySeconds": 5, "periodSeconds": 10,
                          "failureThreshold": 5}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxUnavailable": 1}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container],
                                       "dnsPolicy": "Default",
                                       "priorityClassName": "system-cluster-critical",
                                       "serviceAccountName": "coredns",
                                       "volumes": [{"name": "config-volume", "configMap": {
                                           "name": "coredns",
                                           "items": [{"key": "Corefile",
                                                      "path": "Corefile"}]}}],
                                       "tolerations": [
                                           {"key": "CriticalAddonsOnly", "operator": "Exists"},
                                           {"key": "node-role.kubernetes.io/control-plane",
                                            "effect": "NoSchedule"}]}}}}
    return service, deployment


def coredns_stand_in(spec: ClusterSpec) -> list[str]:
    """What the kubelets run for the coredns image: svclab's cluster DNS, which (as
    CoreDNS) reads the Corefile its pod mounts, uses its pod's service-account token
    and the kubernetes Service.  `/etc/resolv.conf` in the Corefile's forward is the
    node's resolver (the VPC's), as for a dnsPolicy Default pod; reload intervals run
    on the lab's clock (timeFactor)."""
    return [sys.executable, "-m", "agents.dns.cluster", "-conf", COREFILE,
            "--upstream", f"{spec.network.vpc_resolver}:53",
            "--service-cidr", str(spec.network.service_cidr),
            "--domain", CLUSTER_DOMAIN,
            "--time-factor", f"{getattr(spec, 'time_factor', 1.0):g}"]


def install_cluster_dns(client: KubeClient, spec: ClusterSpec) -> None:
    """kubeadm's CoreDNS add-on; the ConfigMap first, so the pods find their Corefile."""
    service, deployment = coredns_objects(spec)
    for resource, obj in (("configmaps", coredns_config_map()),
                          ("serviceaccounts", coredns_service_account()),
                          ("services", service), ("deployments", deployment)):
        try:
            client.create(resource, obj, namespace="kube-system")
        except ApiError as err:
            if not err.conflict:
                raise


def wait_for_cluster_dns(client: KubeClient, timeout: float = DNS_READY_TIMEOUT) -> None:
    """Until kube-dns has a ready endpoint (DNS answers in the cluster)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            endpoints = client.get("endpoints", "kube-dns", "kube-system")
            if any(s.get("addresses") for s in endpoints.get("subsets") or []):
                return
        except ApiError as err:
            if not err.not_found:
                raise
        if time.monotonic() > deadline:
            raise LabTimeout(f"cluster DNS not ready after {timeout:.0f} s; see the lab log "
                             "and `svclab kubectl -n kube-system get po`")
        time.sleep(0.05)
