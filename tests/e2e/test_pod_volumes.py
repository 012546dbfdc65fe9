"""Volumes and environment from ConfigMaps, Secrets and the downward API, end to end.

One lab for the module.  What a user of kubectl sees: a configMap volume's files at
their mountPath, following a `kubectl patch` of the ConfigMap within seconds; a
secret volume with decoded 0644 files; variables from a ConfigMap key and the pod's
IP in `kubectl exec -- env`; a pod whose ConfigMap is missing waits in
ContainerCreating with the kubelet's FailedMount event and starts once it exists; an
emptyDir shared by two containers; and none of it on the machine's own files.
"""
from __future__ import annotations

import json
import os

import pytest

from labtools import svclab, wait_for

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NS = "volumes-e2e"
# Paths no other test (nor the machine) uses, so their absence on the machine means something.
CONFIG_DIR = "/etc/svclab-e2e-config"
SECRET_DIR = "/etc/svclab-e2e-secret"
TOP_DIR = "/svclab-e2e-cache"


def kubectl(lab, *args, **kwargs):
    return svclab("kubectl", "--name", lab.name, "--", "-n", NS, *args, **kwargs)


def apply(lab, *objects: dict) -> None:
    kubectl(lab, "apply", "-f", "-", input="\n---\n".join(map(json.dumps, objects)))


def configmap(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def pod(name: str, containers: list, volumes: list, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": containers,
                     "volumes": volumes, **spec}}


def phase(lab, name: str) -> str:
    return kubectl(lab, "get", "pod", name, "-o", "jsonpath={.status.phase}").stdout


def running(lab, name: str, timeout: float = 30.0) -> None:
    wait_for(f"pod {name} running", lambda: phase(lab, name) == "Running", timeout=timeout)


def in_pod(lab, name: str, *argv: str, container: str | None = None) -> str:
    which = ["-c", container] if container else []
    return kubectl(lab, "exec", name, *which, "--", *argv).stdout


@pytest.fixture(scope="module")
def app(lab):
    """A namespace, a ConfigMap and a Secret, and a shell pod that uses both."""
    svclab("kubectl", "--name", lab.name, "--", "create", "namespace", NS)
    apply(lab, configmap("app-config", {"key": "value-1", "greeting": "hello"}),
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"},
           "stringData": {"password": "s3cret", "username": "admin"}},
          pod("app", [{"name": "shell", "image": "busybox",
                       "command": ["sh", "-c", f"cat {CONFIG_DIR}/key; echo; env; sleep 3600"],
                       "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {
                                   "name": "app-config", "key": "greeting"}}},
                               {"name": "MY_POD_IP", "valueFrom": {"fieldRef": {
                                   "fieldPath": "status.podIP"}}},
                               {"name": "MESSAGE", "value": "$(GREETING) from $(MY_POD_IP)"}],
                       "volumeMounts": [
                           {"name": "config", "mountPath": CONFIG_DIR},
                           {"name": "secret", "mountPath": SECRET_DIR},
                           {"name": "cache", "mountPath": TOP_DIR}]}],
              [{"name": "config", "configMap": {"name": "app-config"}},
               {"name": "secret", "secret": {"secretName": "app-secret"}},
               {"name": "cache", "emptyDir": {}}]))
    running(lab, "app")
    return lab


def test_a_configmap_volume_shows_the_keys_and_follows_an_edit(app):
    assert in_pod(app, "app", "cat", f"{CONFIG_DIR}/key") == "value-1"
    assert sorted(in_pod(app, "app", "ls", CONFIG_DIR).split()) == ["greeting", "key"]
    assert kubectl(app, "logs", "app").stdout.splitlines()[0] == "value-1"   # a real command
    kubectl(app, "patch", "configmap", "app-config", "-p", '{"data": {"key": "value-2"}}')
    wait_for("the file to follow the ConfigMap", lambda: in_pod(
        app, "app", "cat", f"{CONFIG_DIR}/key") == "value-2", timeout=10)
    written = kubectl(app, "exec", "app", "--", "touch", f"{CONFIG_DIR}/new", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr


def test_a_secret_volume_has_decoded_files_with_mode_0644(app):
    assert in_pod(app, "app", "cat", f"{SECRET_DIR}/password") == "s3cret"
    modes = in_pod(app, "app", "stat", "-L", "-c", "%a %n", f"{SECRET_DIR}/password",
                   f"{SECRET_DIR}/username").splitlines()
    assert modes == [f"644 {SECRET_DIR}/password", f"644 {SECRET_DIR}/username"]


def test_env_has_the_configmap_key_and_the_pods_ip(app):
    ip = kubectl(app, "get", "pod", "app", "-o", "jsonpath={.status.podIP}").stdout
    env = dict(line.split("=", 1) for line in in_pod(app, "app", "env").splitlines()
               if "=" in line)
    assert (env["GREETING"], env["MY_POD_IP"]) == ("hello", ip)
    assert env["MESSAGE"] == f"hello from {ip}"


def test_an_empty_dir_at_the_top_is_writable_and_nothing_reaches_the_machine(app):
    in_pod(app, "app", "sh", "-c", f"echo kept > {TOP_DIR}/file")
    assert in_pod(app, "app", "cat", f"{TOP_DIR}/file") == "kept\n"
    for path in (CONFIG_DIR, SECRET_DIR, TOP_DIR):
        assert not os.path.exists(path), f"{path} appeared on the machine"


def test_a_missing_configmap_keeps_the_pod_creating_until_it_exists(app):
    apply(app, pod("waiter", [{"name": "web", "image": "nginx",
                               "volumeMounts": [{"name": "conf", "mountPath":
                                                 "/etc/svclab-e2e-nginx/conf.d"}]}],
                   [{"name": "conf", "configMap": {"name": "late-config"}}]))
    message = ('MountVolume.SetUp failed for volume "conf" : configmap "late-config" not found')
    wait_for("the FailedMount event", lambda: message in kubectl(
        app, "get", "events", "--field-selector", "involvedObject.name=waiter",
        "-o", "jsonpath={.items[*].message}").stdout)
    listed = kubectl(app, "get", "pod", "waiter", "--no-headers").stdout.split()
    assert listed[1:3] == ["0/1", "ContainerCreating"]
    assert phase(app, "waiter") == "Pending"
    apply(app, configmap("late-config", {"default.conf": "server { listen 80; }\n"}))
    running(app, "waiter")
    assert in_pod(app, "waiter", "cat", "/etc/svclab-e2e-nginx/conf.d/default.conf") == \
        "server { listen 80; }\n"


def test_two_containers_share_an_empty_dir_at_their_own_paths(app):
    apply(app, pod("two", [
        {"name": "nginx", "image": "nginx",
         "volumeMounts": [{"name": "shared", "mountPath": "/usr/share/nginx/html"}]},
        {"name": "writer", "image": "debian",
         "command": ["/bin/sh", "-c",
                     "echo Hello from the writer container > /pod-data/index.html; "
                     "sleep 3600"],
         "volumeMounts": [{"name": "shared", "mountPath": "/pod-data"}]}],
        [{"name": "shared", "emptyDir": {}}]))
    running(app, "two")
    wait_for("the writer's page", lambda: in_pod(
        app, "two", "cat", "/usr/share/nginx/html/index.html", container="nginx")
        == "Hello from the writer container\n")
    assert not os.path.exists("/pod-data")
