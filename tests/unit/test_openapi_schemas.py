"""The generated OpenAPI schemas (controlplane/api/openapi_schemas.json.gz): fresh, complete
for every served kind, consistent with the server's strategic merge patch, and
accepting what the lab itself writes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

from controlplane.api import discovery, openapi_schemas, patch
from controlplane.api.resources import BY_GROUP_VERSION, RESOURCES
from experiments import cluster_ops
from labd import addons
from topo.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SERVED_VERSIONS = {rt.api_version for rt in RESOURCES}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" /
                                                  "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_openapi"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_file_is_what_the_generator_writes_from_the_installed_client():
    kubernetes = pytest.importorskip("kubernetes")
    made_from = openapi_schemas.source()["version"]
    if kubernetes.__version__ != made_from:
        pytest.skip(f"generated from kubernetes {made_from}, {kubernetes.__version__} is "
                    "installed: compare after running scripts/gen_openapi.py")
    assert _generator().generate() == openapi_schemas._data(), \
        "stale: run .venv/bin/python scripts/gen_openapi.py"


@pytest.mark.parametrize("rt", RESOURCES, ids=lambda rt: f"{rt.api_version}/{rt.kind}")
def test_every_served_kind_has_a_described_schema(rt):
    name = openapi_schemas.schema_name(rt.group, rt.version, rt.kind)
    assert name, f"no schema for {rt.kind}: run scripts/gen_openapi.py"
    schema = openapi_schemas.definitions()[name]
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    assert gvk in schema["x-kubernetes-group-version-kind"]
    assert schema["description"] and {"apiVersion", "kind"} <= set(schema["properties"])
    if not rt.virtual:
        assert openapi_schemas.schema_name(rt.group, rt.version, rt.list_kind)
    for field in openapi_schemas.closure([name]).values():
        for prop, value in field.get("properties", {}).items():
            assert value.get("description"), f"{prop} of {name} has no description"


def test_every_reference_names_a_definition():
    defs = openapi_schemas.definitions()
    dangling = {ref for schema in defs.values() for ref in openapi_schemas.references(schema)
                if ref not in defs}
    assert dangling == set()


def test_definitions_carry_upstream_names_types_and_extensions():
    defs = openapi_schemas.definitions()
    assert {"io.k8s.api.core.v1.PodSpec", "io.k8s.api.apps.v1.DeploymentSpec",
            "io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.discovery.v1.EndpointHints",
            "io.k8s.api.core.v1.Event", "io.k8s.api.events.v1.Event",
            "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
            "io.k8s.api.networking.v1.IPBlock"} <= set(defs)
    spec = defs["io.k8s.api.core.v1.ServiceSpec"]["properties"]
    assert spec["type"]["enum"] == ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    assert spec["ports"]["x-kubernetes-patch-merge-key"] == "port"
    assert spec["trafficDistribution"]["type"] == "string"
    port = defs["io.k8s.api.core.v1.ServicePort"]
    assert port["required"] == ["port"]
    assert port["properties"]["targetPort"]["allOf"][0]["$ref"].endswith("intstr.IntOrString")
    limits = defs["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["allOf"][0]["$ref"].endswith("resource.Quantity")
    meta = defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["generation"]["format"] == "int64"
    assert defs["io.k8s.api.apps.v1.Deployment"].get("required") is None
    assert defs["io.k8s.api.apps.v1.DeploymentCondition"]["required"] == ["type", "status"]


def _array_fields(schema: dict, path: tuple[str, ...], seen: frozenset):
    """(object path, list field, property schema) for every list under a kind."""
    for field, prop in openapi_schemas.resolve(schema).get("properties", {}).items():
        resolved = openapi_schemas.resolve(prop)
        refs = openapi_schemas.references(prop)
        if refs & seen:
            continue
        if resolved.get("type") == "array":
            yield path, field, prop
            yield from _array_fields(resolved["items"], (*path, field), seen | refs)
        elif resolved.get("properties"):
            yield from _array_fields(resolved, (*path, field), seen | refs)


# Lists the server merges by key although the API declares them atomic (patch.py keys by
# field name); reported with issue 16, harmless to kubectl's patches.
PATCH_MERGES_MORE = {"spec.scheduling.resourceClaims", "spec.finalizers",
                     "status.containerStatuses.volumeMounts",
                     "status.initContainerStatuses.volumeMounts",
                     "status.ephemeralContainerStatuses.volumeMounts",
                     "status.nodeAllocatableResourceClaimStatuses.containers",
                     "imagePullSecrets", "spec.jobTemplate.spec.scheduling.resourceClaims"}


@pytest.mark.parametrize("rt", [rt for rt in RESOURCES if not rt.virtual],
                         ids=lambda rt: f"{rt.api_version}/{rt.kind}")
def test_merge_keys_agree_with_the_servers_strategic_merge_patch(rt):
    """kubectl's client-side apply sends partial lists for a declared merge key; the
    server must merge that list by the same key, or it would drop the other items."""
    name = openapi_schemas.schema_name(rt.group, rt.version, rt.kind)
    checked = 0
    for path, field, prop in _array_fields(openapi_schemas.definitions()[name], (),
                                           frozenset({name})):
        declared = prop.get("x-kubernetes-patch-merge-key")
        merged_primitive = "merge" in prop.get("x-kubernetes-patch-strategy", "") and \
            not declared
        where = ".".join((*path, field))
        if declared or merged_primitive:
            checked += 1
        if where in PATCH_MERGES_MORE and not declared and not merged_primitive:
            continue
        assert patch.merge_key(path, field) == declared, where
        assert (field in patch.MERGED_PRIMITIVE_LISTS) == merged_primitive, where
    assert checked or rt.kind not in ("Pod", "Deployment", "Service", "Node")


def _lab_manifests() -> list[dict]:
    """What the lab itself creates, and the Kubernetes manifests of README and docs/."""
    spec = load_spec()
    found = [cluster_ops.deployment("web", 3, {"app": "web"}, node="ip-172-31-0-11"),
             cluster_ops.pod("caller", "ip-172-31-0-11"),
             cluster_ops.service("web", {"app": "web"}, type="LoadBalancer",
                                 externalTrafficPolicy="Local",
                                 trafficDistribution="PreferClose"),
             addons.coredns_service_account(), *addons.coredns_objects(spec)]
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            found += [d for d in yaml.safe_load_all(block)
                      if isinstance(d, dict) and d.get("apiVersion") in SERVED_VERSIONS]
    return found


@pytest.mark.parametrize("obj", _lab_manifests(),
                         ids=lambda o: f"{o['kind']}-{o['metadata'].get('name')}")
def test_lab_manifests_declare_only_known_fields(obj):
    group, _, version = obj["apiVersion"].rpartition("/")
    assert openapi_schemas.unknown_fields(obj, group, version, obj["kind"]) == []


@pytest.mark.parametrize("obj, kind, expected", [
    ({"spec": {"replicaz": 3, "template": {"spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b", "imagee": "y"}]}}}},
     ("apps", "v1", "Deployment"),
     ["spec.replicaz", "spec.template.spec.containers[1].imagee"]),
    ({"spec": {"trafficDistribution": "PreferSameZone", "selector": {"any-label": "x"},
               "ports": [{"port": 80, "targetPort": "http"}]}}, ("", "v1", "Service"), []),
    ({"endpoints": [{"addresses": ["10.0.0.1"], "hints": {
        "forZones": [{"name": "a"}], "forNodes": [{"name": "n"}], "forZone": []}}]},
     ("discovery.k8s.io", "v1", "EndpointSlice"), ["endpoints[0].hints.forZone"]),
    ({"metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}, "nme": "x"}},
     ("", "v1", "Pod"), ["metadata.nme"]),
    ({"spec": {"containers": [{"name": "a", "resources": {"limitz": {"cpu": "1"}}}]}},
     ("", "v1", "Pod"), ["spec.containers[0].resources.limitz"]),
])
def test_unknown_fields_names_each_path_as_strict_decoding_does(obj, kind, expected):
    assert openapi_schemas.unknown_fields(obj, *kind) == expected


def test_unknown_fields_is_none_for_a_kind_without_schema():
    assert openapi_schemas.unknown_fields({}, "example.com", "v1", "Widget") is None


def test_every_group_version_document_is_served_with_its_kinds():
    index = discovery.openapi_v3_index()["paths"]
    for (group, version), types in BY_GROUP_VERSION.items():
        gv_path = f"apis/{group}/{version}" if group else f"api/{version}"
        assert index[gv_path]["serverRelativeURL"].startswith(f"/openapi/v3/{gv_path}?hash=")
        schemas = discovery.openapi_v3_document(group, version)["components"]["schemas"]
        kinds = {gvk["kind"] for s in schemas.values()
                 for gvk in s.get("x-kubernetes-group-version-kind", ())
                 if (gvk["group"], gvk["version"]) == (group, version)}
        assert {rt.kind for rt in types.values()} <= kinds
        assert openapi_schemas.references(schemas) <= set(schemas)
