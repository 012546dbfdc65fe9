"""kubectl writes: create (protobuf), apply, patch, replace, label, scale, expose, delete, watch."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hwk
  labels: {app: hwk}
spec:
  replicas: 2
  selector:
    matchLabels: {app: hwk}
  template:
    metadata:
      labels: {app: hwk}
    spec:
      containers:
      - name: web
        image: hashicorp/http-echo:1.0
        ports:
        - containerPort: 8000
---
apiVersion: v1
kind: Service
metadata:
  name: hwk
spec:
  type: NodePort
  selector: {app: hwk}
  ports:
  - port: 80
    targetPort: 8000
"""


def write(tmp_path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def get_json(kubectl, *args) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def test_create_commands_sent_as_protobuf(kubectl, api_server):
    kubectl("create", "namespace", "demo")
    kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=8000",
            "-n", "demo")
    kubectl("create", "service", "nodeport", "web", "--tcp=80:8000", "--node-port=30080",
            "-n", "demo")
    kubectl("create", "service", "clusterip", "cip", "--tcp=5678:8080", "-n", "demo")
    dep = get_json(kubectl, "deploy", "web", "-n", "demo")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert ((container["image"], container["ports"])
            == ("nginx:1.27", [{"containerPort": 8000, "protocol": "TCP"}]))
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    svc = get_json(kubectl, "svc", "web", "-n", "demo")
    assert svc["spec"]["ports"] == [{"name": "80-8000", "nodePort": 30080, "port": 80,
                                     "protocol": "TCP", "targetPort": 8000}]
    table = kubectl("get", "svc", "-n", "demo").splitlines()
    assert table[2].split()[:5] == ["web", "NodePort", svc["spec"]["clusterIP"], "<none>",
                                    "80:30080/TCP"]
    assert 30080 in api_server.registry.service_allocations.node_ports
    wide = kubectl("get", "deploy", "web", "-n", "demo", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS",
                               "IMAGES", "SELECTOR"]
    assert wide[1].split()[1] == "0/3" and wide[1].split()[5:] == ["nginx", "nginx:1.27", "app=web"]


def test_apply_twice_then_changed_client_side(kubectl, tmp_path):
    path = write(tmp_path, MANIFEST)
    assert (kubectl("apply", "-f", path).split("\n")[:2]
            == ["deployment.apps/hwk created", "service/hwk created"])
    assert "deployment.apps/hwk unchanged" in kubectl("apply", "-f", path)
    node_port = get_json(kubectl, "svc", "hwk")["spec"]["ports"][0]["nodePort"]
    changed = (MANIFEST.replace("targetPort: 8000", "targetPort: 9000")
               .replace("replicas: 2", "replicas: 4"))
    out = kubectl("apply", "-f", write(tmp_path, changed))
    assert "service/hwk configured" in out and "deployment.apps/hwk configured" in out
    svc = get_json(kubectl, "svc", "hwk")
    assert svc["spec"]["ports"] == [{"nodePort": node_port, "port": 80, "protocol": "TCP",
                                     "targetPort": 9000}]
    dep = get_json(kubectl, "deploy", "hwk")
    assert (dep["spec"]["replicas"], dep["metadata"]["generation"]) == (4, 2)


def test_apply_server_side_creates_then_updates(kubectl, tmp_path):
    path = write(tmp_path, MANIFEST)
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", path)
    changed = MANIFEST.replace("targetPort: 8000", "targetPort: 9100")
    kubectl("apply", "--server-side", "-f", write(tmp_path, changed, "m2.yaml"))
    assert get_json(kubectl, "svc", "hwk")["spec"]["ports"][0]["targetPort"] == 9100


def test_create_f_multi_document_then_already_exists(kubectl, tmp_path):
    path = write(tmp_path, MANIFEST)
    assert "service/hwk created" in kubectl("create", "-f", path)
    proc = kubectl.run("create", "-f", path)
    assert proc.returncode == 1
    assert 'services "hwk" already exists' in proc.stderr


def test_patch_strategic_merge_and_json(kubectl, tmp_path):
    kubectl("apply", "-f", write(tmp_path, MANIFEST))
    kubectl("patch", "svc", "hwk", "-p", '{"spec":{"ports":[{"port":80,"targetPort":7000}]}}')
    kubectl("patch", "svc", "hwk", "--type", "merge", "-p",
            '{"metadata":{"labels":{"tier":"front"}}}')
    kubectl("patch", "svc", "hwk", "--type", "json", "-p",
            '[{"op":"replace","path":"/spec/sessionAffinity","value":"ClientIP"}]')
    kubectl("patch", "deploy", "hwk", "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"hashicorp/http-echo:1.1"}]}}}}')
    svc = get_json(kubectl, "svc", "hwk")
    assert svc["spec"]["ports"][0]["targetPort"] == 7000
    assert svc["metadata"]["labels"] == {"tier": "front"}
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    containers = get_json(kubectl, "deploy", "hwk")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"], c["ports"][0]["containerPort"]) for c in containers] == [
        ("web", "hashicorp/http-echo:1.1", 8000)]


