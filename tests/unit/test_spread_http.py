"""Spread to an HTTP target (an Ingress behind an ALB): the request each
connection sends, the X-Forwarded-For the pod reports, failures by HTTP
status, and what `--to http://HOST/PATH` resolves to in a lab."""
from __future__ import annotations

import json
import shutil
import socket
import threading

import pytest

from base.errors import UsageError
from probes.spread.probe import ConnRecord, summarize
from probes.spread.worker import HttpStatusError, SpreadEngine, http_request, parse_http_reply
from probes.targets import HttpTarget, resolve_http_target
from svclab.cli import main
from topo.spec import default_spec_path

ALB_NAME = "k8s-default-shop-0123456789-1234567890.us-east-1.elb.amazonaws.com"


def test_http_request_asks_the_path_with_the_host_and_closes():
    assert http_request(None) == b"GET / HTTP/1.0\r\nUser-Agent: svclab-spread\r\n\r\n"
    assert http_request({"host": "shop.example.com", "path": "/api/items?x=1"}) == (
        b"GET /api/items?x=1 HTTP/1.1\r\nHost: shop.example.com\r\n"
        b"User-Agent: svclab-spread\r\nConnection: close\r\n\r\n")


def test_parse_http_reply_reads_the_forwarded_for_the_pod_got():
    body = json.dumps({"pod": "api-1", "podIP": "192.168.2.4", "client": "172.31.0.12:40000",
                       "forwardedFor": "203.0.113.100", "forwardedProto": "http"})
    got = parse_http_reply(b"HTTP/1.1 200 OK\r\n\r\n" + body.encode())
    assert got["forwarded_for"] == "203.0.113.100" and got["client"] == "172.31.0.12:40000"
    # nginx's $http_x_forwarded_for is "" when nothing was forwarded: not a value
    body = json.dumps({"pod": "n", "podIP": "1.2.3.4", "client": "5.6.7.8:9", "forwardedFor": ""})
    assert parse_http_reply(b"HTTP/1.1 200 OK\r\n\r\n" + body.encode())["forwarded_for"] is None


