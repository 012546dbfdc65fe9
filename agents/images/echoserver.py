"""`registry.k8s.io/echoserver`: every request echoed back as text, on 8080.

The real image is nginx with a Lua handler; what it prints depends on its
version, and both layouts are rendered here (pure functions of the request):

- 1.4 and older (the one "Using Source IP" runs): `CLIENT VALUES:` with
  client_address, command, real path, query (`nil` without one),
  request_version, request_uri (scheme://host:server_port + the URI), then
  `SERVER VALUES:` (nginx 1.10.0, lua 10001), `HEADERS RECEIVED:` (lower-case
  names, sorted, `name=value`), `BODY:` and the body or
  `-no body in request-`.
- later versions (1.10 is the common one): `Hostname:`, `Pod Information:`
  (from POD_NAME, NODE_NAME, POD_NAMESPACE, POD_IP when the pod sets them),
  `Server values:`, `Request Information:`, `Request Headers:`,
  `Request Body:`, tab-indented.

client_address is the address the server saw: the point of the page is to
see when a Service translated the source.
"""
from __future__ import annotations

import os
import re
import sys

from agents.images.flags import split_launch
from agents.images.http import Request, Response, go_log
from agents.images.netloop import Loop
from agents.proctitle import set_process_title

PORT = 8080
CLASSIC_SERVER = "nginx: 1.10.0 - lua: 10001"
LATER_SERVER = "nginx: 1.13.3 - lua: 10008"


def uses_classic_layout(image: str) -> bool:
    """True for tags 1.0-1.4 and an untagged reference."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    match = re.match(r"^(\d+)\.(\d+)", tag)
    return not match or (int(match.group(1)), int(match.group(2))) <= (1, 4)


def lua_version(version: str) -> str:
    """ngx.req.http_version() as Lua prints the number: 1.1, 1 (for 1.0), 2."""
    number = version.split("/", 1)[-1]
    return number[:-2] if number.endswith(".0") else number


def nginx_host(request: Request) -> str:
    """nginx's $host: the Host header's name, lower-cased, without its port."""
    host = (request.header("Host") or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else (host or "_")


def _headers(request: Request) -> list[tuple[str, str]]:
    merged: dict[str, str] = {}
    for name, value in request.headers:
        key = name.lower()
        merged[key] = merged.get(key, "") + value     # Lua prints a multi-value table joined
    return sorted(merged.items())


def _request_uri(request: Request) -> str:
    return f"http://{nginx_host(request)}:{request.local[1]}{request.target}"


def classic_text(request: Request) -> str:
    query = request.query if "?" in request.target else "nil"
    lines = ["CLIENT VALUES:", f"client_address={request.client[0]}",
             f"command={request.method}", f"real path={request.target}", f"query={query}",
             f"request_version={lua_version(request.version)}",
             f"request_uri={_request_uri(request)}", "", "SERVER VALUES:",
             f"server_version={CLASSIC_SERVER}", "", "HEADERS RECEIVED:"]
    lines += [f"{key}={value}" for key, value in _headers(request)]
    lines.append("BODY:")
    body = request.body.decode("utf-8", "replace") if request.body else "-no body in request-"
    return "\n".join(lines) + "\n" + body


def later_text(request: Request, env: dict[str, str]) -> str:
    if env.get("POD_NAME"):
        pod = [f"\tnode name:\t{env.get('NODE_NAME') or 'N/A'}",
               f"\tpod name:\t{env.get('POD_NAME') or 'N/A'}",
               f"\tpod namespace:\t{env.get('POD_NAMESPACE') or 'N/A'}",
               f"\tpod IP:\t{env.get('POD_IP') or 'N/A'}"]
    else:
        pod = ["\t-no pod information available-"]
    lines = ["", "", f"Hostname: {env.get('HOSTNAME') or 'N/A'}", "", "Pod Information:",
             *pod, "", "Server values:", f"\tserver_version={LATER_SERVER}", "",
             "Request Information:", f"\tclient_address={request.client[0]}",
             f"\tmethod={request.method}", f"\treal path={request.target}",
             f"\tquery={request.query}", f"\trequest_version={lua_version(request.version)}",
             "\trequest_scheme=http", f"\trequest_uri={_request_uri(request)}", "",
             "Request Headers:"]
    lines += [f"\t{key}={value}" for key, value in _headers(request)]
    lines += ["", "Request Body:",
              request.body.decode("utf-8", "replace") if request.body
              else "\t-no body in request-", ""]
    return "\n".join(lines) + "\n"


def handler(classic: bool, env: dict[str, str]):
    server = "nginx/1.10.0" if classic else "echoserver"

    def answer(request: Request) -> Response:
        text = classic_text(request) if classic else later_text(request, env)
        return Response(200, text.encode(), headers=(("Server", server),),
                        content_type="text/plain")
    return answer


def main(argv: list[str] | None = None) -> int:
    launch = split_launch(sys.argv[1:] if argv is None else argv)
    set_process_title(list(launch.argv) or ["nginx: master process nginx"])
    loop = Loop()
    try:
        loop.listen_http(PORT, handler(uses_classic_layout(launch.image), dict(os.environ)))
    except OSError as err:
        go_log(f"svclab echoserver: cannot listen on {PORT}: {err.strerror}")
        return 1
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
