"""Validation of a pod's volumes, its containers' volumeMounts, env and envFrom.

As ValidateVolumes, ValidateVolumeMounts, ValidateEnv and ValidateEnvFrom in
pkg/apis/core/validation do for the sources svclab's kubelet serves
(emptyDir, configMap, secret, downwardAPI, projected; hostPath and
persistentVolumeClaim are checked for their required fields only): a volume
has a DNS label name given once and exactly one source; a volumeMount names a
declared volume and a unique mountPath; an env var's valueFrom has exactly
one source and no value beside it; an envFrom entry names a ConfigMap or a
Secret. Field paths and messages are upstream's. Pure functions over a
defaulted pod spec.
"""

from __future__ import annotations

import re

from controlplane.api.errors import FieldError, forbidden, invalid, not_supported, required
from controlplane.api.validation import is_dns1123_label, is_dns1123_subdomain, is_qualified_name
from controlplane.api.validation_config import config_key_errors

FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
ONE_TYPE = "may not specify more than 1 volume type"
# validateVolumeSource's order of sources (those svclab knows of)
SOURCES = ("emptyDir", "hostPath", "secret", "nfs", "persistentVolumeClaim", "downwardAPI",
           "configMap", "projected", "csi", "ephemeral", "image")
VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name",
                      "metadata.namespace", "metadata.uid")
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                   "spec.serviceAccountName", "status.hostIP", "status.hostIPs",
                   "status.podIP", "status.podIPs")
# Every label ConvertDownwardAPIFieldLabel knows for pods (v1); others do not convert.
CONVERTIBLE = VOLUME_FIELD_PATHS + ENV_FIELD_PATHS + (
    "spec.restartPolicy", "spec.schedulerName", "status.phase")
RESOURCE_FIELDS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory",
                   "requests.cpu", "requests.ephemeral-storage", "requests.memory")
ENV_NAME_MSG = ("a valid environment variable name must consist only of printable ASCII "
                "characters other than '='")


def _mode(value, path: str) -> list[FieldError]:
    if value is not None and (not isinstance(value, int) or not 0 <= value <= 0o777):
        return [invalid(value, path, FILE_MODE_MSG)]
    return []


def local_path_errors(value: str, path: str, reserved: bool = True) -> list[FieldError]:
    """validateLocalDescendingPath (+ ValidateLocalNonReservedPath when ``reserved``)."""
    errs = []
    if value.startswith("/"):
        errs.append(invalid(value, path, "must be a relative path"))
    if ".." in value.replace("\\", "/").split("/"):
        errs.append(invalid(value, path, "must not contain '..'"))
    elif reserved and value.startswith(".."):
        errs.append(invalid(value, path, "must not start with '..'"))
    return errs


def _key_to_path(item, path: str) -> list[FieldError]:
    if not isinstance(item, dict):
        return [invalid(item, path, "must be an object")]
    errs = []
    if not item.get("key"):
        errs.append(required(f"{path}.key"))
    if not item.get("path"):
        errs.append(required(f"{path}.path"))
    errs += local_path_errors(str(item.get("path") or ""), f"{path}.path")
    return errs + _mode(item.get("mode"), f"{path}.mode")


def _items(source: dict, path: str) -> list[FieldError]:
    return [e for i, item in enumerate(source.get("items") or [])
            for e in _key_to_path(item, f"{path}.items[{i}]")]


def field_selector_errors(ref, allowed: tuple[str, ...], path: str) -> list[FieldError]:
    """validateObjectFieldSelector (apiVersion already defaulted to v1)."""
    if not isinstance(ref, dict):
        return [invalid(ref, path, "must be an object")]
    if not ref.get("apiVersion"):
        return [required(f"{path}.apiVersion")]
    field_path = ref.get("fieldPath") or ""
    if not field_path:
        return [required(f"{path}.fieldPath")]
    match = re.fullmatch(r"([^\[]+)\['(.*)'\]", field_path)
    if ref["apiVersion"] != "v1":
        return [invalid(field_path, f"{path}.fieldPath", "error converting fieldPath: "
                        f"unsupported pod version: {ref['apiVersion']}")]
    if match:
        base, subscript = match.groups()
        if base not in ("metadata.annotations", "metadata.labels"):
            return [invalid(field_path, f"{path}.fieldPath", "error converting fieldPath: "
                            f"field label does not support subscript: {field_path}")]
        key = subscript.lower() if base == "metadata.annotations" else subscript
        return [invalid(key, path, m) for m in is_qualified_name(key)]
    if field_path not in CONVERTIBLE and field_path != "spec.host":
        return [invalid(field_path, f"{path}.fieldPath",
                        f"error converting fieldPath: field label not supported: {field_path}")]
    field_path = "spec.nodeName" if field_path == "spec.host" else field_path
    if field_path not in allowed:
        return [not_supported(field_path, f"{path}.fieldPath", allowed)]
    return []


