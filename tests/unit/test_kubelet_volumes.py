"""A pod's volumes: what the kubelet's plugins put in them (controlplane/kubelet/volumes.py),
how they are written (topo/pod_volumes.py's atomic writer, no root), and the kubelet
keeping a pod in ContainerCreating until its objects exist and its volumes in step after."""
from __future__ import annotations

import base64
import os
import stat

import pytest

from base.cri import PodRuntimeError, VolumeFile, VolumeMount
from base.waiting import wait_until
from controlplane.kubelet.env import StaticObjects
from controlplane.kubelet.volumes import Sources, plan_volumes, token_requests
from support.controller_harness import NODES, InProcessCluster
from support.fake_runtime import FakePodRuntime
from topo.pod_volumes import VolumeError, write_payload


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS = StaticObjects(
    configmaps=[{"metadata": {"name": "game", "namespace": "default"},
                 "data": {"game.properties": "lives=3\n", "ui.properties": "color=blue\n"},
                 "binaryData": {"logo.png": base64.b64encode(b"\x89PNG").decode()}}],
    secrets=[{"metadata": {"name": "creds", "namespace": "default"},
              "data": {"username": b64("admin"), "password": b64("s3cret")}}])


def pod(volumes: list, mounts: list | None = None, **meta) -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                         "labels": {"app": "web", "zone": "a"}, "annotations": {"build": "7"},
                         **meta},
            "spec": {"nodeName": "ip-172-31-0-11", "volumes": volumes, "containers": [
                {"name": "c", "image": "nginx", "volumeMounts": mounts or [],
                 "resources": {"limits": {"memory": "64Mi"}}}]}}


def plan(volumes, mounts=None, objects=OBJECTS, **sources):
    return plan_volumes(pod(volumes, mounts), Sources(objects, **sources))


def files(volume) -> dict[str, tuple[bytes, int]]:
    return {f.path: (f.data, f.mode) for f in volume.files}


# --- the plugins -----------------------------------------------------------------------

def test_a_configmap_volume_holds_every_key_with_mode_0644():
    [volume] = plan([{"name": "config", "configMap": {"name": "game"}}]).volumes
    assert (volume.kind, volume.folder) == ("files", "kubernetes.io~configmap/config")
    assert files(volume) == {"game.properties": (b"lives=3\n", 0o644),
                             "ui.properties": (b"color=blue\n", 0o644),
                             "logo.png": (b"\x89PNG", 0o644)}


def test_items_choose_keys_paths_and_modes():
    [volume] = plan([{"name": "config", "configMap": {"name": "game", "defaultMode": 0o400,
                                                      "items": [
        {"key": "game.properties", "path": "conf/game"},
        {"key": "ui.properties", "path": "ui", "mode": 0o600}]}}]).volumes
    assert files(volume) == {"conf/game": (b"lives=3\n", 0o400), "ui": (b"color=blue\n", 0o600)}


def test_a_secret_volume_holds_the_decoded_data():
    [volume] = plan([{"name": "secret-volume", "secret": {"secretName": "creds"}}]).volumes
    assert volume.folder == "kubernetes.io~secret/secret-volume"
    assert files(volume) == {"username": (b"admin", 0o644), "password": (b"s3cret", 0o644)}


@pytest.mark.parametrize("volume, message", [
    ({"name": "config", "configMap": {"name": "nope"}},
     'MountVolume.SetUp failed for volume "config" : configmap "nope" not found'),
    ({"name": "creds", "secret": {"secretName": "nope"}},
     'MountVolume.SetUp failed for volume "creds" : secret "nope" not found'),
    ({"name": "config", "configMap": {"name": "game", "items": [{"key": "x", "path": "x"}]}},
     'MountVolume.SetUp failed for volume "config" : configmap references non-existent '
     "config key: x"),
    ({"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "x", "path": "x"}]}},
     'MountVolume.SetUp failed for volume "creds" : references non-existent secret key: x'),
    ({"name": "all", "projected": {"sources": [{"configMap": {"name": "a"}},
                                               {"secret": {"name": "b"}}]}},
     'MountVolume.SetUp failed for volume "all" : [configmap "a" not found, secret "b" not '
     "found]"),
])
def test_what_cannot_be_found_fails_the_mount_with_the_kubelets_message(volume, message):
    result = plan([volume, {"name": "scratch", "emptyDir": {}}])
    assert result.failures == (message,)
    assert [v.name for v in result.volumes] == ["scratch"]


def test_optional_sources_give_an_empty_volume_or_leave_the_item_out():
    result = plan([{"name": "a", "configMap": {"name": "nope", "optional": True}},
                   {"name": "b", "secret": {"secretName": "creds", "optional": True,
                                            "items": [{"key": "x", "path": "x"},
                                                      {"key": "username", "path": "u"}]}}])
    assert not result.failures
    assert [files(v) for v in result.volumes] == [{}, {"u": (b"admin", 0o644)}]


def test_a_downward_api_volume_writes_metadata_and_resources():
    [volume] = plan([{"name": "podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "mem_limit", "resourceFieldRef": {"containerName": "c",
                                                   "resource": "limits.memory",
                                                   "divisor": "1Mi"}}]}}]).volumes
    assert files(volume) == {"labels": (b'app="web"\nzone="a"', 0o644),
                             "annotations": (b'build="7"', 0o644), "name": (b"web", 0o600),
                             "app": (b"web", 0o644), "mem_limit": (b"64", 0o644)}


