"""Service spec.trafficDistribution and EndpointSlice zone/hints through the API.

With the real kubectl (apply, get -o yaml, edit) and the official Python
client; refusals carry the apiserver's field paths and texts.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from kubernetes import client, config

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {app: web}
  ports: [{port: 80}]
  trafficDistribution: %s
"""
SUPPORTED = '"PreferClose", "PreferSameZone", "PreferSameNode"'


def _get(kubectl, *what) -> dict:
    return yaml.safe_load(kubectl("get", *what, "-o", "yaml"))


def _api(server) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(str(server.kubeconfig_path), client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.mark.parametrize("value", ["PreferClose", "PreferSameZone", "PreferSameNode"])
def test_each_value_is_accepted_and_shown(kubectl, tmp_path, value):
    path = tmp_path / "svc.yaml"
    path.write_text(SERVICE % value)
    assert "service/web created" in kubectl("apply", "-f", str(path))
    assert _get(kubectl, "svc", "web")["spec"]["trafficDistribution"] == value


def test_apply_and_edit_keep_and_change_it(kubectl, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(SERVICE % "PreferSameZone")
    kubectl("apply", "-f", str(path))
    path.write_text((SERVICE % "PreferSameZone").replace("{app: web}", "{app: web2}"))
    assert "service/web configured" in kubectl("apply", "-f", str(path))
    svc = _get(kubectl, "svc", "web")
    assert svc["spec"]["selector"] == {"app": "web2"}
    assert svc["spec"]["trafficDistribution"] == "PreferSameZone"

    editor = f"{sys.executable} -c \"import sys, pathlib; p = pathlib.Path(sys.argv[1]); " \
             f"p.write_text(p.read_text().replace('app: web2', 'app: web3'))\""
    proc = subprocess.run(kubectl.argv("edit", "svc", "web"), capture_output=True, text=True,
                          timeout=30, cwd=kubectl.cwd, env={**kubectl.env(), "KUBE_EDITOR": editor})
    assert proc.returncode == 0, proc.stderr
    svc = _get(kubectl, "svc", "web")
    assert svc["spec"]["selector"] == {"app": "web3"}
    assert svc["spec"]["trafficDistribution"] == "PreferSameZone"

    path.write_text(SERVICE % "PreferSameNode")
    kubectl("apply", "-f", str(path))
    assert _get(kubectl, "svc", "web")["spec"]["trafficDistribution"] == "PreferSameNode"
    path.write_text((SERVICE % "x").replace("  trafficDistribution: x\n", ""))
    kubectl("apply", "-f", str(path))
    assert "trafficDistribution" not in _get(kubectl, "svc", "web")["spec"]


@pytest.mark.parametrize("value", ["Nearest", "preferClose", '""'])
def test_other_values_are_refused_with_the_allowed_ones(kubectl, tmp_path, value):
    path = tmp_path / "svc.yaml"
    path.write_text(SERVICE % value)
    proc = kubectl.run("apply", "-f", str(path))
    assert proc.returncode == 1
    shown = yaml.safe_load(value)
    assert (f'The Service "web" is invalid: spec.trafficDistribution: Unsupported value: '
            f'"{shown}": supported values: {SUPPORTED}') in proc.stderr
    assert "NotFound" in kubectl.run("get", "svc", "web").stderr


def test_an_update_to_a_bad_value_is_refused_and_changes_nothing(kubectl, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(SERVICE % "PreferClose")
    kubectl("apply", "-f", str(path))
    proc = kubectl.run("patch", "svc", "web", "-p", '{"spec":{"trafficDistribution":"Far"}}')
    assert proc.returncode == 1
    assert "spec.trafficDistribution: Unsupported value: \"Far\"" in proc.stderr
    assert _get(kubectl, "svc", "web")["spec"]["trafficDistribution"] == "PreferClose"


def test_python_client_reads_and_writes_it(api_server):
    v1 = client.CoreV1Api(_api(api_server))
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="py"),
        spec=client.V1ServiceSpec(selector={"app": "py"}, traffic_distribution="PreferSameNode",
                                  ports=[client.V1ServicePort(port=80)]))
    assert v1.create_namespaced_service("default", body).spec.traffic_distribution == \
        "PreferSameNode"
    assert v1.read_namespaced_service("py", "default").spec.traffic_distribution == \
        "PreferSameNode"
    with pytest.raises(client.ApiException) as refused:
        v1.patch_namespaced_service("py", "default", {"spec": {"trafficDistribution": "Near"}})
    assert refused.value.status == 422
    [cause] = yaml.safe_load(refused.value.body)["details"]["causes"]
    assert cause == {"reason": "FieldValueNotSupported", "field": "spec.trafficDistribution",
                     "message": f'Unsupported value: "Near": supported values: {SUPPORTED}'}


# --- EndpointSlice zone and hints ----------------------------------------------------------

def _slice(name: str, **endpoint) -> client.V1EndpointSlice:
    return client.V1EndpointSlice(
        metadata=client.V1ObjectMeta(name=name), address_type="IPv4",
        endpoints=[client.V1Endpoint(addresses=["192.168.1.5"], node_name="ip-172-31-0-11",
                                     **endpoint)],
        ports=[client.DiscoveryV1EndpointPort(port=80, protocol="TCP")])


def _zones(*names):
    return [client.V1ForZone(name=n) for n in names]


def _nodes(*names):
    return [client.V1ForNode(name=n) for n in names]


def test_endpoint_zone_and_hints_are_stored_and_shown(api_server, kubectl):
    discovery = client.DiscoveryV1Api(_api(api_server))
    hints = client.V1EndpointHints(for_zones=_zones("us-east-1a"),
                                   for_nodes=_nodes("ip-172-31-0-11"))
    discovery.create_namespaced_endpoint_slice("default", _slice("hinted", zone="us-east-1a",
                                                                 hints=hints))
    [got] = discovery.read_namespaced_endpoint_slice("hinted", "default").endpoints
    assert got.zone == "us-east-1a"
    assert [z.name for z in got.hints.for_zones] == ["us-east-1a"]
    assert [n.name for n in got.hints.for_nodes] == ["ip-172-31-0-11"]
    [shown] = _get(kubectl, "endpointslice", "hinted")["endpoints"]
    assert shown["zone"] == "us-east-1a"
    assert shown["hints"] == {"forZones": [{"name": "us-east-1a"}],
                              "forNodes": [{"name": "ip-172-31-0-11"}]}


ZONES9 = [f"us-east-1{c}" for c in "abcdefghi"]


@pytest.mark.parametrize("hints, causes", [
    (client.V1EndpointHints(for_zones=_zones(*ZONES9)),
     [("FieldValueTooMany", "endpoints[0].hints.forZones",
       "Too many: 9: must have at most 8 items")]),
    (client.V1EndpointHints(for_nodes=_nodes(*(f"node-{i}" for i in range(9)))),
     [("FieldValueTooMany", "endpoints[0].hints.forNodes",
       "Too many: 9: must have at most 8 items")]),
    (client.V1EndpointHints(for_zones=_zones("us-east-1a", "us-east-1a")),
     [("FieldValueDuplicate", "endpoints[0].hints.forZones[1].name",
       'Duplicate value: "us-east-1a"')]),
    (client.V1EndpointHints(for_nodes=_nodes("ip-172-31-0-11", "ip-172-31-0-11")),
     [("FieldValueDuplicate", "endpoints[0].hints.forNodes[1].name",
       'Duplicate value: "ip-172-31-0-11"')]),
    (client.V1EndpointHints(for_zones=_zones("us east")),
     [("FieldValueInvalid", "endpoints[0].hints.forZones[0].name",
       "Invalid value: \"us east\": a valid label must be an empty string or consist of "
       "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
       "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
       "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")]),
    (client.V1EndpointHints(for_nodes=_nodes("Node_1")),
     [("FieldValueInvalid", "endpoints[0].hints.forNodes[0].name",
       "Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain must consist of lower case "
       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
       "character (e.g. 'example.com', regex used for validation is "
       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")]),
    # too many zones stop the checks of the hints there
    (client.V1EndpointHints(for_zones=_zones(*ZONES9), for_nodes=_nodes("Bad", "Bad")),
     [("FieldValueTooMany", "endpoints[0].hints.forZones",
       "Too many: 9: must have at most 8 items")]),
], ids=["zones-9", "nodes-9", "zone-twice", "node-twice", "zone-not-a-label", "node-not-dns",
        "zones-first"])
def test_bad_hints_are_refused(api_server, hints, causes):
    discovery = client.DiscoveryV1Api(_api(api_server))
    with pytest.raises(client.ApiException) as refused:
        discovery.create_namespaced_endpoint_slice("default", _slice("bad", hints=hints))
    assert refused.value.status == 422
    body = yaml.safe_load(refused.value.body)
    assert [(c["reason"], c["field"], c["message"]) for c in body["details"]["causes"]] == causes
    assert body["message"].startswith('EndpointSlice.discovery.k8s.io "bad" is invalid: ')


def test_eight_of_each_are_fine(api_server):
    discovery = client.DiscoveryV1Api(_api(api_server))
    hints = client.V1EndpointHints(for_zones=_zones(*ZONES9[:8]),
                                   for_nodes=_nodes(*(f"node-{i}" for i in range(8))))
    created = discovery.create_namespaced_endpoint_slice("default", _slice("full", hints=hints))
    assert len(created.endpoints[0].hints.for_nodes) == 8
