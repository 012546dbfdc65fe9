"""A container's environment, as the kubelet builds it: pure.

As upstream's makeEnvironmentVariables (pkg/kubelet/kubelet_pods.go):

1. `envFrom` first, in order: every key of the ConfigMap's `data` (not
   `binaryData`) or of the Secret's `data`, with the entry's `prefix`; a later
   source overrides an earlier one.  A missing object fails the container
   (CreateContainerConfigError) unless the reference is optional.
2. `env` in order: a `value` is expanded (`$(VAR)`) from the variables known so
   far (envFrom's and those declared before it) and the service variables; a
   `valueFrom` is resolved: `fieldRef` from the pod (downward API),
   `resourceFieldRef` from the container's resources (limits default to the
   node's allocatable), `configMapKeyRef` / `secretKeyRef` from the object;
   a missing object or key fails the container unless optional (then the
   variable is left out).  A later entry of the same name replaces an earlier.
3. The service variables not declared by the container.

The messages are the kubelet's: `configmap "x" not found` (the watch-based
manager's NotFound), `couldn't find key k in ConfigMap ns/x`.
"""
from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Protocol

from controlplane.kubelet.sandbox import ContainerConfigError

LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)"
                      r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")
SUFFIXES = {"": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6),
            "m": Fraction(1, 1000), "k": Fraction(10**3), "M": Fraction(10**6),
            "G": Fraction(10**9), "T": Fraction(10**12), "P": Fraction(10**15),
            "E": Fraction(10**18), **{s: Fraction(2 ** (10 * (i + 1)))
                                     for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi",
                                                            "Ei"))}}
DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")


class ConfigObjects(Protocol):
    """Where the kubelet reads ConfigMaps and Secrets: None when one does not exist.
    May raise ContainerConfigError when it cannot tell yet (not synced)."""

    def configmap(self, namespace: str, name: str) -> dict | None: ...

    def secret(self, namespace: str, name: str) -> dict | None: ...


class StaticObjects:
    """ConfigObjects over lists of objects (tests, or a snapshot)."""

    def __init__(self, configmaps: list[dict] = (), secrets: list[dict] = ()):
        self._objects = {("configmap", o["metadata"].get("namespace", "default"),
                          o["metadata"]["name"]): o for o in configmaps}
        self._objects.update({("secret", o["metadata"].get("namespace", "default"),
                               o["metadata"]["name"]): o for o in secrets})

    def configmap(self, namespace: str, name: str) -> dict | None:
        return self._objects.get(("configmap", namespace, name))

    def secret(self, namespace: str, name: str) -> dict | None:
        return self._objects.get(("secret", namespace, name))


NO_OBJECTS = StaticObjects()


# --- the objects' data --------------------------------------------------------------

def secret_data(secret: dict) -> dict[str, bytes]:
    """A Secret's data, decoded (the API keeps it base64)."""
    return {key: base64.b64decode(value or "") for key, value in
            (secret.get("data") or {}).items()}


def configmap_files(configmap: dict) -> dict[str, bytes]:
    """What a ConfigMap volume shows: `data` as UTF-8 and `binaryData` decoded."""
    files = {key: (value or "").encode() for key, value in (configmap.get("data") or {}).items()}
    files.update({key: base64.b64decode(value or "") for key, value in
                  (configmap.get("binaryData") or {}).items()})
    return files


def as_env_text(data: bytes) -> str:
    """Bytes as an environment value: Go's string(bytes), undecodable bytes kept."""
    return data.decode("utf-8", "surrogateescape")


def missing(kind: str, name: str) -> ContainerConfigError:
    """What the kubelet says of a ConfigMap or Secret it cannot find (kind: configmap, secret)."""
    return ContainerConfigError(f'{kind} "{name}" not found')


def lookup(objects: ConfigObjects, kind: str, namespace: str, name: str) -> dict | None:
    return objects.configmap(namespace, name) if kind == "configmap" \
        else objects.secret(namespace, name)


# --- $(VAR) ------------------------------------------------------------------------------

def expand(text: str, *sources: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is `$`; unknown references stay."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:end]
            out.append(next((s[name] for s in sources if name in s), f"$({name})"))
            i = end + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def expand_command(argv: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(arg, env) for arg in argv]


# --- the downward API ------------------------------------------------------------------

def go_quote(text: str) -> str:
    """Go's %q of a string: double quotes, backslash escapes for what is not printable."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", "\\": "\\\\", '"': '\\"'}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def format_map(pairs: Mapping[str, str]) -> str:
    """Labels or annotations as a downward API file or variable shows them:
    `key="value"` lines sorted by key, no newline at the end."""
    return "\n".join(f"{key}={go_quote(value)}" for key, value in sorted(pairs.items()))


def metadata_value(path: str, pod: dict) -> str:
    """A fieldRef into the pod's metadata (what downward API volumes may use)."""
    meta = pod["metadata"]
    simple = {"metadata.name": "name", "metadata.namespace": "namespace", "metadata.uid": "uid"}
    if path in simple:
        return meta.get(simple[path], "")
    match = LABEL_REF.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".")[1]) or {})
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def field_value(path: str, pod: dict, pod_ip: str, host_ip: str) -> str:
    """A fieldRef's value for an environment variable, as the kubelet resolves it."""
    spec = pod.get("spec") or {}
    runtime = {"spec.nodeName": spec.get("nodeName", ""), "spec.host": spec.get("nodeName", ""),
               "spec.serviceAccountName": spec.get("serviceAccountName", ""),
               "status.podIP": pod_ip, "status.podIPs": pod_ip,
               "status.hostIP": host_ip, "status.hostIPs": host_ip}
    if path in runtime:
        return runtime[path]
    return metadata_value(path, pod)


