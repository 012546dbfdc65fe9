"""A pod's service account, end to end: the kubelet mounts the pod's token at the usual
path in the pod's own /run, and a program in the pod that uses in-cluster config (the
official Python client, kubectl) gets exactly its RoleBinding: it lists the pods of its
namespace and is refused (403, Kubernetes' message) elsewhere."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from labtools import svclab, wait_for

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NS = "rbac-e2e"
REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

IN_POD = f"""
import json, os, subprocess
from kubernetes import client, config
config.load_incluster_config()
api = client.CoreV1Api()
out = {{"own": sorted(p.metadata.name for p in api.list_namespaced_pod("{NS}").items),
        "files": sorted(os.listdir("{MOUNT}"))}}
try:
    api.list_namespaced_pod("default")
    out["default"] = 200
except client.ApiException as err:
    out["default"], out["message"] = err.status, json.loads(err.body)["message"]
kubectl = [{str(KUBECTL)!r}, "get", "pods", "-o", "name"]
out["kubectl_own"] = subprocess.run(kubectl, capture_output=True, text=True).stdout.split()
refused = subprocess.run(kubectl + ["-n", "kube-system"], capture_output=True, text=True)
out["kubectl_kube_system"] = refused.stderr.strip()
print(json.dumps(out))
"""

MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
     "metadata": {"name": "pod-reader", "namespace": NS},
     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
     "metadata": {"name": "default-reads-pods", "namespace": NS},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
     "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]},
]
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": NS},
       "spec": {"restartPolicy": "Never",
                "containers": [{"name": "reader", "image": "python:3.11",
                                "command": [sys.executable, "-c", IN_POD],
                                "env": [{"name": "HOME", "value": "/tmp"}]}]}}


def kubectl(lab, *args, **kwargs):
    return svclab("kubectl", "--name", lab.name, *args, **kwargs)


def test_a_pod_uses_its_service_accounts_bindings_with_in_cluster_config(lab):
    kubectl(lab, "apply", "-f", "-", input="\n---\n".join(map(json.dumps, MANIFESTS)))
    wait_for("the default ServiceAccount of the namespace",
             lambda: kubectl(lab, "get", "sa", "default", "-n", NS, check=False).returncode == 0)
    kubectl(lab, "apply", "-f", "-", input=json.dumps(POD))
    wait_for("the reader pod to finish", lambda: kubectl(
        lab, "get", "pod", "reader", "-n", NS, "-o", "jsonpath={.status.phase}").stdout
        in ("Succeeded", "Failed"), timeout=60)
    logs = kubectl(lab, "logs", "reader", "-n", NS).stdout
    seen = json.loads(logs.strip().splitlines()[-1])
    assert seen["files"] == ["ca.crt", "namespace", "token"]
    assert seen["own"] == ["reader"]
    assert seen["default"] == 403
    assert seen["message"] == (f'pods is forbidden: User "system:serviceaccount:{NS}:default" '
                               'cannot list resource "pods" in API group "" in the namespace '
                               '"default"')
    assert seen["kubectl_own"] == ["pod/reader"]
    assert (f'User "system:serviceaccount:{NS}:default" cannot list resource "pods" in API '
            'group "" in the namespace "kube-system"') in seen["kubectl_kube_system"]
    assert not os.path.exists("/run/secrets/kubernetes.io")     # the pod's /run is its own
