"""The HTTPS API server the lab embeds: PKI, listeners, threads, kubeconfig.

    with ApiServer(state_dir, cluster_info) as server:
        server.add_listener(sock)          # already bound+listening TCP socket
        server.start()
        subprocess.run([kubectl, "--kubeconfig", server.kubeconfig_path, "get", "svc"])

Each listener runs a threading HTTP/1.1 server; TLS is negotiated in the
connection's own thread. Every request is authenticated (client certificate
from the lab CA or bearer token) and authorized (RBAC, controlplane/api/rbac)
before it reaches :mod:`controlplane.api.handlers`.
A streaming subresource (exec, attach, port-forward) takes the connection
over in that thread: ``101 Switching Protocols``, then its session runs on
the raw connection until it ends and the connection is closed; it reaches
pods through ``server.pod_streams`` (a ``base.cri.PodStreams``), set once
the node side exists.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import random
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import yaml

from base.cri import PodStreams
from controlplane.api import certs, errors
from controlplane.api.allocators import IPRange
from controlplane.api.auth import Authenticator, User
from controlplane.api.bootstrap import NodeMonitor, bootstrap, register_node
from controlplane.api.handlers import Api, Request, Response, Stream
from controlplane.api.jws import SigningKey
from controlplane.api.rbac.bootstrap_policy import ensure_bootstrap_policy
from controlplane.api.rbac.gate import RequestGate
from controlplane.api.registry import ClusterConfig, Registry
from controlplane.api.request_head import LeanRequestHead
from controlplane.api.store import Store
from controlplane.api.streams.responses import StreamedResponses
from controlplane.api.streams.routes import ByteStream, Upgrade
from controlplane.api.tls import server_context
from controlplane.api.tokens import ServiceAccountTokens

log = logging.getLogger("controlplane.api")
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0
# How often a listener looks for a shutdown request: what stop() waits at most.
SHUTDOWN_POLL_SECONDS = 0.05


class _Handler(LeanRequestHead, StreamedResponses, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "svclab-apiserver"
    timeout = IDLE_TIMEOUT
    wbufsize = 64 * 1024   # headers and body leave in one write; flushed after each request
    server: _HttpsServer

    def log_message(self, fmt, *args):  # routed to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        owner = self.server.owner
        peer = (self.connection.getpeercert(binary_form=True)
                if isinstance(self.connection, ssl.SSLSocket) else None)
        result = owner.handle(self.command, self.path, self._header_dict(), body, peer)
        if isinstance(result, Stream):
            self._stream(result)
        elif isinstance(result, ByteStream):
            self._byte_stream(result)
        elif isinstance(result, Upgrade):
            self._upgrade(result)
        else:
            self._send(result)

    def _header_dict(self) -> dict:
        """Lower-case names; a repeated header's values joined with ", " (as HTTP allows)."""
        return self.headers.lowered()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _send(self, response: Response) -> None:
        if isinstance(response.body, str):
            data = response.body.encode()
        else:
            data = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, stream: Stream) -> None:
        self._start_chunked(stream.content_type)
        try:
            for event in stream.events:
                if event is None:        # nothing more ready: send what is written
                    self.wfile.flush()
                    continue
                line = _encoded_event(event)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return  # the client went away: the watch simply ends
        finally:
            close = getattr(stream.events, "close", None)
            if close:
                close()


_ENCODED: collections.OrderedDict = collections.OrderedDict()
_ENCODED_LOCK = threading.Lock()
ENCODED_CACHE_SIZE = 1024


def _encoded_event(event: dict) -> bytes:
    """One watch event as a JSON line.  Every watcher of a kind gets the same
    stored object for a change, so its encoding is made once and shared (the
    cache holds the object, so its id cannot be reused while cached); at a
    thousand pods this was most of the API server's watch cost."""
    obj = event.get("object")
    key = (id(obj), event.get("type"))
    with _ENCODED_LOCK:
        hit = _ENCODED.get(key)
        if hit is not None and hit[0] is obj:
            _ENCODED.move_to_end(key)
            return hit[1]
    line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
    with _ENCODED_LOCK:
        _ENCODED[key] = (obj, line)
        while len(_ENCODED) > ENCODED_CACHE_SIZE:
            _ENCODED.popitem(last=False)
    return line


