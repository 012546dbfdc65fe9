"""The workload server's answers as pure functions: port specs, sniffing, routes."""
import json

import pytest

from agents.workload import PortSpec, PortSpecError, WorkloadConfig, parse_port_spec, protocol
from agents.workload.config import WorkloadConfigError


@pytest.mark.parametrize("text, expected", [
    ("80", PortSpec(80, "TCP")),
    ("80/TCP", PortSpec(80, "TCP")),
    ("53/udp", PortSpec(53, "UDP")),
    ("8000/Tcp", PortSpec(8000, "TCP")),
    ("80/", PortSpec(80, "TCP")),
])
def test_port_spec_parses(text, expected):
    assert parse_port_spec(text) == expected


@pytest.mark.parametrize("text", ["", "http", "80/SCTP", "70000/TCP", "-1/TCP"])
def test_port_spec_rejects(text):
    with pytest.raises(PortSpecError):
        parse_port_spec(text)


def test_config_defaults_to_port_80_and_dedupes():
    assert WorkloadConfig("p", "1.2.3.4", ports=()).ports == (PortSpec(80, "TCP"),)
    config = WorkloadConfig("p", "1.2.3.4", ports=(PortSpec(53, "UDP"), PortSpec(80), PortSpec(80)))
    assert config.ports == (PortSpec(53, "UDP"), PortSpec(80, "TCP"))


def test_negative_grace_is_a_usage_error():
    with pytest.raises(WorkloadConfigError):
        WorkloadConfig("p", "1.2.3.4", grace_seconds=-1)


@pytest.mark.parametrize("data, expected", [
    (b"", protocol.Sniff.UNDECIDED),
    (b"GE", protocol.Sniff.UNDECIDED),
    (b"GET", protocol.Sniff.UNDECIDED),
    (b"GET /", protocol.Sniff.HTTP),
    (b"HEAD / HTTP/1.1\r\n", protocol.Sniff.HTTP),
    (b"hello\n", protocol.Sniff.PLAIN),
    (b"GETX", protocol.Sniff.PLAIN),
    (b"\x16\x03\x01", protocol.Sniff.PLAIN),
])
def test_sniff(data, expected):
    assert protocol.sniff_protocol(data) is expected


VIEW = protocol.ServerView("web-7d4b9c-abcde", "192.168.1.5", ("192.168.2.9", 40123), 8000, True)


def _get(target, view=VIEW):
    return protocol.route(protocol.HttpRequest("GET", target, "HTTP/1.1"), view)


def test_routes_answer_identity_and_client():
    assert _get("/hostname").body == b"web-7d4b9c-abcde"
    assert _get("/clientip").body == b"192.168.2.9:40123"
    assert _get("/echo?msg=hello%20there").body == b"hello there"
    assert _get("/echo").body == b""
    document = json.loads(_get("/json").body)
    assert document == {"pod": "web-7d4b9c-abcde", "podIP": "192.168.1.5",
                        "client": "192.168.2.9:40123", "port": 8000, "proto": "tcp"}
    assert json.loads(_get("/").body) == document


def test_health_readiness_and_errors():
    assert _get("/healthz").status == 200
    assert _get("/ready").status == 200
    not_ready = protocol.ServerView("p", "1.1.1.1", ("1.1.1.2", 1), 80, False)
    assert _get("/ready", not_ready).status == 503
    assert _get("/nope").status == 404
    assert protocol.route(protocol.HttpRequest("POST", "/", "HTTP/1.1"), VIEW).status == 405
    assert protocol.route(None, VIEW).status == 400


def test_request_line_parsing():
    assert protocol.parse_request_line(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n") == \
        protocol.HttpRequest("GET", "/x", "HTTP/1.1")
    assert protocol.parse_request_line(b"GET /x\r\n\r\n") is None


def test_banner_udp_reply_and_ipv6_client():
    assert protocol.banner_line("p", "10.0.0.1", ("10.0.0.2", 5)) == \
        b"svclab p 10.0.0.1 10.0.0.2:5\n"
    assert protocol.udp_reply("p", "10.0.0.1", ("::1", 7), b"hi") == b"svclab p 10.0.0.1 [::1]:7 hi"


def test_rendered_response_has_length_and_close():
    raw = protocol.render_response(protocol.HttpResponse(200, b"abc"), "p")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: 3" in head and b"Connection: close" in head
    assert body == b"abc"
    head_only = protocol.render_response(protocol.HttpResponse(200, b"abc"), "p", head_only=True)
    assert head_only.endswith(b"\r\n\r\n")


ALB_HEAD = (b"GET /api/items?x=1 HTTP/1.1\r\nHost: shop.example.com\r\n"
            b"User-Agent: svclab-spread\r\n"
            b"X-Forwarded-For: 198.18.0.9, 203.0.113.100\r\nX-Forwarded-Proto: https\r\n"
            b"x-forwarded-port: 443\r\nX-Amzn-Trace-Id: Root=1-abc\r\n\r\n")
ALB_VIEW = protocol.ServerView("api-1", "192.168.1.5", ("172.31.0.11", 40123), 8080, True)


def test_the_json_identity_shows_who_the_client_was_behind_a_proxy():
    # The view's client is the proxy (the ALB's ENI via a node); the headers name the client.
    # A path rule forwards /api/items as it is: a svclab probe gets the identity there too.
    document = json.loads(protocol.route(protocol.parse_request_line(ALB_HEAD), ALB_VIEW).body)
    assert document == {"pod": "api-1", "podIP": "192.168.1.5", "client": "172.31.0.11:40123",
                        "port": 8080, "proto": "tcp",
                        "forwardedFor": "198.18.0.9, 203.0.113.100",
                        "forwardedProto": "https", "forwardedPort": "443"}


def test_only_svclab_probes_get_the_identity_on_other_paths():
    browser = ALB_HEAD.replace(b"User-Agent: svclab-spread", b"User-Agent: curl/7.88.1")
    assert protocol.route(protocol.parse_request_line(browser), ALB_VIEW).status == 404
    traced = browser.replace(b"?x=1", b"?x=1&svclab-trace=abc123")
    assert protocol.route(protocol.parse_request_line(traced), ALB_VIEW).status == 200
    # ... and the named routes still answer as themselves.
    request = protocol.parse_request_line(ALB_HEAD.replace(b"/api/items?x=1", b"/clientip"))
    assert protocol.route(request, VIEW).body == b"192.168.2.9:40123"


def test_forwarded_headers_only_when_sent_and_repeated_ones_joined():
    assert protocol.forwarded_headers(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == ()
    head = (b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nX-FORWARDED-FOR: 10.0.0.2\r\n"
            b"\r\nX-Forwarded-Proto: body-not-head")
    assert protocol.forwarded_headers(head) == (("forwardedFor", "10.0.0.1, 10.0.0.2"),)
    document = json.loads(protocol.route(protocol.parse_request_line(
        b"GET / HTTP/1.0\r\n\r\n"), VIEW).body)
    assert "forwardedFor" not in document        # not behind a proxy: as before
