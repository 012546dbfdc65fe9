"""Request attributes, derived from the URL the way kube-apiserver's RequestInfoFactory does.

The verb comes from the method: GET/HEAD ``get`` on an object, ``list`` on a
collection, ``watch`` with ``?watch=true`` or the legacy ``/watch/`` prefix;
POST ``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete`` on an
object and ``deletecollection`` on a collection. A list or watch with the field
selector ``metadata.name=X`` carries the name X (so ``resourceNames`` rules can
allow it). Paths that are not ``/api/v1/...`` or ``/apis/G/V/...`` resources
(``/healthz``, ``/version``, ``/api``, ``/apis/apps/v1``, ``/openapi/v3``) are
non-resource requests whose verb is the lower-case method.

Connect subresources keep the method's verb: ``kubectl exec`` over SPDY is a
POST (``create`` on ``pods/exec``); over WebSocket it is a GET (``get``), and
since Kubernetes 1.35 (AuthorizePodWebsocketUpgradeCreatePermission, on by
default) the upgrade must be allowed ``create`` as well: :func:`websocket_create`
gives that second check's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs, unquote, urlsplit

METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete"}
NAMESPACE_SUBRESOURCES = ("status", "finalize")
CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """authorizer.AttributesRecord: who asks to do what."""

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def authenticated(name: str, groups: tuple[str, ...], uid: str = "",
                  extra: tuple = ()) -> UserInfo:
    """The user as the authenticator hands it on: every authenticated user is also in
    ``system:authenticated`` (kube-apiserver's group adder)."""
    if "system:authenticated" not in groups:
        groups = (*groups, "system:authenticated")
    return UserInfo(name, tuple(groups), uid, tuple(extra))


def _valid_segment(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


def request_attributes(user: UserInfo, method: str, target: str) -> Attributes:
    """RequestInfoFactory.NewRequestInfo plus the user: the attributes to authorize."""
    split = urlsplit(target)
    path = split.path
    parts = [p for p in path.strip("/").split("/") if p]
    verb = method.lower()
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return Attributes(user, verb, False, path=path or "/")
    prefix, rest = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(rest) < 3:
            return Attributes(user, verb, False, path=path)
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    if rest and rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    else:
        verb = METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = unquote(rest[1]) if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        query = parse_qs(split.query)
        verb = "watch" if query.get("watch", [""])[-1] in ("true", "1") else "list"
        name = _name_from_field_selector(query.get("fieldSelector", [""])[-1])
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(user, verb, True, group, version, resource, subresource, namespace, name,
                      path)


def _name_from_field_selector(selector: str) -> str:
    """RequiresExactMatch("metadata.name") of a field selector."""
    for term in selector.split(","):
        key, op, value = _split_term(term)
        if key == "metadata.name" and op in ("=", "==") and _valid_segment(value) and value:
            return value
    return ""


def _split_term(term: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        key, sep, value = term.partition(op)
        if sep:
            return key.strip(), op, value.strip()
    return term, "", ""


def websocket_create(attrs: Attributes, headers: dict) -> Attributes | None:
    """The second check of a WebSocket upgrade to pods/exec|attach|portforward: ``create``."""
    if (attrs.resource_request and attrs.verb == "get" and attrs.resource == "pods"
            and attrs.subresource in CONNECT_SUBRESOURCES
            and "websocket" in headers.get("upgrade", "").lower()):
        return replace(attrs, verb="create")
    return None