@pytest.mark.parametrize("reply, status, said", [
    (b"HTTP/1.1 404 Not Found\r\nServer: awselb/2.0\r\nContent-Length: 0\r\n\r\n", 404,
     "HTTP status 404 Not Found from awselb/2.0"),
    (b"HTTP/1.1 503 Service Unavailable\r\nX-Svclab-Pod: web-1\r\n\r\nnot ready", 503,
     "HTTP status 503 Service Unavailable from web-1"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", 502, "HTTP status 502 Bad Gateway"),
])
def test_an_answer_that_is_not_2xx_names_its_status_and_server(reply, status, said):
    with pytest.raises(HttpStatusError) as caught:
        parse_http_reply(reply)
    assert caught.value.status == status and str(caught.value) == said


class _FakeAlb:
    """A listener that answers like an ALB: the pod's JSON with X-Forwarded-For for
    Host shop.example.com and path /api*, its own 404 for anything else."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.heads: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                self.heads.append(head)
                if b"Host: shop.example.com\r\n" in head and head.startswith(b"GET /api"):
                    body = json.dumps({"pod": "api-1", "podIP": "192.168.2.4",
                                       "client": "172.31.0.12:41000",
                                       "forwardedFor": f"{peer[0]}"}).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
                else:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nServer: awselb/2.0\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self):
        self.listener.close()


@pytest.fixture
def fake_alb():
    alb = _FakeAlb()
    yield alb
    alb.close()


def _run(port, http, count=20):
    request = {"targets": [{"ip": "127.0.0.1", "port": port}], "proto": "tcp",
               "count": count, "concurrency": 5, "timeout": 3.0, "http": http}
    return SpreadEngine(request).run()["records"]


def test_engine_counts_the_pod_and_forwarded_for_or_the_albs_status(fake_alb):
    records = _run(fake_alb.port, {"host": "shop.example.com", "path": "/api/items"})
    assert {(r["outcome"], r["pod"], r["forwarded_for"], r["status"]) for r in records} == {
        ("ok", "api-1", "127.0.0.1", 200)}
    assert all(h.startswith(b"GET /api/items HTTP/1.1\r\nHost: shop.example.com\r\n")
               for h in fake_alb.heads)
    wrong_host = _run(fake_alb.port, {"host": ALB_NAME, "path": "/api/items"}, count=5)
    assert {(r["outcome"], r["status"], r["error"]) for r in wrong_host} == {
        ("http-404", 404, "HTTP status 404 Not Found from awselb/2.0")}


def _record(pod_ip, forwarded, port, outcome="ok", status=200, error=None):
    return ConnRecord("203.0.113.49:80", outcome, 1.0, local=f"203.0.113.100:{port}",
                      pod=f"web-{pod_ip[-1]}" if outcome == "ok" else None,
                      pod_ip=pod_ip if outcome == "ok" else None,
                      client=f"172.31.0.11:{port}" if outcome == "ok" else None,
                      forwarded_for=forwarded, status=status, error=error)


def test_summary_keeps_tcp_source_and_forwarded_for_apart_and_counts_statuses():
    records = [_record("192.168.1.2", "203.0.113.100", 40000 + i) for i in range(6)]
    records += [_record("192.168.2.3", "203.0.113.100", 41000 + i) for i in range(4)]
    records += [_record(None, None, 42000 + i, "http-404", 404,
                        "HTTP status 404 Not Found from awselb/2.0") for i in range(3)]
    records += [_record(None, None, 43000, "http-502", 502, "HTTP status 502 Bad Gateway"),
                _record(None, None, 43001, "timeout", None)]
    http = HttpTarget(f"http://{ALB_NAME}/", "203.0.113.49", 80, "shop.example.com", "/")
    result = summarize(records, source="client", proto="tcp", targets=["203.0.113.49:80"],
                       elapsed_s=1.0, http=http.to_json())
    first = result.endpoints[0]
    assert first.sources == {"172.31.0.11": 6} and first.forwarded_for == {"203.0.113.100": 6}
    assert result.failures == {"timeout": 1, "http-404": 3, "http-502": 1}
    data = json.loads(json.dumps(result.to_json()))
    assert data["endpoints"][0]["forwarded_for"] == {"203.0.113.100": 6}
    assert data["http"]["host"] == "shop.example.com"
    text = result.describe()
    assert f"to http://{ALB_NAME}/ (203.0.113.49:80, Host shop.example.com)" in text
    assert "X-FORWARDED-FOR" in text.splitlines()[1]
    assert "172.31.0.11  203.0.113.100" in text
    assert "http-404 3 (HTTP status 404 Not Found from awselb/2.0)" in text


def test_summary_without_a_proxy_shows_no_forwarded_column():
    records = [_record("192.168.1.2", None, 40000), _record("192.168.2.3", None, 40001)]
    result = summarize(records, source="client", proto="tcp", targets=["1.2.3.4:80"],
                       elapsed_s=1.0)
    assert "forwarded_for" not in result.to_json()["endpoints"][0]
    assert "http" not in result.to_json()
    assert "X-FORWARDED-FOR" not in result.describe()


@pytest.fixture
def lab_dir(tmp_path, monkeypatch):
    """A lab folder with the default spec and public DNS that knows an ALB."""
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path))
    root = tmp_path / "l7"
    root.mkdir()
    shutil.copy(default_spec_path(), root / "cluster.yaml")
    (root / "outside-dns.json").write_text(json.dumps({ALB_NAME: ["203.0.113.49"]}))
    return "l7"


def test_url_resolves_through_public_dns_with_the_host_curl_would_send(lab_dir):
    got = resolve_http_target(lab_dir, f"http://{ALB_NAME}/api/items?x=1")
    assert got == HttpTarget(f"http://{ALB_NAME}/api/items?x=1", "203.0.113.49", 80,
                             ALB_NAME, "/api/items?x=1")
    other = resolve_http_target(lab_dir, f"http://{ALB_NAME}:8080", "shop.example.com")
    assert (other.port, other.host, other.path) == (8080, "shop.example.com", "/")
    assert resolve_http_target(lab_dir, f"http://{ALB_NAME}:8080").host == f"{ALB_NAME}:8080"
    # NAME:PORT with --host-header: the same request, path /
    plain = resolve_http_target(lab_dir, f"{ALB_NAME}:80", "shop.example.com")
    assert (plain.address, plain.port, plain.host, plain.path) == (
        "203.0.113.49", 80, "shop.example.com", "/")


@pytest.mark.parametrize("text, host, flag", [
    ("https://shop.example.com/", None, "--to"),
    ("http://nosuch.example.com/", None, "--to"),
    ("http://user:pw@203.0.113.49/", None, "--to"),
    ("http://203.0.113.49:99999/", None, "--to"),
    ("http://203.0.113.49/", "shop.example.com/x", "--host-header"),
    ("http://203.0.113.49/", "bad host", "--host-header"),
])
def test_bad_http_targets_name_the_flag(lab_dir, text, host, flag):
    with pytest.raises(UsageError, match=flag):
        resolve_http_target(lab_dir, text, host)


@pytest.mark.parametrize("argv, flag", [
    (["probe", "spread", "--from", "client", "--to", "https://shop.example.com/"], "--to"),
    (["probe", "spread", "--from", "client", "--proto", "udp", "--to",
      f"http://{ALB_NAME}/"], "--proto"),
    (["probe", "spread", "--from", "client", "--to", f"{ALB_NAME}:80", "--host-header",
      "shop.example.com/x"], "--host-header"),
    (["trace", "--from", "client", "--to", "http://nosuch.example.com/api"], "--to"),
])
def test_cli_refuses_bad_http_targets_with_exit_2(lab_dir, capsys, argv, flag):
    assert main([*argv, "--name", lab_dir]) == 2
    assert f"svclab: error: {flag}" in capsys.readouterr().err
