"""ConfigMaps and Secrets: decoding their byte maps, validation, and immutability.

A Secret's ``data`` and a ConfigMap's ``binaryData`` are ``[]byte`` in the Go
types, so the apiserver's JSON decoder rejects a value that is not base64
before validation runs: 400 BadRequest, ``Secret in version "v1" cannot be
handled as a Secret: illegal base64 data at input byte N`` (N as Go's
encoding/base64 reports it). Decoding also makes the stored text canonical
and folds a Secret's write-only ``stringData`` into ``data`` (as the v1 to
internal conversion does). Validation then follows ValidateConfigMap and
ValidateSecret in pkg/apis/core/validation: keys are config keys, a key may
not be in both data and binaryData, the total size is at most 1 MiB, each
built-in Secret type has its required keys, and ``immutable: true`` freezes
the contents (and a Secret's type is never changed).
"""

from __future__ import annotations

import base64
import json
import re

from base.jsoncopy import json_copy
from controlplane.api.errors import FieldError, StatusError, forbidden, invalid, required
from controlplane.api.validation import max_len_error, regex_error, validate_metadata

MAX_SIZE = 1024 * 1024          # core.MaxSecretSize, for Secrets and ConfigMaps alike
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
IMMUTABLE_MSG = "field is immutable when `immutable` is set"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# type -> keys that must be present in data (Opaque and unknown types: none)
REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
}


def config_key_errors(key: str) -> list[str]:
    """IsConfigMapKey: the key is a file name in a volume, so no '.' or '..' prefixes."""
    errs = []
    if len(key) > 253:
        errs.append(max_len_error(253))
    if not re.fullmatch(CONFIG_KEY_FMT, key):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, "
                                "'-', '_' or '.'", CONFIG_KEY_FMT, "key.name", "KEY_NAME",
                                "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _corrupt(at: int) -> ValueError:
    return ValueError(f"illegal base64 data at input byte {at}")


def go_b64decode(text: str) -> bytes:
    """Decode standard padded base64 as Go's base64.StdEncoding does: CR and LF are
    skipped, and an error names the input byte Go's decoder would name."""
    src = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    si = 0
    while si < len(src):
        quantum: list[int] = []
        done = False
        while len(quantum) < 4:
            if si == len(src):
                if not quantum:
                    return bytes(out)
                raise _corrupt(si - len(quantum))
            ch = src[si]
            si += 1
            if ch in (10, 13):
                continue
            if chr(ch) in _B64:
                quantum.append(_B64.index(chr(ch)))
                continue
            if ch != ord("="):
                raise _corrupt(si - 1)
            if len(quantum) < 2:
                raise _corrupt(si - 1)
            if len(quantum) == 2:       # a second '=' must follow
                while si < len(src) and src[si] in (10, 13):
                    si += 1
                if si == len(src):
                    raise _corrupt(len(src))
                if src[si] != ord("="):
                    raise _corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in (10, 13):
                si += 1
            if si < len(src):
                raise _corrupt(si)
            done = True
            break
        value = 0
        for q in quantum + [0] * (4 - len(quantum)):
            value = value << 6 | q
        out += value.to_bytes(3, "big")[:max(len(quantum) - 1, 0)]
        if done:
            break
    return bytes(out)


def _undecodable(kind: str, message: str) -> StatusError:
    return StatusError(400, "BadRequest",
                       f'{kind} in version "v1" cannot be handled as a {kind}: {message}')


def _string_map(obj: dict, kind: str, key: str) -> dict:
    """A map[string]string field, or the decoder's 400."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _undecodable(kind, f"json: cannot unmarshal {_json_type(value)} into Go struct "
                                 f"field {kind}.{key} of type map[string]string")
    for item in value.values():
        if not isinstance(item, str):
            raise _undecodable(kind, f"json: cannot unmarshal {_json_type(item)} into Go struct "
                                     f"field {kind}.{key} of type string")
    return value


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _bytes_map(obj: dict, kind: str, key: str) -> dict[str, bytes]:
    """A map[string][]byte field decoded, or the decoder's 400."""
    values = obj.get(key)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise _undecodable(kind, f"json: cannot unmarshal {_json_type(values)} into Go struct "
                                 f"field {kind}.{key} of type map[string][]uint8")
    out = {}
    for name, text in values.items():
        if not isinstance(text, str):
            raise _undecodable(kind, f"json: cannot unmarshal {_json_type(text)} into Go struct "
                                     f"field {kind}.{key} of type []uint8")
        try:
            out[name] = go_b64decode(text)
        except ValueError as exc:
            raise _undecodable(kind, str(exc)) from exc
    return out


