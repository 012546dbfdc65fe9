"""`kubectl explain` and kubectl's apply against the served OpenAPI v3 documents.

The documents come from controlplane/api/openapi_schemas.json.gz (generated from the
kubernetes client's models by scripts/gen_openapi.py); these tests run the bundled
kubectl against the in-process API server and check what a user sees: real
descriptions, enums, every field reachable, misspelled fields refused with their path,
and client-side apply merging lists by key as on a real cluster.
"""

from __future__ import annotations

import pytest
import yaml

from controlplane.api import openapi_schemas, strict
from controlplane.api.errors import StatusError
from controlplane.api.resources import RESOURCES, lookup

# The kinds issue 16 adds (another part of the work registers them in resources.py).
ANNOUNCED = ("configmaps", "secrets", "statefulsets", "daemonsets", "controllerrevisions",
             "jobs", "cronjobs", "replicationcontrollers", "leases")
SERVED = {(rt.plural, rt.group): rt for rt in RESOURCES}
CASES = [(rt.plural, rt.group) for rt in RESOURCES] + [
    (plural, "") for plural in ANNOUNCED if plural not in {p for p, _ in SERVED}]


def _resource(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def _fields_of(name: str) -> set[str]:
    """The property names of a definition and of every definition it reaches."""
    return {field for schema in openapi_schemas.closure([name]).values()
            for field in schema.get("properties", {})}


def _deepest_path(name: str) -> list[str]:
    """A longest chain of fields from a kind's schema down to a leaf (no cycles)."""
    best: list[str] = []

    def walk(schema: dict, path: list[str], seen: frozenset) -> None:
        nonlocal best
        for _ in range(3):      # through a property's array items / map values
            schema = openapi_schemas.resolve(schema)
            schema = schema.get("items") or (schema.get("additionalProperties")
                                             if isinstance(schema.get("additionalProperties"),
                                                           dict) else schema)
        schema = openapi_schemas.resolve(schema)
        properties = schema.get("properties", {})
        if not properties:
            if len(path) > len(best):
                best = path
            return
        for field in sorted(properties):
            refs = openapi_schemas.references(properties[field])
            if refs & seen:
                continue
            walk(properties[field], [*path, field], seen | refs)

    walk(openapi_schemas.definitions()[name], [], frozenset({name}))
    return best


def test_service_type_is_explained_with_the_real_description_and_enum(shared_kubectl):
    out = shared_kubectl("explain", "service.spec.type")
    assert "FIELD: type <string>" in out
    for value in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        assert f"    {value}\n" in out.split("DESCRIPTION:")[0]     # the ENUM block
        assert f'"{value}"' in out                                  # the description
    assert "type determines how the Service is exposed" in out


def test_container_ports_and_max_surge_are_explained(shared_kubectl):
    ports = shared_kubectl("explain", "pods.spec.containers.ports")
    assert "FIELD: ports <[]ContainerPort>" in ports
    assert "containerPort\t<integer> -required-" in ports
    assert "protocol\t<string>\n  enum: SCTP, TCP, UDP" in ports
    surge = shared_kubectl("explain", "deployment.spec.strategy.rollingUpdate.maxSurge")
    assert "GROUP:      apps" in surge and "FIELD: maxSurge <IntOrString>" in surge
    assert "The maximum number of pods that can be scheduled above the desired" in surge


def test_explain_recursive_service_lists_nested_fields(shared_kubectl):
    out = shared_kubectl("explain", "--recursive", "svc")
    assert "  spec\t<ServiceSpec>" in out
    assert "    sessionAffinityConfig\t<SessionAffinityConfig>" in out
    assert "      clientIP\t<ClientIPConfig>" in out
    assert "        timeoutSeconds\t<integer>" in out
    assert "    trafficDistribution\t<string>" in out


@pytest.mark.parametrize("plural, group", CASES, ids=[_resource(*c) for c in CASES])
def test_every_served_kind_is_explained_down_to_its_leaves(shared_kubectl, plural, group):
    rt = SERVED.get((plural, group))
    if rt is None:
        pytest.skip(f"{plural} is not registered in controlplane/api/resources.py yet")
    name = openapi_schemas.schema_name(rt.group, rt.version, rt.kind)
    assert name, f"no generated schema for {rt.kind}: run scripts/gen_openapi.py"
    resource = _resource(plural, group)
    listed = shared_kubectl("api-resources", "--api-group", group or "", "-o", "name")
    assert resource in listed.split()
    version = ["--api-version", rt.api_version] if rt.group else []
    out = shared_kubectl("explain", "--recursive", plural, *version)
    assert f"KIND:       {rt.kind}" in out
    shown = {line.split("\t")[0].strip() for line in out.split("FIELDS:")[1].splitlines()
             if "\t" in line}
    assert _fields_of(name) - shown == set()
    path = _deepest_path(name)
    leaf = shared_kubectl("explain", ".".join([plural, *path]), *version)
    assert f"FIELD: {path[-1]} <" in leaf
    assert "<empty>" not in leaf.split("DESCRIPTION:")[1]


def _typo_manifests() -> list[tuple[str, str, str]]:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typo-deploy"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "typo"}},
                 "template": {"metadata": {"labels": {"app": "typo"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    replicaz = yaml.safe_load(yaml.safe_dump(deployment))
    replicaz["spec"]["replicaz"] = replicaz["spec"].pop("replicas")
    imagee = yaml.safe_load(yaml.safe_dump(deployment))
    container = imagee["spec"]["template"]["spec"]["containers"][0]
    container["imagee"] = container.pop("image")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "typo-svc"},
               "spec": {"selector": {"app": "typo"}, "ports": [{"port": 80}],
                        "tpye": "NodePort"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "typo-pod"},
           "spec": {"containers": [{"name": "web", "image": "nginx",
                                    "ports": [{"containerPortt": 80}]}]}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo-cm"},
                 "dataa": {"key": "value"}}
    return [("deployment-replicaz", yaml.safe_dump(replicaz), "spec.replicaz"),
            ("deployment-imagee", yaml.safe_dump(imagee),
             "spec.template.spec.containers[0].imagee"),
            ("service", yaml.safe_dump(service), "spec.tpye"),
            ("pod", yaml.safe_dump(pod), "spec.containers[0].ports[0].containerPortt"),
            ("configmap", yaml.safe_dump(configmap), "dataa")]


@pytest.mark.parametrize("case, manifest, path", _typo_manifests(),
                         ids=[c[0] for c in _typo_manifests()])
def test_misspelled_field_is_refused_with_its_path(shared_kubectl, tmp_path, case, manifest,
                                                   path):
    obj = yaml.safe_load(manifest)
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = obj["kind"].lower() + "s"
    if lookup(group, version, plural) is None:
        pytest.skip(f"{obj['kind']} is not registered in controlplane/api/resources.py yet")
    assert openapi_schemas.unknown_fields(obj, group, version, obj["kind"]) == [path]
    try:
        strict.check_strict(obj, obj["kind"], obj["apiVersion"])
    except StatusError:     # refused: the kubectl run below checks how
        pass
    else:
        pytest.xfail(f"the server's strict decoding does not check {obj['kind']} yet "
                     "(controlplane/api/strict.py; see openapi_schemas.unknown_fields)")
    (tmp_path / "typo.yaml").write_text(manifest)
    proc = shared_kubectl.run("apply", "-f", str(tmp_path / "typo.yaml"))
    assert proc.returncode == 1
    assert f'unknown field "{path}"' in proc.stderr
    name = obj["metadata"]["name"]
    assert shared_kubectl.run("get", plural, name).returncode == 1    # nothing stored


def test_client_side_apply_merges_containers_and_env_by_name(kubectl, tmp_path):
    """kubectl computes the patch from the served merge keys: a variable another client
    added survives a re-apply that changes the image, as on a real cluster."""
    manifest = tmp_path / "web.yaml"
    text = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "containers": [{"name": "web", "image": "nginx:1.25",
                                     "ports": [{"containerPort": 80}]}]}}}})
    manifest.write_text(text)
    kubectl("apply", "-f", str(manifest))
    kubectl("set", "env", "deployment/web", "FOO=bar")
    manifest.write_text(text.replace("nginx:1.25", "nginx:1.27"))
    kubectl("apply", "-f", str(manifest))
    containers = yaml.safe_load(kubectl("get", "deployment", "web", "-o",
                                        "jsonpath={.spec.template.spec.containers}"))
    assert [(c["name"], c["image"], c.get("env")) for c in containers] == \
        [("web", "nginx:1.27", [{"name": "FOO", "value": "bar"}])]


def test_lab_fields_pass_kubectl_and_the_server(kubectl, tmp_path):
    """Fields the lab supports (trafficDistribution, EndpointSlice hints) are declared."""
    objects = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "zonal"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
                  "trafficDistribution": "PreferSameZone"}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "manual-1", "labels": {"kubernetes.io/service-name": "manual"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["192.168.1.5"], "zone": "us-east-1a",
                        "conditions": {"ready": True},
                        "hints": {"forZones": [{"name": "us-east-1a"}],
                                  "forNodes": [{"name": "ip-172-31-0-11"}]}}]},
    ]
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    out = kubectl("apply", "-f", str(path))
    assert "service/zonal created" in out
    assert "endpointslice.discovery.k8s.io/manual-1 created" in out
