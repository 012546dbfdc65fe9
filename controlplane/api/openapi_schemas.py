"""The OpenAPI v3 schemas of the kinds svclab serves, read from a committed data file.

`kubectl explain` walks these schemas field by field, and kubectl's client-side
apply reads their patch merge keys. They describe every field of every served
kind (types, descriptions, required fields, enums, list semantics) because they
are generated, not written: scripts/gen_openapi.py derives them from the model
classes of the official ``kubernetes`` Python client (which are generated from
Kubernetes' own OpenAPI document) and writes ``openapi_schemas.json.gz``
beside this module. The API server only reads that file; it never imports
``kubernetes``.

The file holds ``definitions`` (upstream names such as
``io.k8s.api.core.v1.ServiceSpec``, references as ``#/components/schemas/...``)
and ``kinds`` (``group/version/Kind`` -> definition name, List kinds included).
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterable
from pathlib import Path

DATA_FILE = Path(__file__).with_name("openapi_schemas.json.gz")
REF_PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Published in every document: the operations' bodies and answers refer to them.
STANDARD = (META + "Status", META + "DeleteOptions", META + "WatchEvent")


@functools.cache
def _data() -> dict:
    return json.loads(gzip.decompress(DATA_FILE.read_bytes()))


def source() -> dict:
    """Which ``kubernetes`` client the file was generated from."""
    return dict(_data()["source"])


def definitions() -> dict[str, dict]:
    """Every definition of the file (shared: do not modify)."""
    return _data()["definitions"]


def schema_name(group: str, version: str, kind: str) -> str | None:
    """The definition that describes one kind, or None when the file has none."""
    return _data()["kinds"].get(f"{group}/{version}/{kind}")


def references(schema) -> set[str]:
    """The definition names one schema refers to, at any depth."""
    found: set[str] = set()
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                found.add(ref[len(REF_PREFIX):])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def closure(names: Iterable[str]) -> dict[str, dict]:
    """The named definitions and everything they refer to."""
    defs = definitions()
    out: dict[str, dict] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = defs[name]
        todo.extend(references(defs[name]) - out.keys())
    return out


def resolve(schema: dict) -> dict:
    """Follow a ``$ref`` or a single-element ``allOf`` to the definition it names."""
    while True:
        if "$ref" in schema:
            schema = definitions()[schema["$ref"][len(REF_PREFIX):]]
        elif len(schema.get("allOf", ())) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema


def unknown_fields(obj, group: str, version: str, kind: str) -> list[str] | None:
    """The paths of the fields of ``obj`` its kind's schema does not declare, in the
    apiserver's strict-decoding form (``spec.template.spec.containers[0].imagee``);
    None when the kind has no schema here."""
    name = schema_name(group, version, kind)
    if name is None:
        return None
    found: list[str] = []
    _walk(obj, definitions()[name], "", found)
    return found


def _walk(value, schema: dict, path: str, found: list[str]) -> None:
    schema = resolve(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _walk(item, schema["items"], f"{path}[{i}]", found)
        return
    if not isinstance(value, dict):
        return
    properties = schema.get("properties")
    if properties is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                _walk(item, extra, f"{path}.{key}" if path else key, found)
        return
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in properties:
            found.append(where)
        else:
            _walk(item, properties[key], where, found)
