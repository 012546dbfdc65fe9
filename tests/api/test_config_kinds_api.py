"""ConfigMaps and Secrets served as a cluster serves them: `kubectl create configmap|secret`,
get tables, describe, apply (client and server side), edit, delete, watch; base64 data with
stringData folded in; and the official Python client's typed CRUD and watch."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time

from kubernetes import client, config, watch

from controlplane.api import certs


def get_json(kubectl, *args) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def core_api(server) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(str(server.kubeconfig_path), client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


def test_create_configmap_from_literals_and_files(kubectl, tmp_path):
    (tmp_path / "app.properties").write_text("color=blue\nsize=2\n")
    (tmp_path / "other.txt").write_text("x")
    assert kubectl("create", "configmap", "game", "--from-literal=mode=easy",
                   f"--from-file={tmp_path / 'app.properties'}",
                   f"--from-file=renamed.txt={tmp_path / 'other.txt'}") \
        == "configmap/game created\n"
    cm = get_json(kubectl, "cm", "game")
    assert cm["data"] == {"mode": "easy", "app.properties": "color=blue\nsize=2\n",
                          "renamed.txt": "x"}
    lines = kubectl("get", "configmaps").splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["game", "3"]]
    described = kubectl("describe", "cm", "game")
    assert "Data\n====\napp.properties:\n----\ncolor=blue\nsize=2\n" in described
    assert "BinaryData\n====" in described


def test_create_secret_generic_and_tls(kubectl, tmp_path):
    assert kubectl("create", "secret", "generic", "db", "--from-literal=user=admin",
                   "--from-literal=password=s3cr3t") == "secret/db created\n"
    pair = certs.make_ca("web.example")
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    kubectl("create", "secret", "tls", "web-tls", f"--cert={tmp_path / 'tls.crt'}",
            f"--key={tmp_path / 'tls.key'}")
    secret = get_json(kubectl, "secret", "db")
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": b64("admin"), "password": b64("s3cr3t")}
    tls = get_json(kubectl, "secret", "web-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]) == pair.cert_pem
    rows = [line.split() for line in kubectl("get", "secrets").splitlines()]
    assert rows[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert [r[:3] for r in rows[1:]] == [["db", "Opaque", "2"],
                                         ["web-tls", "kubernetes.io/tls", "2"]]
    assert "password:  6 bytes" in kubectl("describe", "secret", "db")


def test_string_data_is_folded_into_data_and_never_stored(kubectl, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: mixed}\n"
                    f"data: {{a: {b64('from-data')}, b: \"{b64('old')}\\n\"}}\n"
                    "stringData: {b: new, c: plain}\n")
    kubectl("apply", "-f", str(path))
    secret = get_json(kubectl, "secret", "mixed")
    assert "stringData" not in secret
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"a": b64("from-data"), "b": b64("new"), "c": b64("plain")}


def test_server_side_apply_edit_and_delete_a_configmap(kubectl, tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(path))
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '2'}\n")
    kubectl("apply", "--server-side", "-f", str(path))
    assert get_json(kubectl, "cm", "ssa")["data"] == {"a": "2"}
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[1]\ns = open(p).read()\n"
                      "open(p, 'w').write(s.replace('a: \"2\"', 'a: \"edited\"'))\n")
    proc = subprocess.run(kubectl.argv("edit", "cm", "ssa"), capture_output=True, text=True,
                          timeout=30, cwd=kubectl.cwd,
                          env={**kubectl.env(), "KUBE_EDITOR": f"{sys.executable} {editor}"})
    assert proc.returncode == 0, proc.stderr
    assert get_json(kubectl, "cm", "ssa")["data"] == {"a": "edited"}
    assert kubectl("delete", "cm", "ssa").startswith('configmap "ssa" deleted')
    assert kubectl.run("get", "cm", "ssa").returncode == 1


def test_get_watch_shows_configmap_changes(kubectl):
    proc = subprocess.Popen(kubectl.argv("get", "cm", "-w", "--output-watch-events"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=kubectl.env(), cwd=kubectl.cwd)
    try:
        time.sleep(1.0)
        kubectl("create", "configmap", "watched", "--from-literal=a=b")
        kubectl("delete", "configmap", "watched")
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("DELETED" in line for line in seen):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
        events = [line.split()[:3] for line in seen if "watched" in line]
        assert events[0] == ["ADDED", "watched", "1"]
        assert events[-1][:2] == ["DELETED", "watched"]
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_python_client_configmap_and_secret_crud_and_watch(api_server):
    v1 = core_api(api_server)
    made = v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py"), data={"k": "v"},
        binary_data={"raw": base64.b64encode(b"\x00\x01").decode()}))
    assert made.data == {"k": "v"} and made.binary_data == {"raw": "AAE="}
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    seen = []

    def consume():
        for event in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                          resource_version=rv, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name,
                         event["object"].data))
            if event["type"] == "DELETED":
                return
    consumer = threading.Thread(target=consume)
    consumer.start()
    v1.patch_namespaced_config_map("py", "default", {"data": {"k": "w"}})
    v1.delete_namespaced_config_map("py", "default")
    consumer.join(15)
    assert seen == [("MODIFIED", "py", {"k": "w"}), ("DELETED", "py", {"k": "w"})]

    secret = v1.create_namespaced_secret("default", client.V1Secret(
        metadata=client.V1ObjectMeta(name="py"), string_data={"token": "abc"}))
    assert secret.type == "Opaque" and secret.data == {"token": b64("abc")}
    replaced = v1.replace_namespaced_secret("py", "default", client.V1Secret(
        metadata=client.V1ObjectMeta(name="py"), data={"token": b64("xyz")}))
    assert replaced.data == {"token": b64("xyz")}
    assert [s.metadata.name for s in v1.list_namespaced_secret("default").items] == ["py"]
    v1.delete_namespaced_secret("py", "default")
    try:
        v1.read_namespaced_secret("py", "default")
        raise AssertionError("secret still readable after delete")
    except client.ApiException as exc:
        assert exc.status == 404
