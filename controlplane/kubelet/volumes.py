"""A pod's volumes, as the kubelet's volume plugins fill them: pure.

From the pod's spec and what the API holds (ConfigMaps, Secrets, the pod's
tokens, the node's allocatable) to the files of each volume and where the
pod's containers see them; the runtime writes and mounts them (base/cri.py).
As upstream's plugins (pkg/volume/configmap, secret, downwardapi, projected,
emptydir):

- configMap: every key of `data` and `binaryData` (or only `items`, at their
  `path`, with their `mode`), mode `defaultMode` (0644); a missing ConfigMap
  fails the mount (`configmap "x" not found`) unless optional (then the
  volume is empty), a missing item key likewise (`configmap references
  non-existent config key: k`).  secret: the same with decoded data
  (`secret "x" not found`, `references non-existent secret key: k`).
- downwardAPI: `items` with a metadata fieldRef or a resourceFieldRef.
- projected: the files of its sources (configMap, secret, downwardAPI,
  serviceAccountToken) in one volume; the errors of all its sources together.
- emptyDir: an empty folder (a tmpfs, `sizeLimit` if given).
- These four kinds of API data are always mounted read-only, emptyDir as the
  volumeMount says.  Other volume types (hostPath, persistentVolumeClaim,
  ...) are not emulated: an empty folder stands in, with a warning.

The containers of a svclab pod share one mount namespace: the mounts are the
union of every container's volumeMounts (the first container wins a path two
claim differently, with a warning).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from base.cri import PodVolume, VolumeFile, VolumeMount
from controlplane.kubelet.env import (
    ConfigObjects,
    configmap_files,
    expand,
    field_value,
    lookup,
    metadata_value,
    parse_quantity,
    resource_value,
    secret_data,
)
from controlplane.kubelet.sandbox import ContainerConfigError

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
PLUGINS = {"configMap": "kubernetes.io~configmap", "secret": "kubernetes.io~secret",
           "downwardAPI": "kubernetes.io~downward-api", "projected": "kubernetes.io~projected",
           "emptyDir": "kubernetes.io~empty-dir"}
API_DATA = ("configMap", "secret", "downwardAPI", "projected")    # always read-only
VOLUME_FIELDS = ("name",)


class VolumeSetupError(ContainerConfigError):
    """The pod's volumes cannot be set up (yet): the pod waits in ContainerCreating."""


@dataclass(frozen=True)
class Sources:
    """What the volumes are made of: the API's objects, the pod's tokens by (audience,
    expirationSeconds) (or why one could not be had), the node's allocatable."""

    objects: ConfigObjects
    tokens: Mapping[tuple[str, int], str] = field(default_factory=dict)
    token_errors: Mapping[tuple[str, int], str] = field(default_factory=dict)
    allocatable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumePlan:
    """What the kubelet can set up for a pod now."""

    volumes: tuple[PodVolume, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    failures: tuple[str, ...] = ()    # FailedMount messages: the pod cannot start yet
    notes: tuple[str, ...] = ()       # what svclab stands in for (warnings)


def volume_type(volume: dict) -> str:
    return next((key for key in volume if key not in VOLUME_FIELDS), "")


def token_key(source: dict) -> tuple[str, int]:
    """(audience, expirationSeconds) of a serviceAccountToken projection."""
    return (source.get("audience") or "",
            int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS))


def token_requests(pod: dict) -> tuple[tuple[str, int], ...]:
    """The tokens the pod's projected volumes need, once each."""
    wanted = [token_key(s["serviceAccountToken"])
              for v in (pod.get("spec") or {}).get("volumes") or []
              for s in (v.get("projected") or {}).get("sources") or []
              if s.get("serviceAccountToken") is not None]
    return tuple(dict.fromkeys(wanted))


def has_api_data(pod: dict) -> bool:
    """Whether any volume follows the API (so the kubelet must keep it in sync)."""
    return any(volume_type(v) in API_DATA for v in (pod.get("spec") or {}).get("volumes") or [])


def mount_paths(pod: dict) -> set[str]:
    """Every mountPath of the pod's containers."""
    return {m.get("mountPath", "") for c in (pod.get("spec") or {}).get("containers") or []
            for m in c.get("volumeMounts") or []}


# --- the payloads ---------------------------------------------------------------------

def _mode(value, default: int) -> int:
    return default if value is None else int(value)


def _keyed_payload(data: Mapping[str, bytes], items: list | None, mode: int, optional: bool,
                   missing_key: str) -> list[VolumeFile]:
    if not items:
        return [VolumeFile(key, value, mode) for key, value in sorted(data.items())]
    files = []
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise ContainerConfigError(f"{missing_key}: {key}")
        files.append(VolumeFile(item.get("path") or key, data[key], _mode(item.get("mode"), mode)))
    return files


def _object_payload(kind: str, source: dict, namespace: str, objects: ConfigObjects,
                    mode: int) -> list[VolumeFile]:
    name = source.get("name") if kind == "configmap" else source.get("secretName",
                                                                      source.get("name"))
    name = name or ""
    optional = bool(source.get("optional"))
    found = lookup(objects, kind, namespace, name)
    if found is None:
        if not optional:
            raise ContainerConfigError(f'{kind} "{name}" not found')
        found = {}
    if kind == "configmap":
        return _keyed_payload(configmap_files(found), source.get("items"), mode, optional,
                              "configmap references non-existent config key")
    return _keyed_payload(secret_data(found), source.get("items"), mode, optional,
                          "references non-existent secret key")


