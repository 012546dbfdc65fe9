"""A small Kubernetes REST client for svclab's own controllers and agents.

Agents learn state only through the API, like kube-proxy and the kubelet.
This client speaks just what they need — get, list, create, update, patch,
delete and watch on the resources svclab serves — over HTTPS with the lab's
CA and a bearer token or client certificate from a kubeconfig.  Errors come
back as ApiError carrying the HTTP status and the server's Status message.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import yaml

from base.errors import SvclabError
from base.kube.transport import Connection, Pool

# resource -> (API prefix, namespaced)
RESOURCES = {
    "namespaces": ("/api/v1", False),
    "nodes": ("/api/v1", False),
    "pods": ("/api/v1", True),
    "services": ("/api/v1", True),
    "endpoints": ("/api/v1", True),
    "events": ("/api/v1", True),
    "serviceaccounts": ("/api/v1", True),
    "configmaps": ("/api/v1", True),
    "secrets": ("/api/v1", True),
    "endpointslices": ("/apis/discovery.k8s.io/v1", True),
    "deployments": ("/apis/apps/v1", True),
    "replicasets": ("/apis/apps/v1", True),
    "statefulsets": ("/apis/apps/v1", True),
    "daemonsets": ("/apis/apps/v1", True),
    "controllerrevisions": ("/apis/apps/v1", True),
    "replicationcontrollers": ("/api/v1", True),
    "jobs": ("/apis/batch/v1", True),
    "cronjobs": ("/apis/batch/v1", True),
    "leases": ("/apis/coordination.k8s.io/v1", True),
    "networkpolicies": ("/apis/networking.k8s.io/v1", True),
    "ingresses": ("/apis/networking.k8s.io/v1", True),
    "ingressclasses": ("/apis/networking.k8s.io/v1", False),
    "clusterroles": ("/apis/rbac.authorization.k8s.io/v1", False),
}
DEFAULT_TIMEOUT = 15.0


class ApiError(SvclabError):
    """The API server answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str, method: str = "",
                 path: str = ""):
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Credentials:
    server: str                     # https://host:port
    ca_pem: str                     # the lab CA, pinned
    token: str | None = None
    cert_pem: bytes | None = None   # client certificate and key (PEM)
    key_pem: bytes | None = None