def _encode(values: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in values.items()}


def decode_configmap(obj: dict) -> dict:
    """The ConfigMap as the decoder leaves it: binaryData canonical base64, or a 400."""
    obj = json_copy(obj)
    _string_map(obj, "ConfigMap", "data")
    if "binaryData" in obj:
        obj["binaryData"] = _encode(_bytes_map(obj, "ConfigMap", "binaryData"))
    return obj


def decode_secret(obj: dict) -> dict:
    """The Secret as the decoder leaves it: data canonical base64 with stringData merged
    in (stringData wins) and dropped, type Opaque by default; or a 400."""
    obj = json_copy(obj)
    data = _bytes_map(obj, "Secret", "data")
    for key, text in _string_map(obj, "Secret", "stringData").items():
        data[key] = text.encode()
    obj.pop("stringData", None)
    if data or "data" in obj:
        obj["data"] = _encode(data)
    if not obj.get("type"):
        obj["type"] = "Opaque"
    return obj


def _size(values: dict, binary: bool) -> int:
    if binary:
        return sum(len(base64.b64decode(v)) for v in values.values())
    return sum(len(v.encode()) for v in values.values())


def validate_configmap(cm: dict) -> list[FieldError]:
    errs = validate_metadata(cm, "subdomain", True)
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    for key in sorted(data):
        errs += [invalid(key, f"data[{key}]", m) for m in config_key_errors(key)]
        if key in binary:
            errs.append(invalid(key, f"data[{key}]", "duplicate of key present in binaryData"))
    for key in sorted(binary):
        errs += [invalid(key, f"binaryData[{key}]", m) for m in config_key_errors(key)]
    if _size(data, False) + _size(binary, True) > MAX_SIZE:
        errs.append(FieldError("TooLong", "", None, f"may not be more than {MAX_SIZE} bytes"))
    errs += _immutable_flag(cm)
    return errs


def _immutable_flag(obj: dict) -> list[FieldError]:
    flag = obj.get("immutable")
    if flag is not None and not isinstance(flag, bool):
        return [invalid(flag, "immutable", "must be a boolean")]
    return []


def validate_configmap_update(new: dict, old: dict) -> list[FieldError]:
    if old.get("immutable") is not True:
        return []
    errs = []
    if new.get("immutable") is not True:
        errs.append(forbidden("immutable", IMMUTABLE_MSG))
    for key in ("data", "binaryData"):
        if (new.get(key) or {}) != (old.get(key) or {}):
            errs.append(forbidden(key, IMMUTABLE_MSG))
    return errs


def _docker_json(data: dict, key: str) -> list[FieldError]:
    try:
        json.loads(base64.b64decode(data[key]))
    except ValueError as exc:
        return [invalid("<secret contents redacted>", f"data[{key}]", str(exc))]
    return []


def validate_secret(secret: dict) -> list[FieldError]:
    errs = validate_metadata(secret, "subdomain", True)
    data = secret.get("data") or {}
    for key in sorted(data):
        errs += [invalid(key, f"data[{key}]", m) for m in config_key_errors(key)]
    if _size(data, True) > MAX_SIZE:
        errs.append(FieldError("TooLong", "data", None, f"may not be more than {MAX_SIZE} bytes"))
    stype = secret.get("type", "")
    if stype == "kubernetes.io/service-account-token":
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not annotations.get(SA_NAME_ANNOTATION):
            errs.append(required(f"metadata.annotations[{SA_NAME_ANNOTATION}]"))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs += [required("data[username]"), required("data[password]")]
    elif stype in REQUIRED_KEYS:
        missing = [k for k in REQUIRED_KEYS[stype] if k not in data]
        if stype == "kubernetes.io/ssh-auth" and not missing and not data["ssh-privatekey"]:
            missing = ["ssh-privatekey"]
        errs += [required(f"data[{k}]") for k in missing]
        if stype.startswith("kubernetes.io/docker") and not missing:
            errs += _docker_json(data, REQUIRED_KEYS[stype][0])
    errs += _immutable_flag(secret)
    return errs


def validate_secret_update(new: dict, old: dict) -> list[FieldError]:
    errs = []
    if new.get("type") != old.get("type"):
        errs.append(invalid(new.get("type"), "type", "field is immutable"))
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            errs.append(forbidden("immutable", IMMUTABLE_MSG))
        if (new.get("data") or {}) != (old.get("data") or {}):
            errs.append(forbidden("data", IMMUTABLE_MSG))
    return errs
