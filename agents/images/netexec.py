"""agnhost's `netexec`: the HTTP and UDP endpoints Service and DNS tests call.

As kubernetes' test/images/agnhost/netexec behaves on the wire:

HTTP on --http-port (8080): `/` (and every path no other route takes, as Go's
ServeMux does) answers `NOW: <Go time>`; `/hostname` and `/hostName` the
kernel hostname; `/clientip` the client's `ip:port`; `/echo?msg=M[&code=C]`;
`/healthz` 200 once the UDP server listens (412 without one); `/redirect`;
`/shell?cmd=...` runs `/bin/sh -c` and answers Go's JSON
{"error":..., "output":...}; `/dial?host=&port=&request=&protocol=&tries=`
asks another server and answers {"errors": [...], "responses": [...]};
`/exit?code=&timeout=&wait=` and `/shutdown` end the process.
UDP on --udp-port (8081, -1 = none): `hostname`, `echo <msg>` and `clientip`
(the text is lower-cased first, as upstream does).
Each request is logged on stderr in Go's format, as upstream logs it.
"""
from __future__ import annotations

import os
import re
import socket
import time

from agents.images.http import Request, Response, go_log, host_port
from agents.images.netloop import Deferred, Loop

FLAGS = {"http-port": 8080, "udp-port": 8081, "sctp-port": -1, "tls-cert-file": "",
         "tls-private-key-file": "", "http-override": "", "udp-listen-addresses": ""}
DIAL_TIMEOUT = 5.0
SHELL_TIMEOUT = 60.0
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
STARTED = time.monotonic()


def go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds ("1m30s", "500ms", "0")."""
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pieces = _DURATION.findall(body)
    if not body or "".join(n + u for n, u in pieces) != body:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * sum(float(n) * _UNITS[u] for n, u in pieces)


def go_time(now: float, monotonic: float) -> str:
    """time.Now().String(): `2006-01-02 15:04:05.123456789 +0000 UTC m=+1.000000001`."""
    local = time.localtime(now)
    nanos = f"{int(now % 1 * 1e9):09d}".rstrip("0")
    fraction = f".{nanos}" if nanos else ""
    offset = time.strftime("%z", local)
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S', local)}{fraction} {offset} "
            f"{time.strftime('%Z', local)} m=+{monotonic:.9f}")


def go_json(value) -> str:
    """encoding/json: sorted keys, no spaces, <, > and & escaped."""
    import json  # here, not at the top: most netexec pods never need it
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def udp_answer(text: bytes, client: tuple, hostname: str) -> bytes | None:
    """The UDP server's reply to one datagram (None: no reply)."""
    command = text.decode("utf-8", "replace").strip().lower()
    if command == "hostname":
        go_log("Sending udp hostName response")
        return hostname.encode()
    if command.startswith("echo "):
        message = command.split(" ", 1)[1]
        go_log(f"Echoing {message} to UDP client {host_port(client)}")
        return message.encode()
    if command == "clientip":
        go_log(f"Sending clientip back to UDP client {host_port(client)}")
        return host_port(client).encode()
    if command:
        go_log(f"Unknown UDP command received from {host_port(client)}: {command}")
    return None


def shell(command: str) -> Response:
    import subprocess  # here, not at the top: most netexec pods never run a shell
    go_log(f"GET /shell?cmd={command}")
    try:
        done = subprocess.run(["/bin/sh", "-c", command], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=SHELL_TIMEOUT)
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as err:
        output, code = err.stdout or b"", -9
    result = {}
    if output:
        result["output"] = output.decode("utf-8", "replace")
    if code:
        result["error"] = (f"exit status {code}" if code > 0
                           else f"signal: {'killed' if code == -9 else -code}")
    return Response(200, go_json(result).encode())


def dial_once(protocol: str, host: str, port: str, request: str) -> str:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if protocol == "udp":
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(DIAL_TIMEOUT)
            try:
                sock.connect((host, int(port)))
                sock.send(request.encode())
                data = sock.recv(2048)
            except OSError as err:
                raise OSError(f"reading from udp connection failed. err:'read udp "
                              f"{address}: {err.strerror or err}'") from err
        if not data:
            raise OSError("reading from udp connection failed. err:'<nil>'")
        return data.decode("utf-8", "replace")
    return http_get(host, int(port), f"/{request}", address)


def http_get(host: str, port: int, path: str, address: str) -> str:
    """The body of GET http://address/path, as Go's client errors when it fails
    (a plain socket: urllib would cost every netexec pod megabytes of imports)."""
    url = f"http://{address}{path}"
    try:
        with socket.create_connection((host, port), timeout=DIAL_TIMEOUT) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: "
                         "Go-http-client/1.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except TimeoutError as err:
        raise OSError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded '
                      "while awaiting headers)") from err
    except OSError as err:
        text = (err.strerror or str(err)).lower()
        raise OSError(f'Get "{url}": dial tcp {address}: connect: {text}') from err
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise OSError(f'Get "{url}": malformed HTTP response')
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body.decode("utf-8", "replace")


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2:]
    return out


