"""Generate controlplane/api/openapi_schemas.json.gz: the OpenAPI v3 schemas of every kind
svclab serves, from the model classes of the official ``kubernetes`` Python client.

Why: `kubectl explain` and kubectl's client-side apply read the server's OpenAPI v3
documents; writing thousands of fields by hand would rot. The client's models are
generated from Kubernetes' own OpenAPI document, so they carry each field's JSON
name, type, whether it is required, and its description (upstream's Go doc
comment). What they lose on the way (list and map semantics, patch merge keys,
enums, int64 and Quantity types, Time vs MicroTime) is restored from the tables in
gen_openapi_facts.py. Only the definitions reachable from the served kinds (plus the
standard apimachinery ones) are written, keyed by their upstream names
(``io.k8s.api.core.v1.ServiceSpec``).

Development-time only: the API server reads the committed file and never imports
``kubernetes``. Run it after a change of the kinds or of the client version:

    .venv/bin/python scripts/gen_openapi.py          # writes the file
    .venv/bin/python scripts/gen_openapi.py --check  # exit 1 if the file is stale

tests/unit/test_openapi_schemas.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "controlplane" / "api" / "openapi_schemas.json.gz"


def _load(name: str, path: Path):
    """Import one file by path (resources.py alone: not the whole API server package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


facts = _load("gen_openapi_facts", Path(__file__).with_name("gen_openapi_facts.py"))
RESOURCES = _load("svclab_api_resources", ROOT / "controlplane" / "api" / "resources.py").RESOURCES

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
REF = "#/components/schemas/"

# Kinds announced for this issue but maybe not registered yet (controlplane/api/resources.py
# gains them one by one); their schemas are ready when they are.
PLANNED_KINDS = (
    ("", "v1", "ConfigMap"), ("", "v1", "Secret"), ("", "v1", "ReplicationController"),
    ("apps", "v1", "StatefulSet"), ("apps", "v1", "DaemonSet"),
    ("apps", "v1", "ControllerRevision"), ("batch", "v1", "Job"), ("batch", "v1", "CronJob"),
    ("coordination.k8s.io", "v1", "Lease"),
)
# Always published (the operations of every document refer to them).
STANDARD = ("V1Status", "V1DeleteOptions", "V1WatchEvent", "V1APIResourceList")


def served_kinds() -> list[tuple[str, str, str, bool]]:
    """(group, version, kind, has_list) for the served and the planned kinds."""
    kinds = {(rt.group, rt.version, rt.kind): not rt.virtual for rt in RESOURCES}
    for gvk in PLANNED_KINDS:
        kinds.setdefault(gvk, True)
    return sorted((g, v, k, has_list) for (g, v, k), has_list in kinds.items())


# ---- the client's models -----------------------------------------------------------------
class Client:
    """What the installed ``kubernetes`` package knows: models and per-group API types."""

    def __init__(self) -> None:
        import kubernetes
        from kubernetes.client import models

        self.version = kubernetes.__version__
        classes = {name: getattr(models, name) for name in dir(models)}
        self.models = {name: cls for name, cls in classes.items()
                       if inspect.isclass(cls) and isinstance(
                           getattr(cls, "openapi_types", None), dict)}
        self.returned: dict[str, set[str]] = {}     # package ("core", "apps") -> model names
        api_dir = Path(inspect.getfile(models)).parents[1] / "api"
        for path in sorted(api_dir.glob("*_v*_api.py")):
            module = path.stem[:-len("_api")]
            package, version = module.rsplit("_", 1)
            key = f"{package.split('_')[0]}.{version}"
            found = set(re.findall(r"'20\d': \"(\w+)\"", path.read_text()))
            self.returned.setdefault(key, set()).update(n for n in found if n in self.models)

    def class_for_kind(self, group: str, version: str, kind: str) -> str:
        prefix = (group.split(".")[0] or "core").capitalize()
        for name in (f"{version.capitalize()}{kind}", f"{prefix}{version.capitalize()}{kind}"):
            if name in self.models and self._package_hint(name) in (None, _package(group)):
                return name
        raise KeyError(f"the kubernetes client has no model for {group}/{version} {kind}")

    @staticmethod
    def _package_hint(name: str) -> str | None:
        match = re.fullmatch(r"([A-Z][a-z]+)V\d\w*?(?=[A-Z])(\w+)", name)
        return match.group(1).lower() if match and not name.startswith("V") else None

    def references(self, name: str) -> list[str]:
        """Model names used by the fields of one model, in field order."""
        out = []
        for type_name in self.models[name].openapi_types.values():
            out += [t for t in re.findall(r"\w+", type_name) if t in self.models]
        return out

    def closure(self, roots: Iterable[str]) -> list[str]:
        seen: list[str] = []
        todo = list(roots)
        while todo:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.append(name)
            todo += self.references(name)
        return seen


def _package(group: str) -> str:
    return group.split(".")[0] or "core"


class Namer:
    """Upstream definition names for client model names (``V1PodSpec`` ->
    ``io.k8s.api.core.v1.PodSpec``): the client flattens every package into one
    namespace, prefixing only the names that clash (``CoreV1Event``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        # A model belongs to the API package whose kinds (the item types of its lists) reach
        # it; core wins, as core types are used by every workload group.
        self.reach: dict[str, set[str]] = {}
        for key, returned in client.returned.items():
            roots = [n[:-len("List")] for n in returned
                     if n.endswith("List") and n[:-len("List")] in client.models]
            for name in client.closure(roots):
                self.reach.setdefault(name, set()).add(key)
        self.returned_by: dict[str, set[str]] = {}
        for key, returned in client.returned.items():
            for name in client.closure(returned):
                self.returned_by.setdefault(name, set()).add(key)

    def name(self, model: str) -> str:
        if model in facts.NAMES:
            return facts.NAMES[model]
        match = re.fullmatch(r"([A-Z][a-z]+)?(V\d+(?:(?:alpha|beta)\d+)?)([A-Z]\w*)", model)
        if not match:
            raise ValueError(f"unexpected model name {model}")
        prefix, version, short = match.groups()
        version = version.lower()
        if prefix:
            return f"io.k8s.api.{prefix.lower()}.{version}.{short}"
        for candidates in (self.reach.get(model, set()), self.returned_by.get(model, set())):
            packages = {c.split(".")[0] for c in candidates if c.endswith("." + version)}
            if "core" in packages:
                return f"io.k8s.api.core.{version}.{short}"
            if len(packages) == 1:
                return f"io.k8s.api.{packages.pop()}.{version}.{short}"
        raise ValueError(f"cannot tell the API package of {model}; add it to facts.NAMES")


# ---- schemas -------------------------------------------------------------------------------
def _description(cls) -> str:
    doc = inspect.cleandoc(cls.__doc__ or "")
    return doc.split("Attributes:")[0].strip()


class Converter:
    def __init__(self, client: Client, namer: Namer) -> None:
        self.client = client
        self.namer = namer

    def ref(self, model: str) -> str:
        return REF + self.namer.name(model)

    def type_schema(self, type_name: str, where: str, annotation) -> dict:
        """The schema of one openapi_types entry (``List[V1Container]``, ``int``...)."""
        if type_name.startswith("List["):
            item = self.type_schema(type_name[5:-1], where, None)
            return {"type": "array", "items": item}
        if type_name.startswith("Dict[str, "):
            value = self.type_schema(type_name[10:-1], where, None)
            return {"type": "object", "additionalProperties": value}
        special = facts.TYPES.get(where)
        if special is not None:
            return {"allOf": [{"$ref": REF + special}]}
        if type_name in self.client.models:
            return {"allOf": [{"$ref": self.ref(type_name)}]}
        if type_name == "object" and "int" in repr(annotation) and "str" in repr(annotation):
            return {"allOf": [{"$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]}
        if type_name == "object":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if type_name == "datetime":
            return {"allOf": [{"$ref": REF + META + "Time"}]}
        if type_name == "int":
            return {"type": "integer", "format": facts.INT64.get(where, "int32")}
        simple = {"str": {"type": "string"}, "bool": {"type": "boolean"},
                  "float": {"type": "number", "format": "double"},
                  "bytes": {"type": "string", "format": "byte"}}
        if type_name in simple:
            return dict(simple[type_name])
        raise ValueError(f"{where}: unexpected type {type_name}")

    def _standard_description(self, json_name: str, type_name: str) -> str:
        """Single references lose their description in the client: the usual ones
        (metadata, spec, status) get a standard text."""
        if type_name not in self.client.models:
            return ""
        target = self.namer.name(type_name).rsplit(".", 1)[1]
        return (facts.DESCRIPTIONS.get(f"{json_name}:{target}")
                or facts.DESCRIPTIONS.get(json_name, ""))

    def definition(self, model: str) -> dict:
        cls = self.client.models[model]
        short = self.namer.name(model).rsplit(".", 1)[1]
        properties, required = {}, []
        for attr, json_name in cls.attribute_map.items():
            field = _model_field(cls, attr)
            where = f"{short}.{json_name}"
            prop = self.type_schema(cls.openapi_types[attr], where, field.annotation)
            type_name = cls.openapi_types[attr]
            text = field.description or self._standard_description(json_name, type_name)
            if not text and type_name in self.client.models:
                # Others take the referenced type's text, with a plain $ref: `kubectl
                # explain` prints a field's text and then its allOf type's, which would
                # repeat it.
                text, prop = _description(self.client.models[type_name]), prop["allOf"][0]
            if text:
                prop = {"description": text, **prop}
            prop.update(facts.EXTENSIONS.get(where, {}))
            if where in facts.ENUMS:
                target = prop["items"] if prop.get("type") == "array" else prop
                target["enum"] = list(facts.ENUMS[where])
            properties[json_name] = prop
            if field.is_required():
                required.append(json_name)
        required = list(facts.REQUIRED.get(short, required))
        out = {"description": _description(cls), "type": "object", "properties": properties}
        if required:
            out["required"] = required
        out.update(facts.EXTENSIONS.get(short, {}))
        return out


def _model_field(cls, attr: str):
    """The pydantic field of an attribute_map entry (``_continue`` is ``var_continue``)."""
    if attr in cls.model_fields:
        return cls.model_fields[attr]
    return next(f for name, f in cls.model_fields.items()
                if f.alias == attr or name == "var_" + attr.lstrip("_"))


def generate(client: Client | None = None) -> dict:
    client = client or Client()
    namer = Namer(client)
    converter = Converter(client, namer)
    kinds, roots = {}, list(STANDARD)
    for group, version, kind, has_list in served_kinds():
        model = client.class_for_kind(group, version, kind)
        roots.append(model)
        kinds[f"{group}/{version}/{kind}"] = namer.name(model)
        if has_list:
            roots.append(model + "List")
            kinds[f"{group}/{version}/{kind}List"] = namer.name(model + "List")
    definitions = {namer.name(m): converter.definition(m) for m in client.closure(roots)}
    definitions.update(facts.APIMACHINERY)
    gvks: dict[str, list[dict]] = {}
    for key, name in kinds.items():
        group, version, kind = key.split("/")
        gvks.setdefault(name, []).append({"group": group, "kind": kind, "version": version})
    for name, entries in gvks.items():
        definitions[name]["x-kubernetes-group-version-kind"] = entries
    return {"source": {"package": "kubernetes", "version": client.version},
            "kinds": dict(sorted(kinds.items())),
            "definitions": dict(sorted(definitions.items()))}


def encode(document: dict) -> bytes:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed file instead of writing it")
    args = parser.parse_args(argv)
    document = generate()
    if args.check:
        committed = json.loads(gzip.decompress(OUTPUT.read_bytes()))
        if committed != document:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run scripts/gen_openapi.py")
            return 1
        return 0
    OUTPUT.write_bytes(encode(document))
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(document['definitions'])} definitions, "
          f"{OUTPUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