def path_for(resource: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
    try:
        prefix, namespaced = RESOURCES[resource]
    except KeyError as err:
        raise ValueError(f"unknown resource {resource!r}; known: "
                         f"{', '.join(sorted(RESOURCES))}") from err
    path = prefix
    if namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{resource}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


SocketFactory = Callable[[str, int, float], socket.socket]


class KubeClient:
    """Thread-safe: threads share the client's pool of keep-alive connections
    (base/kube/transport.py), as a client-go process shares its transport.

    socket_factory(host, port, timeout) -> a connected socket, for a client
    whose traffic must leave from somewhere else than this process's
    namespace (a kubelet talks to the API from its node)."""

    def __init__(self, credentials: Credentials, timeout: float = DEFAULT_TIMEOUT,
                 socket_factory: SocketFactory | None = None):
        self.credentials = credentials
        self.timeout = timeout
        self.socket_factory = socket_factory
        url = urllib.parse.urlsplit(credentials.server)
        self._host, self._port = url.hostname, url.port or 443
        self._context = ssl.create_default_context(cadata=credentials.ca_pem)
        self._context.check_hostname = False   # the lab CA signs by IP; CA is pinned
        if credentials.cert_pem:
            _load_client_cert(self._context, credentials.cert_pem, credentials.key_pem)
        self._pool = Pool(lambda: self._connect(self.timeout))
        self._header_lines = self._headers()

    @classmethod
    def from_kubeconfig(cls, path: str, server: str | None = None) -> KubeClient:
        return cls(credentials_from_kubeconfig(path, server))

    # --- verbs -----------------------------------------------------------------

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict:
        return self.request("GET", path_for(resource, namespace, name))

    def find(self, resource: str, name: str,
             namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist (yet, or any more)."""
        try:
            return self.get(resource, name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    def list(self, resource: str, namespace: str | None = None, *,
             label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict], str]:
        params = {k: v for k, v in (("labelSelector", label_selector),
                                    ("fieldSelector", field_selector)) if v}
        body = self.request("GET", path_for(resource, namespace), params=params)
        return body.get("items", []), body.get("metadata", {}).get("resourceVersion", "0")

    def create(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        namespace = namespace or obj.get("metadata", {}).get("namespace")
        return self.request("POST", path_for(resource, namespace), body=obj)

    def update(self, resource: str, obj: dict, subresource: str | None = None) -> dict:
        meta = obj["metadata"]
        return self.request("PUT", path_for(resource, meta.get("namespace"), meta["name"],
                                            subresource), body=obj)

    def patch(self, resource: str, name: str, patch: dict, namespace: str | None = None,
              subresource: str | None = None, kind: str = "merge") -> dict:
        content_type = {"merge": "application/merge-patch+json",
                        "strategic": "application/strategic-merge-patch+json"}[kind]
        return self.request("PATCH", path_for(resource, namespace, name, subresource),
                            body=patch, content_type=content_type)

    def delete(self, resource: str, name: str, namespace: str | None = None,
               grace_period: int | None = None) -> dict:
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "propagationPolicy": "Background"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        return self.request("DELETE", path_for(resource, namespace, name), body=body)

    def watch(self, resource: str, resource_version: str, namespace: str | None = None,
              timeout_seconds: int = 300, *, label_selector: str | None = None,
              field_selector: str | None = None) -> Watch:
        params = {"watch": "true", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        params.update({k: v for k, v in (("labelSelector", label_selector),
                                         ("fieldSelector", field_selector)) if v})
        return self.open_watch(path_for(resource, namespace) + "?"
                               + urllib.parse.urlencode(params), timeout_seconds + 30)

    # --- plumbing --------------------------------------------------------------

    def request(self, method: str, path: str, *, body: dict | None = None,
                params: dict | None = None, content_type: str = "application/json") -> dict:
        if params:
            path += "?" + urllib.parse.urlencode(params)
        headers = self._header_lines
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers = {**headers, "Content-Type": content_type}
        while True:
            conn, reused = self._pool.take()
            try:
                response = conn.request(method, path, headers, payload)
            except OSError:      # a socket, TLS or protocol error (ProtocolError)
                conn.close()
                if reused:       # a kept-alive connection the server had closed: once more
                    continue
                raise
            self._pool.give(conn)
            break
        data = response.body
        parsed = json.loads(data) if data else {}
        if response.status >= 400:
            raise ApiError(response.status, parsed.get("reason", response.reason),
                           parsed.get("message", data.decode(errors="replace")), method, path)
        return parsed

    def open_watch(self, target: str, timeout: float) -> Watch:
        """A watch of target (path?query) on a connection of its own."""
        return Watch(self._connect(timeout), target, self._header_lines)

    def _headers(self) -> dict:
        headers = {"Accept": "application/json", "User-Agent": "svclab-agent"}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        return headers

    def close(self) -> None:
        """Close the idle kept-alive connections (ones in use close when given back)."""
        self._pool.close()

    def _connect(self, timeout: float) -> Connection:
        if self.socket_factory is not None:
            raw = self.socket_factory(self._host, self._port, timeout)
        else:
            raw = socket.create_connection((self._host, self._port), timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._context.wrap_socket(raw, server_hostname=self._host)
        except BaseException:
            raw.close()
            raise
        return Connection(sock, f"{self._host}:{self._port}")


class Watch:
    """A streaming watch: iterate for (type, object) events; close() to stop."""

    def __init__(self, conn: Connection, path: str, headers: dict):
        self._conn = conn
        try:
            conn.send("GET", path, headers)
            status, reason, answer = conn.read_head()
            if status >= 400 or answer.get("transfer-encoding", "").lower() != "chunked":
                data = conn.read_body("GET", status, answer)
                parsed = json.loads(data) if data else {}
                raise ApiError(status, parsed.get("reason", reason),
                               parsed.get("message", ""), "WATCH", path)
        except BaseException:
            conn.close()
            raise

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        pending = b""
        try:
            for chunk in self._conn.chunks():
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        except (OSError, ValueError):     # ProtocolError is an OSError
            if self._conn.reusable:      # not closed by close() from another thread
                raise
            return
        if pending.strip():
            event = json.loads(pending)
            yield event["type"], event["object"]

    def close(self) -> None:
        self._conn.shutdown()
        self._conn.close()


def credentials_from_kubeconfig(path: str, server: str | None = None) -> Credentials:
    """Read a kubeconfig's current context (inline data or file references)."""
    with open(path) as handle:
        config = yaml.safe_load(handle)
    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def data_of(entry: dict, key: str) -> bytes | None:
        if entry.get(f"{key}-data"):
            return base64.b64decode(entry[f"{key}-data"])
        if entry.get(key):
            with open(entry[key], "rb") as handle:
                return handle.read()
        return None

    return Credentials(server=server or cluster["server"],
                       ca_pem=data_of(cluster, "certificate-authority").decode(),
                       token=user.get("token"),
                       cert_pem=data_of(user, "client-certificate"),
                       key_pem=data_of(user, "client-key"))


def _load_client_cert(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl loads certificates only from files: use a private one, then drop it."""
    directory = tempfile.mkdtemp(prefix="svclab-kube-")
    target = os.path.join(directory, "client.pem")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(cert_pem + b"\n" + key_pem)
        context.load_cert_chain(target)
    finally:
        if os.path.exists(target):
            os.unlink(target)
        os.rmdir(directory)


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def credentials_in_cluster(directory: str = SERVICE_ACCOUNT_DIR) -> Credentials:
    """What a pod uses: the service-account token and CA the kubelet mounted,
    and the `kubernetes` Service from the environment (KUBERNETES_SERVICE_*)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise SvclabError("not in a pod: KUBERNETES_SERVICE_HOST is not set "
                          "(give a kubeconfig instead)")
    with open(os.path.join(directory, "token")) as handle:
        token = handle.read().strip()
    with open(os.path.join(directory, "ca.crt")) as handle:
        ca_pem = handle.read()
    return Credentials(server=f"https://{host}:{port}", ca_pem=ca_pem, token=token)
