"""The emulated images as a client sees them, on loopback; and the node's faces.

Servers run in-process on port 0 where the test needs to read their state,
and as real processes (started the way the kubelet starts them: python -S)
where the process's own life matters (signals, exit codes, process title).
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agents.images import echoserver, hello, missing, nginx
from agents.images.flags import FlagError, parse_flags, split_launch
from agents.images.http import (
    HeadError,
    Request,
    Response,
    parse_head,
    read_body,
    render_response,
)
from agents.images.netexec import Netexec, go_duration, go_json, go_time, udp_answer
from agents.images.netloop import Loop
from agents.proctitle import argument_area, encode_title
from agents.proxy.health import HttpFaces, SyncMetrics
from controlplane.kubelet.containers import program_argv

PY = sys.executable
HOST = socket.gethostname()


def request(target="/", method="GET", headers=(("Host", "10.0.0.9"),), body=b"",
            client=("192.168.2.7", 40000), local=("192.168.1.5", 8080), version="HTTP/1.1"):
    return Request(method, target, version, tuple(headers), body, client, local)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def get(port: int, path: str, **headers) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers)
    reply = conn.getresponse()
    body = reply.read().decode()
    conn.close()
    return reply.status, body


def udp(port: int, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, ("127.0.0.1", port))
        return sock.recv(2048)


def start_image(module: str, *argv: str, env: dict | None = None) -> subprocess.Popen:
    """As the kubelet starts a stand-in (controlplane/kubelet/containers.py)."""
    return subprocess.Popen(program_argv(PY, module, "--image", "test", "--", *argv), cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


# --- echoserver ------------------------------------------------------------------------

def test_echoserver_classic_layout_is_the_one_using_source_ip_shows():
    text = echoserver.classic_text(request(headers=(("Host", "10.0.0.9"),
                                                    ("User-Agent", "Wget"),
                                                    ("Connection", "close"))))
    assert text == ("CLIENT VALUES:\nclient_address=192.168.2.7\ncommand=GET\nreal path=/\n"
                    "query=nil\nrequest_version=1.1\nrequest_uri=http://10.0.0.9:8080/\n\n"
                    "SERVER VALUES:\nserver_version=nginx: 1.10.0 - lua: 10001\n\n"
                    "HEADERS RECEIVED:\nconnection=close\nhost=10.0.0.9\nuser-agent=Wget\n"
                    "BODY:\n-no body in request-")
    posted = echoserver.classic_text(request("/a?b=1", "POST", body=b"x=y", version="HTTP/1.0",
                                             headers=(("Host", "web:80"),)))
    assert "command=POST\nreal path=/a?b=1\nquery=b=1\nrequest_version=1\n" in posted
    assert "request_uri=http://web:8080/a?b=1\n" in posted and posted.endswith("BODY:\nx=y")


def test_echoserver_later_tags_print_the_newer_layout_with_pod_information():
    text = echoserver.later_text(request("/p?q=1"), {"HOSTNAME": "echo-1", "POD_NAME": "echo-1",
                                                     "NODE_NAME": "ip-172-31-0-11"})
    assert "\nHostname: echo-1\n\nPod Information:\n\tnode name:\tip-172-31-0-11\n" in text
    assert "\tpod namespace:\tN/A\n" in text
    assert "\tclient_address=192.168.2.7\n\tmethod=GET\n\treal path=/p?q=1\n\tquery=q=1\n" in text
    assert text.endswith("Request Body:\n\t-no body in request-\n\n")
    plain = echoserver.later_text(request(), {})
    assert "Hostname: N/A\n\nPod Information:\n\t-no pod information available-\n" in plain


@pytest.mark.parametrize("image, classic", [
    ("registry.k8s.io/echoserver:1.4", True), ("k8s.gcr.io/echoserver:1.0", True),
    ("registry.k8s.io/echoserver", True), ("registry.k8s.io/echoserver:1.10", False),
    ("registry.k8s.io/echoserver:2.2", False)])
def test_echoserver_layout_follows_the_tag(image, classic):
    assert echoserver.uses_classic_layout(image) is classic


# --- agnhost netexec, in-process on loopback -------------------------------------------

@pytest.fixture()
def netexec():
    loop = Loop()
    routes = Netexec(loop, "netexec-pod")
    udp_port = loop.listen_udp(0, lambda data, client: udp_answer(data, client, "netexec-pod"),
                               host="127.0.0.1")
    routes.udp_ready = True
    http_port = loop.listen_http(0, routes, host="127.0.0.1")
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    yield http_port, udp_port
    loop.stop()
    thread.join(5)


def test_netexec_http_endpoints(netexec):
    port, udp_port = netexec
    assert get(port, "/hostname") == (200, "netexec-pod")
    assert get(port, "/hostName") == (200, "netexec-pod")
    status, client = get(port, "/clientip")
    assert status == 200 and re.fullmatch(r"127\.0\.0\.1:\d+", client)
    assert get(port, "/echo?msg=hello%20world") == (200, "hello world")
    assert get(port, "/echo?msg=gone&code=503") == (503, "gone")
    assert get(port, "/healthz") == (200, "")
    for path in ("/", "/anything/else"):
        status, now = get(port, path)
        assert status == 200 and re.fullmatch(r"NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? "
                                              r"[+-]\d{4} \S+ m=\+\d+\.\d{9}", now), now
    assert get(port, "/shell?cmd=echo+hi") == (200, '{"output":"hi\\n"}')
    assert get(port, "/shell?cmd=exit+3") == (200, '{"error":"exit status 3"}')
    assert get(port, f"/dial?host=127.0.0.1&port={udp_port}&protocol=udp&request=hostname"
                     "&tries=2") == (200, '{"responses":["netexec-pod","netexec-pod"]}')
    assert get(port, f"/dial?host=127.0.0.1&port={port}&request=clientip")[1].startswith(
        '{"responses":["127.0.0.1:')
    closed = free_port()
    assert get(port, f"/dial?host=127.0.0.1&port={closed}&request=hostname") == (
        200, f'{{"errors":["Get \\"http://127.0.0.1:{closed}/hostname\\": dial tcp '
             f'127.0.0.1:{closed}: connect: connection refused"]}}')
    assert get(port, "/dial?host=127.0.0.1&port=1")[0] == 400


def test_netexec_keeps_connections_alive_and_refuses_garbage(netexec):
    port, _ = netexec
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/hostname")
        assert conn.getresponse().read() == b"netexec-pod"
    conn.close()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_netexec_udp_commands(netexec):
    _, port = netexec
    assert udp(port, b"hostname") == b"netexec-pod"
    assert udp(port, b"echo Hello There\n") == b"hello there"      # lower-cased, as upstream
    assert re.fullmatch(rb"127\.0\.0\.1:\d+", udp(port, b"clientip"))


def test_go_durations_time_and_json():
    assert go_duration("1m30s") == 90 and go_duration("500ms") == 0.5 and go_duration("0") == 0
    with pytest.raises(ValueError):
        go_duration("5 seconds")
    assert go_time(0.5, 1.25).endswith(" m=+1.250000000")
    assert go_json({"b": "<&>", "a": 1}) == '{"a":1,"b":"\\u003c\\u0026\\u003e"}'


# --- programs as the kubelet starts them ---------------------------------------------------

def test_serve_hostname_answers_its_hostname_and_panics_on_sigterm():
    port = free_port()
    proc = start_image("agents.images.serve_hostname", "/serve_hostname", f"-port={port}")
    try:
        wait_port(port)
        assert get(port, "/any/path") == (200, HOST)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [b"/serve_hostname", f"-port={port}".encode()]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d HTTP request from 127\.0\.0\.1:\d+$",
                     err, re.M)
    assert "panic: Terminating after receiving signal: terminated." in err


def test_serve_hostname_raw_tcp_and_udp_modes():
    port = free_port()
    proc = start_image("agents.images.agnhost", "/agnhost", "serve-hostname", "--tcp",
                       "--udp", "--http=false", f"--port={port}")
    try:
        wait_port(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert sock.recv(100) == HOST.encode() and sock.recv(100) == b""
        assert udp(port, b"x") == HOST.encode()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    refused = start_image("agents.images.serve_hostname", "/serve_hostname", "--tcp")
    assert refused.wait(10) == 1
    assert "Can't server TCP/UDP mode and HTTP mode at the same time" in refused.stderr.read()
    refused.stdout.close()
    refused.stderr.close()


def test_agnhost_pause_and_its_exit_codes():
    proc = start_image("agents.images.agnhost", "/agnhost", "pause")
    assert proc.stdout.readline() == "Paused\n"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 2


def test_agnhost_connect_reports_as_upstream():
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        ok = subprocess.run(program_argv(PY, "agents.images.agnhost", "--", "/agnhost",
                                         "connect", f"127.0.0.1:{port}", "--timeout=5s"),
                            capture_output=True, text=True, timeout=20)
    assert (ok.returncode, ok.stderr) == (0, "")
    refused = subprocess.run(program_argv(PY, "agents.images.agnhost", "--", "/agnhost",
                                          "connect", f"127.0.0.1:{port}", "--timeout=5s"),
                             capture_output=True, text=True, timeout=20)
    assert (refused.returncode, refused.stderr) == (1, "REFUSED\n")
    other = subprocess.run(program_argv(PY, "agents.images.agnhost", "--", "/agnhost",
                                        "porter"), capture_output=True, text=True, timeout=20)
    assert other.returncode == 1 and "'porter' is not emulated" in other.stderr


def test_hello_app_and_node_hello():
    assert hello.hello_app_version("gcr.io/google-samples/hello-app:2.0") == "2.0.0"
    assert hello.hello_app_version("gcr.io/google-samples/hello-app") == "1.0.0"
    port = free_port()
    proc = start_image("agents.images.hello", "/hello-app", env={"PORT": str(port)})
    try:
        wait_port(port)
        assert get(port, "/x") == (200, f"Hello, world!\nVersion: 1.0.0\nHostname: {HOST}\n")
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert f"Server listening on port {port}" in err and "Serving request: /x" in err


def test_a_missing_program_fails_as_a_runtime_would_and_says_why():
    done = subprocess.run(program_argv(PY, "agents.images.missing", "--program", "nslookup",
                                       "--package", "bind9-dnsutils"),
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 128
    assert done.stderr.startswith('exec: "nslookup": executable file not found in $PATH')
    assert "'bind9-dnsutils'" in done.stderr
    assert "is not one it has" in missing.message("frob", "")


# --- HTTP and flags, pure -------------------------------------------------------------------

def test_http_heads_bodies_and_responses():
    head, rest = parse_head(b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                            b"\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET", 1024)
    assert (head.method, head.target, head.header("host")) == ("POST", "/x?y=1", "a")
    assert read_body(head, rest) == (b"abc", b"GET")
    assert parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 1024) is None
    with pytest.raises(HeadError):
        parse_head(b"hello there\r\n\r\n", 1024)
    data, close = render_response(Response(200, b"hi"), request(), now=0)
    assert data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nhi")
    assert not close
    _, close = render_response(Response(200), request(version="HTTP/1.0"))
    assert close
    assert request("/e?msg=a+b%21&x").form("msg") == "a b!"


def test_flags_as_go_and_cobra_read_them():
    spec = {"port": 9376, "tcp": False, "http": True, "name": ""}
    values, rest = parse_flags(["-port=1", "--tcp", "--http=false", "--name", "n", "arg"], spec)
    assert values == {"port": 1, "tcp": True, "http": False, "name": "n"} and rest == ["arg"]
    with pytest.raises(FlagError, match="unknown flag: --nope"):
        parse_flags(["--nope"], spec)
    with pytest.raises(FlagError, match='invalid argument "x"'):
        parse_flags(["--port=x"], spec)
    assert split_launch(["--image", "img", "--", "/a", "--b"]) == ("img", ("/a", "--b"))


# --- nginx's layout, pure ------------------------------------------------------------------

MOUNTINFO = """\
20 1 0:30 / / rw - overlay overlay rw
30 20 0:40 / /etc/nginx rw - tmpfs svclab-pod-dir rw
31 30 0:30 /etc/nginx/mime.types /etc/nginx/mime.types rw - overlay overlay rw
32 30 0:41 /kubernetes.io~secret/certs /etc/nginx/ssl ro - tmpfs svclab-pod-volumes rw
33 20 0:41 /kubernetes.io~configmap/site /etc/nginx/conf.d ro - tmpfs svclab-pod-volumes rw
34 20 0:41 /kubernetes.io~empty-dir/html /usr/share/nginx/html rw - tmpfs svclab-pod-emptydir rw
35 20 0:41 /x /srv/with\\040space rw - tmpfs svclab-pod-volumes rw
"""


def test_nginx_layout_keeps_the_pods_volumes_and_covers_the_machines_files():
    table = nginx.mount_table(MOUNTINFO)
    assert table[-1].point == "/srv/with space"
    assert nginx.volumes_at("/etc/nginx", table) == (False, ["/etc/nginx/ssl",
                                                             "/etc/nginx/conf.d"])
    assert nginx.volumes_at("/usr/share/nginx/html", table) == (True, [])
    assert nginx.volumes_at("/var/log/nginx", table) == (False, [])
    assert [c.target for c in nginx.plan_covers("/s", {"/etc/nginx", "/var/log/nginx"})] == [
        "/etc/nginx", "/var/log/nginx"]


def test_nginx_layout_adds_the_images_user_with_a_free_id():
    passwd, group = nginx.with_user("root:x:0:0::/root:/bin/sh\npg:x:101:101::/:/bin/false\n",
                                    "root:x:0:\npg:x:101:\n", "nginx", 101)
    assert passwd.endswith("nginx:x:102:102:nginx user:/nonexistent:/bin/false\n")
    assert group.endswith("nginx:x:102:\n")
    assert nginx.with_user(passwd, group, "nginx", 101) == (passwd, group)
    assert nginx.image_argv(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]) == \
        ["nginx", "-g", "daemon off;"]
    assert nginx.image_argv(["/docker-entrypoint.sh"]) == ["nginx", "-g", "daemon off;"]
    assert nginx.image_argv(["sh", "-c", "x"]) == ["sh", "-c", "x"]


# --- the node: kube-proxy's name and /proxyMode ----------------------------------------------

def test_process_titles_fit_the_original_command_line():
    assert encode_title(["kube-proxy", "--node", "n1"], 22) == b"kube-proxy\0--node\0n1\0\0"
    assert encode_title(["kube-proxy", "--node", "n1"], 20) == b"kube-proxy\0--node\0\0\0"
    assert encode_title(["kube-proxy", "--node", "n1"], 12) == b"kube-proxy\0\0"
    stat = "1234 (python3 x) S " + " ".join(str(n) for n in range(4, 53))
    assert argument_area(stat) == (48, 49)


def test_the_proxy_agent_calls_itself_kube_proxy(tmp_path):
    code = ("import sys, time; from agents.proctitle import set_process_title; "
            "print(set_process_title(['kube-proxy', '--proxy-mode', 'iptables']), flush=True);"
            " time.sleep(30)")
    proc = subprocess.Popen([PY, "-c", code, "padding-so-the-title-fits"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "True\n"
        assert Path(f"/proc/{proc.pid}/comm").read_text() == "kube-proxy\n"
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(proc.pid)], capture_output=True,
                            text=True, check=True).stdout
        assert ps.strip() == "kube-proxy --proxy-mode iptables"
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_proxy_mode_is_served_on_the_metrics_port():
    faces = HttpFaces(SyncMetrics(), healthy_within=10, proxy_mode="nftables")
    faces.start(None, ("127.0.0.1", 0))
    try:
        port = faces._servers["metrics"].server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/proxyMode", timeout=5) as reply:
            assert reply.read() == b"nftables"
        faces.proxy_mode = ""
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/proxyMode", timeout=5)
    finally:
        faces.stop()