def test_a_projected_volume_joins_its_sources_and_the_pods_token():
    spec = [{"name": "all-in-one", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "game", "items": [{"key": "game.properties", "path": "game"}]}},
        {"secret": {"name": "creds", "items": [{"key": "username", "path": "my/user"}]}},
        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath":
                                                                "metadata.namespace"}}]}},
        {"serviceAccountToken": {"path": "token", "audience": "vault",
                                 "expirationSeconds": 7200}}]}}]
    assert token_requests(pod(spec)) == (("vault", 7200),)
    [volume] = plan(spec, tokens={("vault", 7200): "eyJ.tok"}).volumes
    assert files(volume) == {"game": (b"lives=3\n", 0o440), "my/user": (b"admin", 0o440),
                             "ns": (b"default", 0o440), "token": (b"eyJ.tok", 0o440)}
    failed = plan(spec, token_errors={("vault", 7200): "serviceaccounts \"default\" not found"})
    assert failed.failures == ('MountVolume.SetUp failed for volume "all-in-one" : failed to '
                               'fetch token: serviceaccounts "default" not found',)


def test_empty_dirs_and_unemulated_types_are_empty_folders():
    result = plan([{"name": "cache", "emptyDir": {"sizeLimit": "10Mi"}},
                   {"name": "logs", "hostPath": {"path": "/var/log"}}])
    assert [(v.kind, v.size_limit) for v in result.volumes] == [("emptyDir", 10 * 2**20),
                                                                ("emptyDir", None)]
    assert result.notes == ('volume "logs": svclab does not emulate hostPath volumes; an empty '
                            "directory stands in",)


def test_mounts_are_the_containers_union_read_only_for_api_data():
    the_pod = pod([{"name": "config", "configMap": {"name": "game"}},
                   {"name": "html", "emptyDir": {}}],
                  [{"name": "config", "mountPath": "/etc/nginx/conf.d/"},
                   {"name": "config", "mountPath": "/etc/app.properties",
                    "subPath": "game.properties"},
                   {"name": "html", "mountPath": "/usr/share/nginx/html", "readOnly": True}])
    the_pod["spec"]["containers"].append({"name": "writer", "image": "debian", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "html", "mountPath": "/pod-data", "subPathExpr": "$(POD)"},
                         {"name": "config", "mountPath": "/usr/share/nginx/html"}]})
    result = plan_volumes(the_pod, Sources(OBJECTS))
    assert result.mounts == (
        VolumeMount("config", "/etc/nginx/conf.d", "", True),
        VolumeMount("config", "/etc/app.properties", "game.properties", True),
        VolumeMount("html", "/usr/share/nginx/html", "", True),
        VolumeMount("html", "/pod-data", "web", False))
    assert result.notes == ("/usr/share/nginx/html: the pod's containers share one mount "
                            "namespace in svclab; volume 'html' is mounted there, not 'config'",)


# --- the atomic writer (no root) ----------------------------------------------------------

def layout(folder) -> dict[str, str]:
    return {name: (os.readlink(folder / name) if os.path.islink(folder / name) else "dir")
            for name in sorted(os.listdir(folder))}


def test_the_writer_links_every_name_through_data_to_a_timestamped_folder(tmp_path):
    target = tmp_path / "config"
    assert write_payload(str(target), [("game.properties", b"lives=3\n", 0o644),
                                       ("conf/ui", b"blue", 0o600)])
    seen = layout(target)
    stamp = seen["..data"]
    assert stamp.startswith("..") and seen[stamp] == "dir"
    assert seen["game.properties"] == "..data/game.properties" and seen["conf"] == "..data/conf"
    assert (target / "conf" / "ui").read_bytes() == b"blue"
    assert stat.S_IMODE(os.stat(target / "conf" / "ui").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target / "game.properties").st_mode) == 0o644


