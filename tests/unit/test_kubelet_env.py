"""A container's environment from ConfigMaps, Secrets and the downward API, as the
kubelet builds it (controlplane/kubelet/env.py): pure, no API."""
from __future__ import annotations

import base64
from fractions import Fraction

import pytest

from controlplane.kubelet.env import (
    StaticObjects,
    container_env,
    expand_command,
    format_map,
    parse_quantity,
    resource_value,
)
from controlplane.kubelet.sandbox import ContainerConfigError

SERVICES = {"WEB_SERVICE_HOST": "10.96.7.7", "WEB_SERVICE_PORT": "80"}
NODE = {"cpu": "2", "memory": "3928460Ki", "ephemeral-storage": "20134592Ki"}


def pod(**spec) -> dict:
    return {"metadata": {"name": "api-0", "namespace": "shop", "uid": "u-42",
                         "labels": {"app": "api", "tier": "back"},
                         "annotations": {"note": 'say "hi"\n'}},
            "spec": {"nodeName": "ip-172-31-0-11", "serviceAccountName": "builder", **spec}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS = StaticObjects(
    configmaps=[{"metadata": {"name": "settings", "namespace": "shop"},
                 "data": {"LOG_LEVEL": "debug", "mode": "fast", "greeting": "hello"},
                 "binaryData": {"blob": b64("raw")}}],
    secrets=[{"metadata": {"name": "creds", "namespace": "shop"},
              "data": {"password": b64("s3cret"), "user": b64("admin")}}])


def env_of(container: dict, objects=OBJECTS, pod_ip="192.168.1.5") -> dict:
    return container_env(pod(), container, pod_ip, "172.31.0.11", SERVICES, objects, NODE)


def test_envfrom_gives_every_key_with_the_prefix_and_env_overrides_it():
    env = env_of({"envFrom": [{"configMapRef": {"name": "settings"}},
                              {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
                  "env": [{"name": "mode", "value": "slow"}]})
    assert env["LOG_LEVEL"] == "debug" and env["greeting"] == "hello"
    assert (env["DB_password"], env["DB_user"]) == ("s3cret", "admin")     # decoded
    assert env["mode"] == "slow"
    assert "blob" not in env                        # binaryData is not for variables
    assert list(env)[-2:] == ["WEB_SERVICE_HOST", "WEB_SERVICE_PORT"]


def test_key_refs_read_the_value_and_expansion_sees_envfrom_and_earlier_variables():
    env = env_of({"envFrom": [{"configMapRef": {"name": "settings"}}], "env": [
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                            "key": "LOG_LEVEL"}}},
        {"name": "URL", "value": "http://$(WEB_SERVICE_HOST)/$(greeting)?p=$(PASS)&x=$(LATER)"},
        {"name": "LATER", "value": "late"}]})
    assert (env["PASS"], env["LEVEL"]) == ("s3cret", "debug")
    assert env["URL"] == "http://10.96.7.7/hello?p=s3cret&x=$(LATER)"
    assert expand_command(["echo", "$(LEVEL)", "$$(LEVEL)"], env) == ["echo", "debug",
                                                                       "$(LEVEL)"]


@pytest.mark.parametrize("container, message", [
    ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
    ({"envFrom": [{"secretRef": {"name": "nope"}}]}, 'secret "nope" not found'),
    ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]},
     'configmap "nope" not found'),
    ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                              "key": "blob"}}}]},
     "couldn't find key blob in ConfigMap shop/settings"),
    ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]},
     "couldn't find key token in Secret shop/creds"),
    ({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]},
     "unsupported fieldPath: status.phase"),
])
def test_what_is_missing_fails_with_the_kubelets_message(container, message):
    with pytest.raises(ContainerConfigError) as caught:
        env_of(container)
    assert str(caught.value) == message


def test_optional_references_are_left_out_when_missing():
    env = env_of({"envFrom": [{"configMapRef": {"name": "nope", "optional": True}}], "env": [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                     "optional": True}}},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k",
                                                        "optional": True}}},
        {"name": "C", "value": "c"}]})
    assert "A" not in env and "B" not in env and env["C"] == "c"


def test_field_refs_resolve_from_the_pod_and_its_ips():
    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
             "metadata.annotations['note']", "spec.nodeName", "spec.serviceAccountName",
             "status.podIP", "status.podIPs", "status.hostIP", "metadata.labels['none']"]
    env = env_of({"env": [{"name": f"V{i}", "valueFrom": {"fieldRef": {"fieldPath": p}}}
                          for i, p in enumerate(paths)]})
    assert [env[f"V{i}"] for i in range(len(paths))] == [
        "api-0", "shop", "u-42", "api", 'say "hi"\n', "ip-172-31-0-11", "builder",
        "192.168.1.5", "192.168.1.5", "172.31.0.11", ""]


def test_labels_and_annotations_are_formatted_as_go_quoted_sorted_lines():
    assert format_map({"tier": "back", "app": "api"}) == 'app="api"\ntier="back"'
    assert format_map({"note": 'say "hi"\n\t\x01é'}) == 'note="say \\"hi\\"\\n\\t\\x01é"'
    assert format_map({}) == ""


@pytest.mark.parametrize("text, value", [
    ("2", 2), ("500m", Fraction(1, 2)), ("128Mi", 128 * 2**20), ("1k", 1000),
    ("1e3", 1000), ("1.5Gi", 3 * 2**29), ("250u", Fraction(1, 4000)), (4, 4)])
def test_quantities_parse_exactly(text, value):
    assert parse_quantity(text) == value


def test_resource_refs_divide_round_up_and_default_limits_to_the_node():
    container = {"name": "app", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                              "requests": {"memory": "64Mi"}}}
    bare = {"name": "sidecar"}
    the_pod = pod(containers=[container, bare])

    def value(resource, divisor=None, which=container):
        ref = {"resource": resource, **({"divisor": divisor} if divisor else {})}
        return resource_value(ref, the_pod, which, NODE)
    assert value("limits.cpu") == "1"                  # 0.5 rounded up
    assert value("limits.cpu", "1m") == "500"
    assert value("limits.memory", "1Mi") == "128"
    assert value("requests.memory", "1Mi") == "64"
    assert value("requests.cpu", "1m") == "500"        # requests default to the limits
    assert value("limits.cpu", which=bare) == "2"      # the node's allocatable
    assert value("limits.memory", "1Ki", which=bare) == "3928460"
    assert value("requests.cpu", which=bare) == "0"
    assert resource_value({"resource": "limits.cpu", "containerName": "app", "divisor": "1m"},
                          the_pod, None, NODE) == "500"
    with pytest.raises(ContainerConfigError, match="unsupported container resource : "
                                                   "limits.gpu"):
        value("limits.gpu")


def test_a_resource_field_ref_in_env_uses_the_containers_own_resources():
    env = env_of({"name": "app", "resources": {"limits": {"memory": "1Gi"}}, "env": [
        {"name": "MEM_MB", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                              "divisor": "1Mi"}}}]})
    assert env["MEM_MB"] == "1024"


def test_a_redeclared_variable_keeps_the_last_value_once():
    env = env_of({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)"},
                          {"name": "A", "value": "2"}]})
    assert (env["A"], env["B"]) == ("2", "1")
    assert list(env).count("A") == 1