def test_label_replace_and_stale_update_conflict(kubectl, tmp_path):
    kubectl("apply", "-f", write(tmp_path, MANIFEST))
    kubectl("label", "svc", "hwk", "env=dev")
    assert kubectl("get", "svc", "-l", "env=dev", "-o", "name").split() == ["service/hwk"]
    current = yaml.safe_load(kubectl("get", "svc", "hwk", "-o", "yaml"))
    current["metadata"]["labels"]["env"] = "prod"
    kubectl("replace", "-f", write(tmp_path, yaml.safe_dump(current), "r.yaml"))
    assert kubectl("get", "svc", "-l", "env=prod", "-o", "name").split() == ["service/hwk"]
    # carries the old resourceVersion
    proc = kubectl.run("replace", "-f", str(tmp_path / "r.yaml"))
    assert proc.returncode == 1
    assert ("Operation cannot be fulfilled on services \"hwk\": the object has been modified"
            in proc.stderr)


def test_scale_and_expose_deployment(kubectl, tmp_path):
    kubectl("apply", "-f", write(tmp_path, MANIFEST.split("---")[0]))
    assert "deployment.apps/hwk scaled" in kubectl("scale", "deployment", "hwk", "--replicas=5")
    assert kubectl("get", "deploy", "hwk", "-o", "jsonpath={.spec.replicas}") == "5"
    kubectl("expose", "deployment", "hwk", "--port", "80", "--target-port", "8000",
            "--type", "NodePort")
    svc = get_json(kubectl, "svc", "hwk")
    assert svc["spec"]["selector"] == {"app": "hwk"}
    assert svc["spec"]["type"] == "NodePort"
    port = svc["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (80, 8000) and 30000 <= port["nodePort"] <= 32767


def test_describe_service(kubectl, tmp_path):
    kubectl("apply", "-f", write(tmp_path, MANIFEST))
    out = kubectl("describe", "svc", "hwk")
    lines = {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
             for line in out.splitlines() if ":" in line}
    assert lines["Type"] == "NodePort"
    assert lines["Selector"] == "app=hwk"
    assert lines["TargetPort"] == "8000/TCP"
    assert lines["External Traffic Policy"] == "Cluster"


def test_delete_waits_until_gone_and_releases(kubectl, api_server, tmp_path):
    kubectl("apply", "-f", write(tmp_path, MANIFEST))
    svc = get_json(kubectl, "svc", "hwk")
    out = kubectl("delete", "-f", str(tmp_path / "m.yaml"))
    assert 'service "hwk" deleted' in out
    assert kubectl.run("get", "svc", "hwk").returncode == 1
    allocations = api_server.registry.service_allocations
    assert svc["spec"]["clusterIP"] not in allocations.cluster_ips
    assert svc["spec"]["ports"][0]["nodePort"] not in allocations.node_ports


def test_namespace_delete_removes_contents_and_default_is_protected(kubectl):
    kubectl("create", "namespace", "scratch")
    kubectl("create", "service", "clusterip", "s1", "--tcp=80:80", "-n", "scratch")
    kubectl("delete", "namespace", "scratch")
    assert kubectl("get", "svc", "-A", "-o", "name").split() == ["service/kubernetes"]
    proc = kubectl.run("delete", "namespace", "default")
    assert 'namespaces "default" is forbidden: this namespace may not be deleted' in proc.stderr


def _read_until(proc: subprocess.Popen, needle: str, deadline: float) -> str:
    seen = ""
    while needle not in seen:
        assert time.monotonic() < deadline, f"timed out waiting for {needle!r}; saw:\n{seen}"
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    return seen


def test_get_watch_shows_changes_as_they_happen(kubectl):
    proc = subprocess.Popen(kubectl.argv("get", "svc", "-w", "--output-watch-events"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kubectl.env(), cwd=kubectl.cwd)
    try:
        deadline = time.monotonic() + 20
        head = _read_until(proc, "kubernetes", deadline)
        assert head.splitlines()[0].split()[:3] == ["EVENT", "NAME", "TYPE"]
        kubectl("create", "service", "nodeport", "watched", "--tcp=80:8080", "--node-port=30123")
        added = _read_until(proc, "watched", deadline).splitlines()[-1].split()
        assert added[:2] == ["ADDED", "watched"] and added[5] == "80:30123/TCP"
        kubectl("delete", "svc", "watched")
        deleted = _read_until(proc, "DELETED", deadline).splitlines()[-1].split()
        assert deleted[:2] == ["DELETED", "watched"]
    finally:
        proc.kill()
        proc.communicate(timeout=10)
