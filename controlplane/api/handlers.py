"""REST routing and verbs: turns one HTTP request into a response or a watch stream.

Independent of the HTTP server: it receives a :class:`Request` and returns a
:class:`Response` or a :class:`Stream` — or, for the pods' streaming
subresources (:mod:`controlplane.api.streams`), an ``Upgrade`` to run on the
raw connection or a ``ByteStream`` of log text; ``server.py`` does the socket
work.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qs, urlsplit

import yaml

from controlplane.api import discovery, errors, owners, protobuf, tables
from controlplane.api.rbac import reviews
from controlplane.api.rbac.attributes import UserInfo
from controlplane.api.registry import Registry
from controlplane.api.resources import ResourceType, lookup
from controlplane.api.selectors import (
    parse_field_selector,
    parse_label_selector,
)
from controlplane.api.streams.routes import (
    SUBRESOURCES,
    ByteStream,
    PodStreamRoutes,
    StreamRequest,
    Upgrade,
)
from controlplane.api.strict import check_strict, check_strict_apply
from controlplane.api.watch import IDLE, WatchRequest, watch_events

DEFAULT_WATCH_TIMEOUT = 1800.0
RETURN_DELETED_OBJECT = ("services", "pods")   # as the real registries do; others answer a Status
RBAC_KINDS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")


@dataclass(frozen=True)
class Request:
    method: str
    target: str                       # path?query as sent
    headers: dict                     # lower-case names
    body: bytes = b""
    user: UserInfo | None = None      # who the request acts for (after impersonation)

    @cached_property
    def path(self) -> str:
        return urlsplit(self.target).path.rstrip("/") or "/"

    @cached_property
    def query(self) -> dict[str, str]:
        return {k: v[-1]
                for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}


@dataclass(frozen=True)
class Response:
    code: int
    body: dict | str
    content_type: str = "application/json"


@dataclass
class Stream:
    """A watch: ``events`` yields JSON-ready WatchEvent dicts, and None when the
    next one will take a while (the writer flushes then)."""

    events: Iterator[dict]
    content_type: str = "application/json"
    closers: list = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None        # None: all namespaces (or cluster scoped)
    name: str = ""
    subresource: str = ""


def _route(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    rt = lookup(group, version, rest[0])
    if rt is None:
        return None
    if rt.namespaced and namespace is None and len(rest) > 1:
        return None
    if not rt.namespaced and namespace is not None:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        return None
    return Route(rt, namespace, name, sub)


def _wants_table(headers: dict) -> bool:
    return "as=Table" in headers.get("accept", "")


def decode_body(request: Request) -> dict:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode_object(request.body)
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            return yaml.safe_load(request.body.decode()) or {}
        if ctype == "application/json" or ctype == "":
            return json.loads(request.body.decode() or "{}")
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"error decoding request body: {exc}") from exc
    raise errors.unsupported_media_type(ctype)


def _grace_period(request: Request) -> int | None:
    """DeleteOptions.gracePeriodSeconds, from the query or the request body."""
    value = request.query.get("gracePeriodSeconds")
    if value is None and request.body:
        options = decode_body(request)
        value = options.get("gracePeriodSeconds") if isinstance(options, dict) else None
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise errors.bad_request(f"gracePeriodSeconds must be an integer, got {value!r}") from exc


def _propagation_policy(request: Request) -> str:
    """DeleteOptions.propagationPolicy (or orphanDependents), from the query or the body."""
    options = decode_body(request) if request.body else None
    try:
        return owners.propagation_policy(request.query, options)
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from exc


class Api:
    """Dispatches requests against one :class:`Registry`."""

    def __init__(self, registry: Registry, server_address: str,
                 stopped: Callable[[], bool]) -> None:
        self.registry = registry
        self.server_address = server_address
        self.stopped = stopped
        self.streams = PodStreamRoutes(registry, stopped)
        self.tokens = None      # a ServiceAccountTokens (serviceaccounts/token), set by the server
        self.rbac = None        # a rbac.gate.RequestGate (reviews, escalation), set by the server

    def dispatch(self, request: Request) -> Response | Stream | Upgrade | ByteStream:
        try:
            return self._dispatch(request)
        except errors.StatusError as exc:
            return Response(exc.code, exc.to_status())

    def _dispatch(self, request: Request) -> Response | Stream | Upgrade | ByteStream:
        path = request.path
        if request.method == "GET":
            static = self._static(path)
            if static is not None:
                return static
        route = _route(path)
        if route is None:
            raise errors.path_not_found(path)
        if route.rt.virtual:
            return self._review(request, route)
        if route.rt.plural == "pods" and route.subresource in SUBRESOURCES:
            return self.streams.serve(StreamRequest(request.method, request.target,
                                                    request.headers, route.namespace or "",
                                                    route.name, route.subresource))
        handler = getattr(self, "_" + request.method.lower(), None)
        if handler is None:
            raise errors.method_not_allowed()
        return handler(request, route)

    # ---- discovery ------------------------------------------------------
    def _static(self, path: str) -> Response | None:
        if path == "/version":
            return Response(200, discovery.version_info())
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, "ok", "text/plain")
        if path == "/api":
            return Response(200, discovery.api_versions(self.server_address))
        if path == "/apis":
            return Response(200, discovery.api_group_list())
        if path == "/openapi/v3":
            return Response(200, discovery.openapi_v3_index())
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["openapi", "v3"]:
            gv = parts[2:]
            doc = None
            if gv[:1] == ["api"] and len(gv) == 2:
                doc = discovery.openapi_v3_document("", gv[1])
            elif gv[:1] == ["apis"] and len(gv) == 3:
                doc = discovery.openapi_v3_document(gv[1], gv[2])
            if doc is None:
                raise errors.path_not_found(path)
            return Response(200, doc)
        if parts == ["api", "v1"]:
            return Response(200, discovery.api_resource_list("", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            group = discovery.api_group(parts[1])
            if group is None:
                raise errors.path_not_found(path)
            return Response(200, group)
        if len(parts) == 3 and parts[0] == "apis":
            doc = discovery.api_resource_list(parts[1], parts[2])
            if doc is None:
                raise errors.path_not_found(path)
            return Response(200, doc)
        return None

    # ---- reviews (authorization.k8s.io, authentication.k8s.io) ------------
    def _review(self, request: Request, route: Route) -> Response:
        if request.method != "POST" or route.name or self.rbac is None:
            raise errors.method_not_allowed()
        user = request.user or UserInfo("system:anonymous", ("system:unauthenticated",))
        return Response(201, reviews.review(self.rbac.authorizer, user, route.rt.plural,
                                            decode_body(request)))

    def _check_rbac_write(self, request: Request, route: Route, obj) -> None:
        """The escalation check of Role/ClusterRole/binding writes (rbac/escalation.py)."""
        if self.rbac is None or not isinstance(obj, dict):
            return
        obj = {**obj, "metadata": {**(obj.get("metadata") or {}),
                                   "namespace": route.namespace or ""}}
        if route.name:
            obj["metadata"]["name"] = route.name
        self.rbac.check_write(request.user, route.rt.plural, obj)

    # ---- reads ----------------------------------------------------------
    def _get(self, request: Request, route: Route) -> Response | Stream:
        q = request.query
        if not route.name:
            if q.get("watch") in ("true", "1"):
                return self._watch(request, route)
            return self._list(request, route)
        ns = route.namespace or ""
        obj = self.registry.get(route.rt, ns, route.name)
        if route.subresource == "scale":
            return Response(200, self.registry.scale_of(obj))
        if _wants_table(request.headers):
            return Response(200, tables.to_table(route.rt.plural, [obj],
                                                 obj["metadata"]["resourceVersion"],
                                                 q.get("includeObject", "Metadata")))
        return Response(200, obj)

    def _selected(self, request: Request, route: Route) -> tuple[list[dict], int]:
        q = request.query
        return self.registry.list(route.rt, route.namespace,
                                  parse_label_selector(q.get("labelSelector")),
                                  parse_field_selector(q.get("fieldSelector")))

    def _list(self, request: Request, route: Route) -> Response:
        items, rv = self._selected(request, route)
        if _wants_table(request.headers):
            return Response(200, tables.to_table(route.rt.plural, items, str(rv),
                                                 request.query.get("includeObject", "Metadata")))
        return Response(200, {"kind": route.rt.list_kind, "apiVersion": route.rt.api_version,
                              "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _watch(self, request: Request, route: Route) -> Stream:
        q = request.query
        watch = WatchRequest(route.rt, route.namespace,
                             parse_label_selector(q.get("labelSelector")),
                             self.registry.field_selector(
                                 route.rt, parse_field_selector(q.get("fieldSelector"))),
                             q.get("resourceVersion", ""),
                             q.get("sendInitialEvents") == "true",
                             q.get("allowWatchBookmarks") == "true",
                             float(q.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT))
        as_table = _wants_table(request.headers)
        include = q.get("includeObject", "Metadata")
        events = watch_events(self.registry.store, watch, self.stopped,  # may raise 410
                              mark_idle=True)
        view = self.registry.view
        return Stream(None if item is IDLE else
                      self._event(route.rt, (item[0], item[1] if item[0] == "BOOKMARK"
                                             else view(route.rt, item[1])), as_table, include)
                      for item in events)

    @staticmethod
    def _event(rt: ResourceType, item: tuple[str, dict], as_table: bool, include: str) -> dict:
        kind, obj = item
        if as_table and kind != "BOOKMARK":
            obj = tables.to_table(rt.plural, [obj], obj["metadata"].get("resourceVersion", ""),
                                  include)
        return {"type": kind, "object": obj}

    # ---- writes ---------------------------------------------------------
    @staticmethod
    def _dry_run(request: Request) -> bool:
        return request.query.get("dryRun") == "All"

    @staticmethod
    def _body(request: Request, route: Route) -> dict:
        body = decode_body(request)
        if request.query.get("fieldValidation") == "Strict" and isinstance(body, dict) \
                and route.subresource not in ("scale", "status"):
            check_strict(body, route.rt.kind, route.rt.api_version)
        return body

    def _post(self, request: Request, route: Route) -> Response:
        if route.subresource == "token" and self.tokens is not None:   # not stored: tokens.py
            return Response(201, self.tokens.token_request(route.namespace or "", route.name,
                                                           decode_body(request)))
        if route.name:
            raise errors.method_not_allowed()
        if route.rt.namespaced and route.namespace is None:
            raise errors.method_not_allowed("POST requires a namespace for namespaced resources")
        body = self._body(request, route)
        self._check_rbac_write(request, route, body)
        obj = self.registry.create(route.rt, route.namespace or "", body, self._dry_run(request))
        return Response(201, obj)

    def _put(self, request: Request, route: Route) -> Response:
        if not route.name:
            raise errors.method_not_allowed()
        body = self._body(request, route)
        self._check_rbac_write(request, route, body)
        if route.subresource == "scale":
            return Response(200, self.registry.update_scale(route.rt, route.namespace or "",
                                                            route.name, body,
                                                            self._dry_run(request)))
        return Response(200, self.registry.update(route.rt, route.namespace or "", route.name,
                                                  body, route.subresource,
                                                  self._dry_run(request)))

    def _patch(self, request: Request, route: Route) -> Response:
        if not route.name:
            raise errors.method_not_allowed()
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if (ctype == "application/apply-patch+yaml"
                and request.query.get("fieldValidation") == "Strict"):
            applied = decode_body(request)
            if isinstance(applied, dict):
                check_strict_apply(applied, route.rt.kind, route.rt.api_version,
                                   route.namespace or "", route.name)
        existed = self.registry.store.contains(route.rt.plural, route.namespace or "", route.name)
        if self.rbac is not None and route.rt.plural in RBAC_KINDS:   # check the result
            self._check_rbac_write(request, route, self.registry.patch(
                route.rt, route.namespace or "", route.name, ctype, request.body,
                route.subresource, True))
        obj = self.registry.patch(route.rt, route.namespace or "", route.name, ctype, request.body,
                                  route.subresource, self._dry_run(request))
        return Response(200 if existed else 201, obj)

    def _delete(self, request: Request, route: Route) -> Response:
        dry = self._dry_run(request)
        grace = _grace_period(request)
        policy = _propagation_policy(request)
        if not route.name:
            items, _ = self._selected(request, route)
            gone = [self.registry.delete(route.rt, o["metadata"].get("namespace", ""),
                                         o["metadata"]["name"], dry, grace, policy)
                    for o in items]
            return Response(200, {"kind": route.rt.list_kind, "apiVersion": route.rt.api_version,
                                  "metadata": {}, "items": gone})
        gone = self.registry.delete(route.rt, route.namespace or "", route.name, dry, grace,
                                    policy)
        if route.rt.plural in RETURN_DELETED_OBJECT:
            return Response(200, gone)
        details = {"name": route.name, "kind": route.rt.plural,
                   "uid": gone["metadata"].get("uid", "")}
        if route.rt.group:
            details["group"] = route.rt.group
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "details": details})