def _resource_field(ref, path: str) -> list[FieldError]:
    if not isinstance(ref, dict) or not ref.get("resource"):
        return [required(f"{path}.resource")]
    if ref["resource"] not in RESOURCE_FIELDS and not ref["resource"].startswith(
            ("limits.hugepages-", "requests.hugepages-")):
        return [not_supported(ref["resource"], f"{path}.resource", RESOURCE_FIELDS)]
    return []


def _downward_file(item, path: str) -> list[FieldError]:
    """validateDownwardAPIVolumeFile; ``path`` is the source's (upstream adds no index)."""
    if not isinstance(item, dict):
        return [invalid(item, path, "must be an object")]
    errs = []
    if not item.get("path"):
        errs.append(required(f"{path}.path"))
    errs += local_path_errors(str(item.get("path") or ""), f"{path}.path")
    if item.get("fieldRef") is not None:
        errs += field_selector_errors(item["fieldRef"], VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if item.get("resourceFieldRef") is not None:
            errs.append(invalid("resource", path, "fieldRef and resourceFieldRef can not be "
                                                  "specified simultaneously"))
    elif item.get("resourceFieldRef") is not None:
        errs += _resource_field(item["resourceFieldRef"], f"{path}.resourceFieldRef")
    else:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    return errs + _mode(item.get("mode"), f"{path}.mode")


def _projected(source: dict, path: str) -> list[FieldError]:
    errs = _mode(source.get("defaultMode"), f"{path}.defaultMode")
    seen: set[str] = set()

    def once(item_path: str, value: str) -> None:
        if item_path in seen:
            errs.append(invalid(value, path, "conflicting duplicate paths"))
        seen.add(item_path)

    for i, src in enumerate(source.get("sources") or []):
        spath = f"{path}.sources[{i}]"
        if not isinstance(src, dict):
            errs.append(invalid(src, spath, "must be an object"))
            continue
        kinds = [k for k in ("secret", "configMap", "downwardAPI", "serviceAccountToken",
                             "clusterTrustBundle", "podCertificate") if src.get(k) is not None]
        for kind in ("secret", "configMap"):
            ref = src.get(kind)
            if isinstance(ref, dict):
                if not ref.get("name"):
                    errs.append(required(f"{spath}.{kind}.name"))
                for j, item in enumerate(ref.get("items") or []):
                    errs += _key_to_path(item, f"{spath}.{kind}.items[{j}]")
                    if isinstance(item, dict) and item.get("path"):
                        once(item["path"], ref.get("name", ""))
        api = src.get("downwardAPI")
        if isinstance(api, dict):
            for item in api.get("items") or []:
                errs += _downward_file(item, f"{spath}.downwardAPI")
                if isinstance(item, dict) and item.get("path"):
                    once(item["path"], item["path"])
        token = src.get("serviceAccountToken")
        if isinstance(token, dict):
            seconds = token.get("expirationSeconds", 3600)
            if isinstance(seconds, int) and seconds < 600:
                errs.append(invalid(seconds, f"{spath}.serviceAccountToken.expirationSeconds",
                                    "may not specify a duration less than 10 minutes"))
            elif isinstance(seconds, int) and seconds > 1 << 32:
                errs.append(invalid(seconds, f"{spath}.serviceAccountToken.expirationSeconds",
                                    "may not specify a duration larger than 2^32 seconds"))
            if not token.get("path"):
                errs.append(required(f"{path}.path"))
            else:
                errs += local_path_errors(token["path"], f"{path}.path")
                once(token["path"], token["path"])
        if len(kinds) > 1:
            errs.append(forbidden(spath, "may not specify more than 1 volume type per source"))
    return errs


def _source_errors(vol: dict, path: str) -> list[FieldError]:
    """validateVolumeSource: exactly one source, and that source's own rules."""
    errs, count = [], 0
    for kind in SOURCES:
        source = vol.get(kind)
        if source is None:
            continue
        if count:
            errs.append(forbidden(f"{path}.{kind}", ONE_TYPE))
            continue
        count += 1
        spath = f"{path}.{kind}"
        if not isinstance(source, dict):
            errs.append(invalid(source, spath, "must be an object"))
        elif kind in ("secret", "configMap"):
            name_key = "secretName" if kind == "secret" else "name"
            if not source.get(name_key):
                errs.append(required(f"{spath}.{name_key}"))
            errs += _mode(source.get("defaultMode"), f"{spath}.defaultMode") + _items(source, spath)
        elif kind == "downwardAPI":
            errs += _mode(source.get("defaultMode"), f"{spath}.defaultMode")
            for item in source.get("items") or []:
                errs += _downward_file(item, spath)
        elif kind == "projected":
            errs += _projected(source, spath)
        elif kind == "hostPath" and not source.get("path"):
            errs.append(required(f"{spath}.path"))
        elif kind == "persistentVolumeClaim" and not source.get("claimName"):
            errs.append(required(f"{spath}.claimName"))
    if not count:
        errs.append(required(path, "must specify a volume type"))
    return errs


def validate_volumes(volumes, path: str) -> tuple[set[str], list[FieldError]]:
    """ValidateVolumes: the names of the valid volumes, and the errors."""
    if volumes is None:
        return set(), []
    if not isinstance(volumes, list):
        return set(), [invalid(volumes, path, "must be a list")]
    names: set[str] = set()
    errs: list[FieldError] = []
    for i, vol in enumerate(volumes):
        vpath = f"{path}[{i}]"
        if not isinstance(vol, dict):
            errs.append(invalid(vol, vpath, "must be an object"))
            continue
        own = _source_errors(vol, vpath)
        name = vol.get("name") or ""
        if not name:
            own.append(required(f"{vpath}.name"))
        else:
            own += [invalid(name, f"{vpath}.name", m) for m in is_dns1123_label(str(name))]
        if name in names:
            own.append(FieldError("Duplicate", f"{vpath}.name", name))
        if own:
            errs += own
        else:
            names.add(name)
    return names, errs


def validate_volume_mounts(mounts, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, mount in enumerate(mounts or []):
        mpath = f"{path}[{i}]"
        if not isinstance(mount, dict):
            errs.append(invalid(mount, mpath, "must be an object"))
            continue
        name, target = mount.get("name") or "", mount.get("mountPath") or ""
        if not name:
            errs.append(required(f"{mpath}.name"))
        if name not in volumes:
            errs.append(FieldError("NotFound", f"{mpath}.name", name))
        if not target:
            errs.append(required(f"{mpath}.mountPath"))
        if target in seen:
            errs.append(invalid(target, f"{mpath}.mountPath", "must be unique"))
        seen.add(target)
        if mount.get("subPath"):
            errs += local_path_errors(mount["subPath"], f"{path}.subPath", reserved=False)
        if mount.get("subPathExpr"):
            if mount.get("subPath"):
                errs.append(invalid(mount["subPathExpr"], f"{mpath}.subPathExpr",
                                    "subPathExpr and subPath are mutually exclusive"))
            errs += local_path_errors(mount["subPathExpr"], f"{path}.subPathExpr",
                                      reserved=False)
    return errs


def _env_name_errors(name: str, path: str) -> list[FieldError]:
    if any(not 32 <= ord(c) <= 126 or c == "=" for c in name):
        return [invalid(name, path, ENV_NAME_MSG)]
    return []


def _key_selector(ref, path: str) -> list[FieldError]:
    if not isinstance(ref, dict):
        return [invalid(ref, path, "must be an object")]
    name = str(ref.get("name") or "")
    errs = [invalid(name, f"{path}.name", m) for m in is_dns1123_subdomain(name)]
    key = ref.get("key") or ""
    if not key:
        errs.append(required(f"{path}.key"))
    else:
        errs += [invalid(key, f"{path}.key", m) for m in config_key_errors(str(key))]
    return errs


def validate_env(env, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env or []):
        vpath = f"{path}[{i}]"
        if not isinstance(var, dict):
            errs.append(invalid(var, vpath, "must be an object"))
            continue
        if not var.get("name"):
            errs.append(required(f"{vpath}.name"))
        else:
            errs += _env_name_errors(str(var["name"]), f"{vpath}.name")
        value_from = var.get("valueFrom")
        if value_from is None:
            continue
        fpath = f"{vpath}.valueFrom"
        if not isinstance(value_from, dict):
            errs.append(invalid(value_from, fpath, "must be an object"))
            continue
        sources = 0
        if value_from.get("fieldRef") is not None:
            sources += 1
            errs += field_selector_errors(value_from["fieldRef"], ENV_FIELD_PATHS,
                                          f"{fpath}.fieldRef")
        if value_from.get("resourceFieldRef") is not None:
            sources += 1
            errs += _resource_field(value_from["resourceFieldRef"], f"{fpath}.resourceFieldRef")
        for kind in ("configMapKeyRef", "secretKeyRef"):
            if value_from.get(kind) is not None:
                sources += 1
                errs += _key_selector(value_from[kind], f"{fpath}.{kind}")
        if not sources:
            errs.append(invalid("", fpath, "must specify one of: `fieldRef`, "
                                "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        elif var.get("value"):
            errs.append(invalid("", fpath, "may not be specified when `value` is not empty"))
        elif sources > 1:
            errs.append(invalid("", fpath, "may not have more than one field specified at a time"))
    return errs


def validate_env_from(env_from, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, source in enumerate(env_from or []):
        spath = f"{path}[{i}]"
        if not isinstance(source, dict):
            errs.append(invalid(source, spath, "must be an object"))
            continue
        if source.get("prefix"):
            errs += _env_name_errors(str(source["prefix"]), f"{spath}.prefix")
        kinds = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        for kind in kinds:
            ref = source[kind]
            name = str((ref or {}).get("name") or "") if isinstance(ref, dict) else ""
            if not name:
                errs.append(required(f"{spath}.{kind}.name"))
            else:
                errs += [invalid(name, f"{spath}.{kind}.name", m)
                         for m in is_dns1123_subdomain(name)]
        if not kinds:
            errs.append(invalid("", path, "must specify one of: `configMapRef` or `secretRef`"))
        elif len(kinds) > 1:
            errs.append(invalid("", path, "may not have more than one field specified at a time"))
    return errs