def test_an_update_swaps_the_data_link_and_drops_what_went(tmp_path):
    target = tmp_path / "config"
    write_payload(str(target), [("a", b"1", 0o644), ("b", b"2", 0o644)])
    first = os.readlink(target / "..data")
    with open(target / "a", "rb") as held:       # an open file keeps its content
        assert write_payload(str(target), [("a", b"one", 0o644), ("c", b"3", 0o644)])
        assert held.read() == b"1"
    seen = layout(target)
    assert seen["..data"] != first and first not in seen
    assert set(seen) == {"..data", seen["..data"], "a", "c"}
    assert (target / "a").read_bytes() == b"one"
    assert not write_payload(str(target), [("a", b"one", 0o644), ("c", b"3", 0o644)])
    assert os.readlink(target / "..data") == seen["..data"]
    assert write_payload(str(target), [("a", b"one", 0o600), ("c", b"3", 0o644)])  # a mode


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "..data", ""])
def test_the_writer_refuses_paths_that_leave_or_hide_in_the_volume(tmp_path, path):
    with pytest.raises(VolumeError, match="invalid path"):
        write_payload(str(tmp_path / "v"), [(path, b"x", 0o644)])


# --- the kubelet ---------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def create_pod(cluster, name: str, volumes: list, mounts: list, **container) -> None:
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "default"}, "spec": {
            "terminationGracePeriodSeconds": 1, "volumes": volumes, "containers": [
                {"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                 "volumeMounts": mounts, **container}]}})


def events(cluster, name: str, reason: str) -> list[str]:
    return [e["message"] for e in cluster.client.list("events", "default")[0]
            if e["involvedObject"]["name"] == name and e["reason"] == reason]


def waiting_reason(cluster, name: str) -> str:
    statuses = ((cluster.get("pods", name) or {}).get("status") or {}).get(
        "containerStatuses") or [{}]
    return (statuses[0].get("state") or {}).get("waiting", {}).get("reason", "")


def test_a_pod_waits_for_its_configmap_then_starts_and_follows_its_edits(cluster):
    create_pod(cluster, "web", [{"name": "config", "configMap": {"name": "site"}}],
               [{"name": "config", "mountPath": "/etc/config"}])
    message = wait_until("a FailedMount event", lambda: events(cluster, "web", "FailedMount"))
    assert message[0] == 'MountVolume.SetUp failed for volume "config" : configmap "site" ' \
                         "not found"
    status = cluster.get("pods", "web")["status"]
    assert status["phase"] == "Pending" and waiting_reason(cluster, "web") == "ContainerCreating"
    assert ("default", "web") not in cluster.runtime.pods          # no sandbox, no IP
    cluster.client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "site", "namespace": "default"}, "data": {"index.html": "v1"}})
    wait_until("web running", lambda: cluster.runtime.running("default", "web"))
    sandbox = cluster.runtime.pods[("default", "web")]["sandbox"]
    assert sandbox.mounts == (VolumeMount("config", "/etc/config", "", True),)
    assert cluster.runtime.volume("default", "web", "config").files == (
        VolumeFile("index.html", b"v1", 0o644),)
    cluster.client.patch("configmaps", "site", {"data": {"index.html": "v2"}}, "default")
    wait_until("the volume follows the edit", lambda: cluster.runtime.volume(
        "default", "web", "config").files == (VolumeFile("index.html", b"v2", 0o644),),
        timeout=5)


def test_a_container_waits_for_its_secret_key_then_starts_with_it(cluster):
    create_pod(cluster, "api", [], [], env=[
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}])
    wait_until("CreateContainerConfigError",
               lambda: waiting_reason(cluster, "api") == "CreateContainerConfigError")
    # The kubelet's Events are written by its recorder's thread, after or
    # before the status that shows the reason (as upstream's broadcaster).
    failed = wait_until("a Failed event", lambda: events(cluster, "api", "Failed"))
    assert 'Error: secret "db" not found' in failed
    cluster.client.create("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "db", "namespace": "default"}, "stringData": {"password": "s3cret"}})
    info = wait_until("api started", lambda: next(
        (i for h, i in cluster.runtime.containers.items() if h.pod == "api"), None))
    assert info["env"]["PASSWORD"] == "s3cret"


class FlakyRuntime(FakePodRuntime):
    """A runtime that cannot make the first sandboxes (a volume that will not mount)."""

    def __init__(self, failures: int):
        super().__init__({n["name"]: n["podCIDR"] for n in NODES})
        self.failures = failures

    def create_pod(self, namespace, name, node, sandbox=None):
        if self.failures > 0:
            self.failures -= 1
            raise PodRuntimeError("cannot mount on /etc/hosts: it exists as something else")
        return super().create_pod(namespace, name, node, sandbox)


def test_a_sandbox_the_runtime_cannot_make_is_an_event_and_is_tried_again(tmp_path):
    with InProcessCluster(tmp_path / "api", runtime=FlakyRuntime(2)) as flaky:
        create_pod(flaky, "web", [{"name": "cache", "emptyDir": {}}],
                   [{"name": "cache", "mountPath": "/etc/hosts"}])
        wait_until("web running", lambda: flaky.runtime.running("default", "web"))
        assert events(flaky, "web", "FailedCreatePodSandBox") == [
            "Failed to create pod sandbox: cannot mount on /etc/hosts: it exists as something "
            "else"]