def _downward_payload(source: dict, pod: dict, allocatable: Mapping[str, str],
                      mode: int) -> list[VolumeFile]:
    files = []
    for item in source.get("items") or []:
        if item.get("fieldRef"):
            text = metadata_value(item["fieldRef"].get("fieldPath", ""), pod)
        elif item.get("resourceFieldRef"):
            text = resource_value(item["resourceFieldRef"], pod, None, allocatable)
        else:
            continue
        files.append(VolumeFile(item.get("path", ""), text.encode(),
                                _mode(item.get("mode"), mode)))
    return files


def _projected_payload(source: dict, pod: dict, sources: Sources,
                       mode: int) -> list[VolumeFile]:
    files, errors = [], []
    objects, allocatable = sources.objects, sources.allocatable
    namespace = pod["metadata"].get("namespace", "default")
    for part in source.get("sources") or []:
        try:
            if part.get("configMap") is not None:
                files += _object_payload("configmap", part["configMap"], namespace, objects, mode)
            elif part.get("secret") is not None:
                files += _object_payload("secret", part["secret"], namespace, objects, mode)
            elif part.get("downwardAPI") is not None:
                files += _downward_payload(part["downwardAPI"], pod, allocatable, mode)
            elif part.get("serviceAccountToken") is not None:
                token = part["serviceAccountToken"]
                key = token_key(token)
                if key not in sources.tokens:
                    reason = sources.token_errors.get(key, "not requested")
                    raise ContainerConfigError(f"failed to fetch token: {reason}")
                files.append(VolumeFile(token.get("path", "token"), sources.tokens[key].encode(),
                                        mode))
            else:
                kinds = ", ".join(part) or "nothing"
                errors.append(f"svclab does not emulate projected {kinds} sources")
        except ContainerConfigError as err:
            errors.append(str(err))
    if errors:
        raise ContainerConfigError(errors[0] if len(errors) == 1
                                   else "[" + ", ".join(errors) + "]")
    return files


def volume_files(volume: dict, pod: dict, sources: Sources) -> tuple[VolumeFile, ...]:
    """The files of one API-data volume; ContainerConfigError with the plugin's words."""
    kind = volume_type(volume)
    source = volume[kind] or {}
    mode = _mode(source.get("defaultMode"), DEFAULT_MODE)
    namespace = pod["metadata"].get("namespace", "default")
    if kind == "configMap":
        files = _object_payload("configmap", source, namespace, sources.objects, mode)
    elif kind == "secret":
        files = _object_payload("secret", source, namespace, sources.objects, mode)
    elif kind == "downwardAPI":
        files = _downward_payload(source, pod, sources.allocatable, mode)
    else:
        files = _projected_payload(source, pod, sources, mode)
    return tuple(files)


# --- the plan -------------------------------------------------------------------------

def _container_env_for_paths(pod: dict, container: dict) -> dict[str, str]:
    """What subPathExpr may expand: the container's plain and downward API variables
    (the pod has no IP yet when its volumes are mounted)."""
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if var.get("value"):
            env[var["name"]] = expand(var["value"], env)
        elif source.get("fieldRef"):
            try:
                env[var["name"]] = field_value(source["fieldRef"].get("fieldPath", ""), pod,
                                               "", "")
            except ContainerConfigError:
                continue
    return env


def plan_mounts(pod: dict) -> tuple[tuple[VolumeMount, ...], tuple[str, ...]]:
    """The union of the containers' volumeMounts, and what had to be left out."""
    spec = pod.get("spec") or {}
    types = {v.get("name"): volume_type(v) for v in spec.get("volumes") or []}
    chosen: dict[str, VolumeMount] = {}
    notes = []
    for container in spec.get("containers") or []:
        for entry in container.get("volumeMounts") or []:
            name, path = entry.get("name", ""), entry.get("mountPath", "")
            if name not in types or not path.startswith("/"):
                notes.append(f'container "{container.get("name", "")}": volumeMount {name!r} '
                             f"at {path!r} names no volume of the pod")
                continue
            sub_path = entry.get("subPath") or ""
            if entry.get("subPathExpr"):
                sub_path = expand(entry["subPathExpr"], _container_env_for_paths(pod, container))
            mount = VolumeMount(name, path.rstrip("/") or "/", sub_path,
                                bool(entry.get("readOnly")) or types[name] in API_DATA)
            earlier = chosen.setdefault(mount.path, mount)
            if earlier != mount:
                notes.append(f"{mount.path}: the pod's containers share one mount namespace in "
                             f"svclab; volume {earlier.volume!r} is mounted there, not "
                             f"{mount.volume!r}")
    return tuple(chosen.values()), tuple(notes)


def plan_volumes(pod: dict, sources: Sources) -> VolumePlan:
    """Every volume of the pod with its files, the mounts, and why any cannot be set up."""
    volumes, failures, notes = [], [], []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name, kind = volume.get("name", ""), volume_type(volume)
        if kind in API_DATA:
            try:
                files = volume_files(volume, pod, sources)
            except ContainerConfigError as err:
                failures.append(f'MountVolume.SetUp failed for volume "{name}" : {err}')
                continue
            volumes.append(PodVolume(name, "files", PLUGINS[kind], files))
            continue
        size = None
        if kind == "emptyDir" and (volume["emptyDir"] or {}).get("sizeLimit"):
            size = int(parse_quantity(volume["emptyDir"]["sizeLimit"]))
        elif kind != "emptyDir":
            notes.append(f'volume "{name}": svclab does not emulate {kind or "unknown"} '
                         "volumes; an empty directory stands in")
        volumes.append(PodVolume(name, "emptyDir", PLUGINS["emptyDir"], size_limit=size))
    mounts, mount_notes = plan_mounts(pod)
    return VolumePlan(tuple(volumes), mounts, tuple(failures), tuple(notes) + mount_notes)