def dial(request: Request) -> Response:
    host, port = request.form("host"), request.form("port")
    what, protocol = request.form("request"), request.form("protocol").lower()
    tries_text = request.form("tries")
    go_log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={what}"
           f"&tries={tries_text}")
    if tries_text and not tries_text.lstrip("-").isdigit():
        return Response(400, f'tries parameter is invalid. strconv.Atoi: parsing '
                             f'"{tries_text}": invalid syntax\n'.encode())
    if not what:
        return Response(400, b"request parameter not specified. <nil>\n")
    if protocol not in ("", "http", "udp"):
        return Response(400, f"unsupported protocol. {protocol}\n".encode())
    if not port.isdigit():
        return Response(400, b"host and/or port param are invalid. invalid port\n")
    responses, errors, last = [], [], ""
    for _ in range(int(tries_text or 1)):
        try:
            last = dial_once(protocol or "http", host, port, what)
            responses.append(last)
        except OSError as err:
            last = ""
            errors.append(str(err))
    result = {}
    if last:
        result["responses"] = responses
    if errors:
        result["errors"] = errors
    return Response(200, go_json(result).encode())


class Netexec:
    """The routes, bound to one process's state (hostname, UDP readiness, loop)."""

    def __init__(self, loop: Loop, hostname: str, override: str = ""):
        self.loop, self.hostname, self.override = loop, hostname, override
        self.udp_ready = False

    def __call__(self, request: Request) -> Response | Deferred:
        if self.override:
            request = Request("GET", self.override, request.version, request.headers,
                              request.body, request.client, request.local)
        path = request.path
        if path in ("/hostname", "/hostName"):
            go_log(f"GET {path}")
            return Response(200, self.hostname.encode())
        if path == "/clientip":
            go_log("GET /clientip")
            return Response(200, host_port(request.client).encode())
        if path == "/echo":
            return self.echo(request)
        if path == "/healthz":
            go_log("GET /healthz")
            return Response(200 if self.udp_ready else 412)
        if path == "/shell":
            command = request.form("shellCommand") or request.form("cmd")
            return Deferred(lambda: shell(command))
        if path == "/dial":
            return Deferred(lambda: dial(request))
        if path == "/redirect":
            return self.redirect(request)
        if path in ("/exit", "/shutdown"):
            return self.exit(request)
        if path == "/upload":
            go_log("GET /upload")
            return Response(200, go_json({"error": "Unable to upload file."}).encode())
        go_log("GET /")
        return Response(200, f"NOW: {go_time(time.time(), time.monotonic() - STARTED)}"
                        .encode())

    def echo(self, request: Request) -> Response:
        message, code = request.form("msg"), request.form("code")
        go_log(f"GET /echo?msg={message}&code={code}")
        if code:
            if not code.lstrip("-").isdigit():
                return Response(200, f'argument \'code\' must be an integer or empty, got '
                                     f'"{code}"\n'.encode())
            return Response(int(code), message.encode())
        return Response(200, message.encode())

    def redirect(self, request: Request) -> Response:
        location, code = request.form("location"), request.form("code")
        go_log(f"{request.method} /redirect?msg={location}&code={code}")
        status = int(code) if code.isdigit() else 302
        return Response(status, b"", headers=(("Location", location),))

    def exit(self, request: Request) -> Response:
        if request.path == "/shutdown":
            go_log("GET /shutdown")
            os._exit(0)
        code_text, timeout, wait = (request.form(k) for k in ("code", "timeout", "wait"))
        go_log(f"GET /exit?code={code_text}&timeout={timeout}&wait={wait}")
        try:
            timeout_s = go_duration(timeout) if timeout else 0.0
            wait_s = go_duration(wait) if wait else 0.0
        except ValueError:
            return Response(200, b"argument 'timeout' or 'wait' must be a valid golang "
                                 b"duration or empty\n")
        if code_text and not code_text.isdigit():
            return Response(200, f"argument 'code' must be an integer [0-127] or empty, got "
                                 f'"{code_text}"\n'.encode())
        code = int(code_text or 0)
        go_log(f"Will begin shutdown in {wait or '0s'}, allowing {timeout or '0s'} for "
               f"connections to close, then will exit with {code}")
        self.loop.call_later(wait_s + timeout_s, lambda: os._exit(code))
        return Response(200, b"")


def serve(loop: Loop, values: dict) -> int:
    """Listen as netexec's flags say; the exit code if it cannot."""
    hostname = socket.gethostname()
    routes = Netexec(loop, hostname, str(values["http-override"]))
    if values["tls-cert-file"] or int(values["sctp-port"]) != -1:
        go_log("svclab: netexec's HTTPS and SCTP servers are not emulated")
        return 1
    udp_port = int(values["udp-port"])
    try:
        if udp_port != -1:
            addresses = [a for a in str(values["udp-listen-addresses"]).split(",") if a]
            for address in addresses or [""]:
                loop.listen_udp(udp_port, lambda data, client: udp_answer(data, client,
                                                                          hostname),
                                host=address or "0.0.0.0")
                go_log(f"Started UDP server on port {address} {udp_port}")
            routes.udp_ready = True
        go_log(f"Started HTTP server on port {int(values['http-port'])}")
        loop.listen_http(int(values["http-port"]), routes)
    except OSError as err:
        go_log(f"listen: {err.strerror or err}")
        return 1
    loop.run()
    return 0
