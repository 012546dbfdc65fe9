"""Discovery and OpenAPI documents kubectl needs before it does anything.

``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>`` (plain JSON, so kubectl
falls back from aggregated discovery), ``/version`` and OpenAPI v3: one
document per group-version whose PATCH operations carry
``x-kubernetes-group-version-kind`` and the ``fieldValidation`` parameter, so
kubectl leaves strict field validation to the server, and whose schemas
describe every field of every served kind (openapi_schemas.py, generated from
the kubernetes client's models), for `kubectl explain` and kubectl's
client-side apply. A kind the generated file does not know yet is published
as a free-form object.
"""

from __future__ import annotations

import functools
import hashlib
import json

from controlplane.api import openapi_schemas
from controlplane.api.resources import BY_GROUP_VERSION, RESOURCES, VERBS

KUBE_VERSION = "v1.37.1"

# The pods' streaming subresources: the options kind each takes and its verbs.
SUBRESOURCE_KINDS = {
    "attach": ("PodAttachOptions", ["create", "get"]),
    "exec": ("PodExecOptions", ["create", "get"]),
    "log": ("Pod", ["get"]),
    "portforward": ("PodPortForwardOptions", ["create", "get"]),
}


def version_info() -> dict:
    major, minor, _ = KUBE_VERSION[1:].split(".")
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1),
            "gitVersion": KUBE_VERSION, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0",
            "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def api_group_list() -> dict:
    groups = sorted({rt.group for rt in RESOURCES if rt.group})
    out = []
    for group in groups:
        versions = sorted({rt.version for rt in RESOURCES if rt.group == group})
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        out.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


def api_group(group: str) -> dict | None:
    versions = sorted({rt.version for rt in RESOURCES if rt.group == group})
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_resource_list(group: str, version: str) -> dict | None:
    types = BY_GROUP_VERSION.get((group, version))
    if not types:
        return None
    resources = []
    for rt in types.values():
        entry = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": list(rt.verbs) or VERBS}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            if sub == "token":       # TokenRequest (serviceaccounts/token), create only
                resources.append({"name": f"{rt.plural}/token", "singularName": "",
                                  "namespaced": rt.namespaced, "group": "authentication.k8s.io",
                                  "version": "v1", "kind": "TokenRequest", "verbs": ["create"]})
            elif sub == "scale":
                resources.append({"name": f"{rt.plural}/scale", "singularName": "",
                                  "namespaced": rt.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale",
                                  "verbs": ["get", "patch", "update"]})
            else:
                kind, verbs = SUBRESOURCE_KINDS.get(sub, (rt.kind, ["get", "patch", "update"]))
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": kind, "verbs": verbs})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _patch_operation(rt) -> dict:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    media = {"schema": {"type": "object"}}
    return {
        "operationId": f"patch{rt.kind}",
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk,
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}},
        ],
        "requestBody": {"content": {"application/apply-patch+yaml": media,
                                    "application/json-patch+json": media,
                                    "application/merge-patch+json": media}},
        "responses": {"200": {"description": "OK",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }


def openapi_v3_document(group: str, version: str) -> dict | None:
    """The OpenAPI v3 document of one group-version (shared: do not modify it)."""
    return _document(group, version)


@functools.cache
def _document(group: str, version: str) -> dict | None:
    types = BY_GROUP_VERSION.get((group, version))
    if not types:
        return None
    paths = {}
    roots = list(openapi_schemas.STANDARD)
    free_form = {}
    prefix = "/" + _gv_path(group, version)
    for rt in types.values():
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        name = openapi_schemas.schema_name(rt.group, rt.version, rt.kind)
        if name is None:       # not generated yet (scripts/gen_openapi.py): free-form
            name = f"io.k8s.api.{(rt.group.split('.')[0] or 'core')}.{rt.version}.{rt.kind}"
            free_form[name] = {"type": "object", "x-kubernetes-group-version-kind": [gvk],
                               "x-kubernetes-preserve-unknown-fields": True}
        else:
            roots.append(name)
            list_name = openapi_schemas.schema_name(rt.group, rt.version, rt.list_kind)
            if list_name and not rt.virtual:
                roots.append(list_name)
        if rt.virtual:      # a review: POST to the collection only
            # The PATCH entry only tells kubectl (`create -f`) that the server validates
            # fields itself; without one it looks for /openapi/v2. A PATCH is answered 405.
            paths[f"{prefix}/{rt.plural}"] = {"post": {
                "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "post",
                "responses": {"201": {"description": "Created"}}},
                "patch": _patch_operation(rt)}
            continue
        item = (f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced
                else f"{prefix}/{rt.plural}/{{name}}")
        paths[item] = {"patch": _patch_operation(rt),
                       "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get",
                               "responses": {"200": {"description": "OK"}}}}
    schemas = {**openapi_schemas.closure(roots), **free_form}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION},
            "paths": paths, "components": {"schemas": dict(sorted(schemas.items()))}}


@functools.cache
def _hash(group: str, version: str) -> str:
    doc = json.dumps(_document(group, version), sort_keys=True).encode()
    return hashlib.sha512(doc).hexdigest()[:64].upper()


def openapi_v3_index() -> dict:
    paths = {}
    for group, version in sorted(BY_GROUP_VERSION):
        gv_path = _gv_path(group, version)
        url = f"/openapi/v3/{gv_path}?hash={_hash(group, version)}"
        paths[gv_path] = {"serverRelativeURL": url}
    return {"paths": paths}