def parse_quantity(text: str | int | float) -> Fraction:
    """A resource.Quantity's exact value: `500m`, `128Mi`, `1e3`, `2`."""
    match = QUANTITY.match(str(text).strip())
    if not match:
        raise ContainerConfigError(f"quantities must match the regular expression "
                                   f"'{QUANTITY.pattern}': {text!r}")
    number, exponent, suffix = match.groups()
    value = Fraction(number)
    if exponent:
        return value * Fraction(10) ** int(exponent[1:])
    return value * SUFFIXES[suffix or ""]


def _container_named(pod: dict, name: str) -> dict | None:
    return next((c for c in (pod.get("spec") or {}).get("containers") or []
                 if c.get("name") == name), None)


def resource_value(ref: dict, pod: dict, container: dict | None,
                   allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef's value: the container's limit (the node's allocatable when it
    has none) or request, divided by the divisor and rounded up."""
    if ref.get("containerName"):
        container = _container_named(pod, ref["containerName"])
    if container is None:
        raise ContainerConfigError(f"container {ref.get('containerName', '')} not found")
    resource = ref.get("resource", "")
    which, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    limits = dict(resources.get("limits") or {})
    requests = {**limits, **(resources.get("requests") or {})}   # the API's defaulting
    for key in DEFAULTED_LIMITS:
        if key not in limits and key in allocatable:
            limits[key] = allocatable[key]
    table = {"limits": limits, "requests": requests}.get(which)
    if table is None or not (name in DEFAULTED_LIMITS or name.startswith("hugepages-")):
        raise ContainerConfigError(f"unsupported container resource : {resource}")
    divisor = parse_quantity(ref.get("divisor") or "1") or Fraction(1)
    amount = parse_quantity(table.get(name, "0"))
    scale = 1000 if name == "cpu" else 1          # CPU counts in millicores (MilliValue)
    return str(math.ceil(Fraction(math.ceil(amount * scale), math.ceil(divisor * scale))))


# --- the environment --------------------------------------------------------------------

def _from_object(objects: ConfigObjects, kind: str, namespace: str, ref: dict,
                 cache: dict) -> dict | None:
    """The object a reference names (None: missing and optional); raises when missing."""
    name = ref.get("name", "")
    if (kind, name) not in cache:
        cache[(kind, name)] = lookup(objects, kind, namespace, name)
    found = cache[(kind, name)]
    if found is None and not ref.get("optional"):
        raise missing(kind, name)
    return found


def _env_data(kind: str, obj: dict) -> dict[str, str]:
    if kind == "configmap":
        return {k: v or "" for k, v in (obj.get("data") or {}).items()}
    return {k: as_env_text(v) for k, v in secret_data(obj).items()}


def container_env(pod: dict, container: dict, pod_ip: str, host_ip: str,
                  services: Mapping[str, str], objects: ConfigObjects = NO_OBJECTS,
                  allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's variables, in order: envFrom's, its env (expanded), then the
    service links it does not declare.  Raises ContainerConfigError as the kubelet fails."""
    namespace = pod["metadata"].get("namespace", "default")
    cache: dict = {}
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind = "configmap" if "configMapRef" in source else "secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        found = _from_object(objects, kind, namespace, ref, cache)
        if found is not None:
            prefix = source.get("prefix") or ""
            declared.update({prefix + k: v for k, v in _env_data(kind, found).items()})
    for var in container.get("env") or []:
        name, value, source = var.get("name", ""), var.get("value") or "", var.get("valueFrom")
        if value:
            value = expand(value, declared, services)
        elif source:
            if "fieldRef" in source:
                value = field_value(source["fieldRef"].get("fieldPath", ""), pod, pod_ip, host_ip)
            elif "resourceFieldRef" in source:
                value = resource_value(source["resourceFieldRef"], pod, container,
                                       allocatable or {})
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                kind = "configmap" if "configMapKeyRef" in source else "secret"
                ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
                found = _from_object(objects, kind, namespace, ref, cache)
                if found is None:
                    continue
                data = _env_data(kind, found)
                key = ref.get("key", "")
                if key not in data:
                    if ref.get("optional"):
                        continue
                    title = "ConfigMap" if kind == "configmap" else "Secret"
                    raise ContainerConfigError(f"couldn't find key {key} in {title} "
                                               f"{namespace}/{ref.get('name', '')}")
                value = data[key]
            else:
                raise ContainerConfigError(f"env {name}: valueFrom {', '.join(source)} is not "
                                           "supported by svclab")
        declared.pop(name, None)       # a redeclared variable takes its new place
        declared[name] = value
    return {**declared, **{k: v for k, v in services.items() if k not in declared}}