class _HttpsServer(socketserver.ThreadingMixIn, HTTPServer):
    """One listener. Connections are tracked so stop() can cut them off."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, owner: ApiServer) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.context = context
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    def finish_request(self, request, client_address) -> None:
        with self.lock:
            self.connections.add(request)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                tls = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
            with self.lock:
                self.connections.add(tls)
            tls.settimeout(None)
            try:
                self.RequestHandlerClass(tls, client_address, self)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass   # client hung up mid-request: nothing to answer
            finally:
                with self.lock:
                    self.connections.discard(tls)
                tls.close()
        finally:
            with self.lock:
                self.connections.discard(request)

    def cut_connections(self) -> None:
        with self.lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass   # already closed by its own thread


class ApiServer:
    """The lab's Kubernetes API server (in memory, HTTPS, authenticated)."""

    def __init__(self, state_dir: Path, cluster_info: dict, *,
                 node_grace_period: float | None = 40.0, seed: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.cluster_info = cluster_info
        self._make_pki()
        self.authenticator = Authenticator(self.ca.cert_pem)
        self.admin_token = self.authenticator.mint_token("kubernetes-admin", ("system:masters",))
        certs.write_private(self.state_dir / "admin.token", self.admin_token.encode())
        self.store = Store()
        # Service-account tokens: signed with sa.key (made on first use), checked against the store.
        self.tokens = ServiceAccountTokens(SigningKey(self.state_dir / "sa.key"), self.store.get,
                                           cluster_info.get("clusterDomain", "cluster.local"))
        self.authenticator.service_accounts = self.tokens
        self.registry = Registry(self.store, ClusterConfig.from_info(cluster_info),
                                 random.Random(seed))
        bootstrap(self.registry, cluster_info)
        ensure_bootstrap_policy(self.registry)     # RBAC roles and bindings, if missing
        self.gate = RequestGate(self.store)
        endpoint = cluster_info.get("controlPlaneEndpoint") or {}
        self._stopping = threading.Event()
        self.api = Api(self.registry,
                       f"{endpoint.get('ip', '127.0.0.1')}:{endpoint.get('port', 6443)}",
                       self._stopping.is_set)
        self.api.tokens = self.tokens
        self.api.rbac = self.gate
        self._context = server_context(str(self.state_dir / "apiserver.crt"),
                                       str(self.state_dir / "apiserver.key"))
        self._servers: list[_HttpsServer] = []
        self._threads: list[threading.Thread] = []
        self._started: list[_HttpsServer] = []
        self._monitor = NodeMonitor(self.registry, node_grace_period) if node_grace_period else None
        self.kubeconfig_path = self.state_dir / "kubeconfig"
        self.addresses: list[str] = []

    # ---- PKI ------------------------------------------------------------
    def _make_pki(self) -> None:
        self.ca = certs.make_ca()
        endpoint = self.cluster_info.get("controlPlaneEndpoint") or {}
        service_ip = IPRange.parse(self.cluster_info.get("serviceCIDR", "10.96.0.0/12")).address(0)
        domain = self.cluster_info.get("clusterDomain", "cluster.local")
        ips = ["127.0.0.1", service_ip] + ([endpoint["ip"]] if endpoint.get("ip") else [])
        ips += [n["internalIP"] for n in self.cluster_info.get("nodes", [])
                if n.get("role") == "control-plane"]
        dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               f"kubernetes.default.svc.{domain}"]
        server = certs.make_server_cert(self.ca, ips, dns)
        self.admin = certs.make_client_cert(self.ca, "kubernetes-admin", ("system:masters",))
        files = {"ca.crt": self.ca.cert_pem, "ca.key": self.ca.key_pem,
                 "apiserver.crt": server.cert_pem, "apiserver.key": server.key_pem,
                 "admin.crt": self.admin.cert_pem, "admin.key": self.admin.key_pem}
        for name, data in files.items():
            certs.write_private(self.state_dir / name, data)

    @property
    def pod_streams(self) -> PodStreams | None:
        """The node side of exec, attach, port-forward and logs (None: they answer 503)."""
        return self.api.streams.pod_streams

    @pod_streams.setter
    def pod_streams(self, streams: PodStreams | None) -> None:
        self.api.streams.pod_streams = streams

    @property
    def ca_cert_path(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    def register_node(self, info: dict) -> dict:
        """A node's Node object, as its kubelet registers it (bootstrap.register_node)."""
        return register_node(self.registry, info)

    def mint_token(self, user: str, groups: tuple[str, ...] = ()) -> str:
        """A new bearer token for an in-lab agent."""
        return self.authenticator.mint_token(user, groups)

    def write_kubeconfig(self, path: Path, server_url: str, *, token: str | None = None,
                         user: str = "kubernetes-admin") -> Path:
        """Write a kubeconfig (mode 0600): admin client certificate, or ``token`` if given."""
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()
        creds = {"token": token} if token else {"client-certificate-data": b64(self.admin.cert_pem),
                                                 "client-key-data": b64(self.admin.key_pem)}
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
                  "clusters": [{"name": "svclab",
                                "cluster": {"server": server_url,
                                            "certificate-authority-data": b64(self.ca.cert_pem)}}],
                  "users": [{"name": user, "user": creds}],
                  "contexts": [{"name": f"{user}@svclab",
                                "context": {"cluster": "svclab", "user": user}}],
                  "current-context": f"{user}@svclab"}
        certs.write_private(Path(path), yaml.safe_dump(config, sort_keys=False).encode())
        return Path(path)

    # ---- requests ---------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def handle(self, method: str, target: str, headers: dict, body: bytes,
               peer_der: bytes | None = None) -> Response | Stream | ByteStream | Upgrade:
        """One request, whoever carried it: authenticated (client certificate
        or bearer token), admitted (RBAC, impersonation, node restriction:
        controlplane/api/rbac/gate.py), then dispatched.  ``headers`` have
        lower-case names."""
        user = self.authenticator.authenticate(peer_der, headers.get("authorization"))
        if user is None:
            return Response(401, errors.unauthorized().to_status())
        try:
            acting, _ = self.gate.admit(user, method, target, headers, body)
        except errors.StatusError as exc:
            return Response(exc.code, exc.to_status())
        result = self.api.dispatch(Request(method, target, headers, body, acting))
        log.debug("%s %s %s -> %s", user.name, method, target,
                  result.code if isinstance(result, Response) else type(result).__name__)
        return result

    # ---- pod IPs (for the kubelet / CNI of the workloads issue) ----------
    def allocate_pod_ip(self, node: str) -> str:
        return self.registry.allocate_pod_ip(node)

    def release_pod_ip(self, ip: str) -> None:
        self.registry.release_pod_ip(ip)

    # ---- lifecycle ------------------------------------------------------
    def add_listener(self, sock: socket.socket) -> str:
        """Serve on an already bound, listening TCP socket; returns "host:port".

        The first listener's address goes into ``kubeconfig_path``.
        """
        server = _HttpsServer(sock, self._context, self)
        self._servers.append(server)
        host, port = sock.getsockname()[:2]
        address = f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        self.addresses.append(address)
        if len(self._servers) == 1:
            self.write_kubeconfig(self.kubeconfig_path, f"https://{address}")
        if self._threads:   # already started: serve right away
            self._start_server(server)
        return address

    def _start_server(self, server: _HttpsServer) -> None:
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                                  name=f"svclab-api-{server.server_address}", daemon=True)
        self._threads.append(thread)
        self._started.append(server)
        thread.start()

    def start(self) -> ApiServer:
        if not self._servers:
            raise errors.ApiServerError("add_listener() before start()")
        for server in self._servers:
            self._start_server(server)
        if self._monitor:
            self._monitor.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listeners, end watches, cut connections; joins are bounded by ``timeout``."""
        self._stopping.set()
        self.store.close()
        if self._monitor:
            self._monitor.stop(timeout)
        for server in self._servers:
            if server in self._started:
                server.shutdown()
            server.cut_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout)

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["ApiServer", "User"]
