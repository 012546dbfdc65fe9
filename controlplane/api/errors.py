"""Kubernetes-style errors: typed exceptions that render as ``Status`` objects.

Validation code returns lists of :class:`FieldError`; handlers raise
:class:`StatusError`; the HTTP layer turns it into the JSON ``Status`` that
kubectl prints as ``Error from server (Reason): message``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from base.errors import SvclabError


class ApiServerError(SvclabError):
    """Base class of every error the API server raises (its clients get ApiError,
    base.kube.client's, from the Status it answers)."""


class StatusError(ApiServerError):
    """An error that is answered to the client as a Kubernetes ``Status``."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Failure", "message": self.message,
                  "reason": self.reason, "code": self.code}
        if self.details:
            status["details"] = self.details
        return status


class GoRaw(str):
    """A value already rendered the way Go's %#v would print it."""


def go_value(value: Any) -> str:
    """Render a value roughly like Go's ``%#v`` as Kubernetes' field errors do."""
    if isinstance(value, GoRaw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_TYPE_TEXT = {
    "Invalid": ("Invalid value", "FieldValueInvalid"),
    "Required": ("Required value", "FieldValueRequired"),
    "NotSupported": ("Unsupported value", "FieldValueNotSupported"),
    "Duplicate": ("Duplicate value", "FieldValueDuplicate"),
    "Forbidden": ("Forbidden", "FieldValueForbidden"),
    "TooLong": ("Too long", "FieldValueTooLong"),
    "NotFound": ("Not found", "FieldValueNotFound"),
}
_VALUELESS = {"Required", "Forbidden", "TooLong"}


@dataclass(frozen=True)
class FieldError:
    """One validation failure, like ``field.Error`` in apimachinery."""

    kind: str          # Invalid, Required, NotSupported, Duplicate, Forbidden, TooLong
    field: str         # e.g. spec.ports[0].nodePort
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        text = _TYPE_TEXT[self.kind][0]
        if self.kind not in _VALUELESS:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict:
        return {"reason": _TYPE_TEXT[self.kind][1], "message": self.body(),
                "field": self.field}


def invalid(value, field, detail="") -> FieldError:
    return FieldError("Invalid", field, value, detail)


def required(field, detail="") -> FieldError:
    return FieldError("Required", field, None, detail)


def not_supported(value, field, allowed) -> FieldError:
    listed = ", ".join(json.dumps(a) for a in sorted(allowed))
    return FieldError("NotSupported", field, value, f"supported values: {listed}")


def duplicate(value, field) -> FieldError:
    return FieldError("Duplicate", field, value)


def forbidden(field, detail) -> FieldError:
    return FieldError("Forbidden", field, None, detail)


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    """422 Invalid, message formatted as ``errors.NewInvalid`` does: the kind
    qualified by its group (``Deployment.apps "web" is invalid: ...``); kubectl
    prints ``The Deployment "web" is invalid`` from the details."""
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    details = {"name": name, "kind": kind, "causes": [e.cause() for e in errors]}
    if group:
        details["group"] = group
    return StatusError(422, "Invalid", f'{qualified(kind, group)} "{name}" is invalid: {joined}',
                       details)


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return StatusError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found', details)


def already_exists(resource: str, group: str, name: str) -> StatusError:
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return StatusError(409, "AlreadyExists",
                       f'{qualified(resource, group)} "{name}" already exists', details)


def conflict(resource: str, group: str, name: str) -> StatusError:
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": '
        "the object has been modified; "
        "please apply your changes to the latest version and try again",
        details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden_request(resource: str, name: str, message: str) -> StatusError:
    return StatusError(403, "Forbidden", f'{resource} "{name}" is forbidden: {message}',
                       {"name": name, "kind": resource})


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str = "the server does not allow this method "
                                      "on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - '
                       f'accepted media types include: '
                       f'application/json, application/yaml, application/vnd.kubernetes.protobuf '
                       f'(got {content_type!r})')


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def path_not_found(path: str) -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource",
                       {"causes": [{"reason": "UnexpectedServerResponse",
                                    "message": f"404 page not found: {path}"}]})
