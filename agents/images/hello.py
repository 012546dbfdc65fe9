"""The Google samples the Kubernetes tutorials expose: `hello-app` and `node-hello`.

- gcr.io/google-samples/hello-app:1.0 / 2.0 (Go): on $PORT (8080) every path
  answers "Hello, world!\\nVersion: 1.0.0\\nHostname: <pod>\\n" (2.0.0 for
  the 2.0 tag); logs "Server listening on port 8080" and, per request,
  "Serving request: /path" (Go's log format, stderr).
- gcr.io/google-samples/node-hello:1.0 (Node.js): on 8080 every path answers
  "Hello Kubernetes!" (no newline, no Content-Type); logs
  "Received request for URL: /path" on stdout.
"""
from __future__ import annotations

import os
import re
import socket
import sys

from agents.images.flags import split_launch
from agents.images.http import Request, Response, go_log
from agents.images.netloop import Loop
from agents.proctitle import set_process_title

NODE_HELLO_PORT = 8080


def hello_app_version(image: str) -> str:
    """1.0 -> 1.0.0, 2.0 -> 2.0.0; no tag (latest) or another one -> 1.0.0."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    match = re.fullmatch(r"(\d+)\.(\d+)", tag)
    return f"{match.group(1)}.{match.group(2)}.0" if match else "1.0.0"


def hello_app_text(version: str, hostname: str) -> str:
    return f"Hello, world!\nVersion: {version}\nHostname: {hostname}\n"


def hello_app(image: str) -> int:
    port = os.environ.get("PORT") or "8080"
    version, hostname = hello_app_version(image), socket.gethostname()

    def answer(request: Request) -> Response:
        go_log(f"Serving request: {request.path}")
        return Response(200, hello_app_text(version, hostname).encode())

    loop = Loop()
    go_log(f"Server listening on port {port}")
    try:
        loop.listen_http(int(port), answer)
    except (OSError, ValueError) as err:
        go_log(f"listen tcp :{port}: {getattr(err, 'strerror', None) or err}")
        return 1
    loop.run()
    return 0


def node_hello() -> int:
    def answer(request: Request) -> Response:
        print(f"Received request for URL: {request.target}", flush=True)
        return Response(200, b"Hello Kubernetes!", content_type=None)

    loop = Loop()
    try:
        loop.listen_http(NODE_HELLO_PORT, answer)
    except OSError as err:
        print(f"Error: listen EADDRINUSE: {err.strerror}", file=sys.stderr)
        return 1
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    launch = split_launch(sys.argv[1:] if argv is None else argv)
    if "node-hello" in launch.image:
        set_process_title(list(launch.argv) or ["node", "server.js"])
        return node_hello()
    set_process_title(list(launch.argv) or ["/hello-app"])
    return hello_app(launch.image)


if __name__ == "__main__":
    sys.exit(main())
