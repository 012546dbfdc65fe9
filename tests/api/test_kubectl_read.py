"""What `kubectl get` shows on a fresh cluster: the kubeadm-like bootstrap objects."""

from __future__ import annotations

import json

import yaml


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_get_svc_shows_the_kubernetes_service(kubectl):
    out = rows(kubectl("get", "svc"))
    assert out[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert out[1][:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]


def test_get_ep_shows_the_control_plane_endpoint(kubectl):
    out = rows(kubectl("get", "ep"))
    assert out[0] == ["NAME", "ENDPOINTS", "AGE"]
    assert out[1][:2] == ["kubernetes", "172.31.0.10:6443"]


def test_get_nodes_wide_reads_like_kubeadm_on_ec2(kubectl):
    out = rows(kubectl("get", "nodes", "-o", "wide"))
    assert out[0][:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]
    by_name = {r[0]: r for r in out[1:]}
    assert set(by_name) == {"ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"}
    assert by_name["ip-172-31-0-10"][1:3] == ["Ready", "control-plane"]
    assert by_name["ip-172-31-0-11"][2] == "<none>"
    assert by_name["ip-172-31-0-12"][4:7] == ["v1.37.1", "172.31.0.12", "198.51.100.12"]


def test_node_object_has_kubeadm_labels_taint_and_addresses(kubectl):
    node = json.loads(kubectl("get", "node", "ip-172-31-0-10", "-o", "json"))
    assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "ip-172-31-0-10"
    assert ({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
            in node["spec"]["taints"])
    assert node["spec"]["podCIDR"] == "192.168.0.0/24"
    types = [a["type"] for a in node["status"]["addresses"]]
    assert types == ["InternalIP", "ExternalIP", "Hostname"]


def test_system_namespaces_exist(kubectl):
    names = kubectl("get", "ns", "-o", "name").split()
    assert names == ["namespace/default", "namespace/kube-node-lease", "namespace/kube-public",
                     "namespace/kube-system"]


def test_output_formats_yaml_json_jsonpath(kubectl):
    svc = yaml.safe_load(kubectl("get", "svc", "kubernetes", "-o", "yaml"))
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                     "targetPort": 6443}]
    as_json = json.loads(kubectl("get", "svc", "kubernetes", "-o", "json"))
    assert as_json["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert kubectl("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}") == "10.96.0.1"


def test_all_namespaces_and_label_selector(kubectl):
    out = rows(kubectl("get", "svc", "-A"))
    assert out[0][0] == "NAMESPACE"
    assert out[1][:2] == ["default", "kubernetes"]
    assert (kubectl("get", "svc", "-l", "component=apiserver", "-o", "name").split()
            == ["service/kubernetes"])
    assert kubectl("get", "svc", "-l", "component!=apiserver", "-o", "name") == ""


def test_endpointslice_and_empty_lists(kubectl):
    out = rows(kubectl("get", "endpointslices"))
    assert out[1][:4] == ["kubernetes", "IPv4", "6443", "172.31.0.10"]
    assert "No resources found" in kubectl.run("get", "pods").stderr
    assert "No resources found" in kubectl.run("get", "events").stderr


def test_missing_object_is_not_found(kubectl):
    proc = kubectl.run("get", "svc", "nope")
    assert proc.returncode == 1
    assert 'Error from server (NotFound): services "nope" not found' in proc.stderr


def test_pods_table_wide_columns(kubectl):
    kubectl("run", "p1", "--image=nginx", "--port=80")
    out = rows(kubectl("get", "pods", "-o", "wide"))
    assert out[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED",
                      "NODE", "READINESS", "GATES"]
    assert out[1][:4] == ["p1", "0/1", "Pending", "0"]
    assert out[1][5:] == ["<none>", "<none>", "<none>", "<none>"]
