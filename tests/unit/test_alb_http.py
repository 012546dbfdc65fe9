"""HTTP heads as the ALB reads and rewrites them (agents/elb/alb/http.py):
X-Forwarded-* headers, hop-by-hop headers, framing, keep-alive, redirects."""
from __future__ import annotations

import pytest

from agents.elb.alb.http import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    HttpParseError,
    body_framing,
    client_response_head,
    error_page,
    forward_head,
    new_trace_id,
    parse_request,
    parse_response,
    redirect_location,
    response,
    wants_keep_alive,
)


def request(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def headers_of(data: bytes) -> list[tuple[str, str]]:
    lines = data.decode().split("\r\n")[1:]
    return [tuple(line.split(": ", 1)) for line in lines if line]


def test_the_forwarded_head_carries_the_client_and_the_listener():
    head = parse_request(request("GET /a?b=1 HTTP/1.1", "Host: shop.example.com",
                                 "User-Agent: curl/8", "Connection: keep-alive, X-Private",
                                 "X-Private: secret", "Keep-Alive: timeout=5",
                                 "X-Forwarded-Proto: ftp"))
    data, trace = forward_head(head, "203.0.113.7", "https", 443, "Root=1-00000001-abc")
    assert data.decode().startswith("GET /a?b=1 HTTP/1.1\r\n")
    assert headers_of(data) == [
        ("Host", "shop.example.com"), ("User-Agent", "curl/8"),
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"), ("X-Amzn-Trace-Id", "Root=1-00000001-abc")]
    assert trace == "Root=1-00000001-abc"


def test_x_forwarded_for_is_appended_to_and_a_trace_id_kept():
    head = parse_request(request("POST / HTTP/1.1", "Host: h", "X-Forwarded-For: 198.51.100.1",
                                 "x-forwarded-for: 10.0.0.1", "X-Amzn-Trace-Id: Root=1-x-y",
                                 "Content-Length: 3"))
    data, trace = forward_head(head, "203.0.113.7", "http", 80, "Root=1-new")
    found = dict(headers_of(data))
    assert found["X-Forwarded-For"] == "198.51.100.1, 10.0.0.1, 203.0.113.7"
    assert found["X-Amzn-Trace-Id"] == "Root=1-x-y" and trace == "Root=1-x-y"
    assert found["Content-Length"] == "3"


def test_an_upgrade_is_passed_on():
    head = parse_request(request("GET /ws HTTP/1.1", "Host: h", "Connection: Upgrade",
                                 "Upgrade: websocket"))
    found = dict(headers_of(forward_head(head, "1.2.3.4", "http", 80, "t")[0]))
    assert found["Upgrade"] == "websocket" and found["Connection"] == "upgrade"


@pytest.mark.parametrize("raw", [
    request("GET / HTTP/1.1"),                                   # no Host
    request("GET / HTTP/2.0", "Host: h"),
    request("GET /", "Host: h"),
    request("GET / HTTP/1.1", "Host h"),
    request("GET / HTTP/1.1", "Host: h", "Bad Name: x"),
    request("POST / HTTP/1.1", "Host: h", "Content-Length: 1", "Transfer-Encoding: chunked"),
])
def test_malformed_requests_are_refused(raw):
    with pytest.raises(HttpParseError):
        parse_request(raw)


def test_request_parts():
    head = parse_request(request("GET http://h.example:8080/p/q?x=1 HTTP/1.0"))
    assert (head.host, head.path, head.query, head.version) == \
        ("h.example:8080", "/p/q", "x=1", "HTTP/1.0")


@pytest.mark.parametrize("lines, method, framing", [
    (("HTTP/1.1 200 OK", "Content-Length: 5"), "GET", (LENGTH, 5)),
    (("HTTP/1.1 200 OK", "Content-Length: 0"), "GET", (NO_BODY, 0)),
    (("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"), "GET", (CHUNKED, 0)),
    (("HTTP/1.1 200 OK",), "GET", (UNTIL_CLOSE, 0)),
    (("HTTP/1.1 200 OK", "Content-Length: 5"), "HEAD", (NO_BODY, 0)),
    (("HTTP/1.1 304 Not Modified", "Content-Length: 5"), "GET", (NO_BODY, 0)),
    (("HTTP/1.1 204 No Content",), "GET", (NO_BODY, 0)),
])
def test_response_framing(lines, method, framing):
    assert body_framing(parse_response(request(*lines)), method) == framing


def test_request_without_length_has_no_body_and_bad_length_is_refused():
    assert body_framing(parse_request(request("GET / HTTP/1.1", "Host: h"))) == (NO_BODY, 0)
    with pytest.raises(HttpParseError):
        body_framing(parse_request(request("POST / HTTP/1.1", "Host: h",
                                           "Content-Length: -1")))
    with pytest.raises(HttpParseError):
        parse_response(b"HTTP/1.1 2000 OK\r\n\r\n")


@pytest.mark.parametrize("lines, keep", [
    (("GET / HTTP/1.1", "Host: h"), True),
    (("GET / HTTP/1.1", "Host: h", "Connection: close"), False),
    (("GET / HTTP/1.0",), False),
    (("GET / HTTP/1.0", "Connection: Keep-Alive"), True),
])
def test_keep_alive(lines, keep):
    assert wants_keep_alive(parse_request(request(*lines))) is keep


def test_the_client_gets_the_albs_connection_headers():
    resp = parse_response(request("HTTP/1.1 200 OK", "Connection: close", "Keep-Alive: x",
                                  "Content-Length: 2", "Set-Cookie: a=b"))
    out = client_response_head(resp, keep_alive=True).decode()
    assert out == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\n"
    assert "Connection: close" in client_response_head(resp, keep_alive=False).decode()


def test_an_http_1_0_client_is_told_the_connection_stays():
    resp = parse_response(request("HTTP/1.1 200 OK", "Content-Length: 2"))
    assert "Connection: keep-alive" in client_response_head(resp, True, "HTTP/1.0").decode()
    assert "Connection" not in client_response_head(resp, True, "HTTP/1.1").decode()


def test_the_albs_own_answers():
    data = response(502, error_page(502), keep_alive=False).decode()
    assert data.startswith("HTTP/1.1 502 Bad Gateway\r\n")
    assert "Server: awselb/2.0\r\n" in data and "Connection: close\r\n" in data
    assert data.endswith("<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
    assert "503 Service Temporarily Unavailable" in error_page(503).decode()


@pytest.mark.parametrize("host, protocol, port, listener, location", [
    ("shop.example.com", "HTTPS", 443, 80, "https://shop.example.com/p?q=1"),
    ("shop.example.com:8080", "HTTPS", 8443, 8080, "https://shop.example.com:8443/p?q=1"),
    ("shop.example.com", "HTTP", None, 8080, "http://shop.example.com:8080/p?q=1"),
])
def test_redirect_location(host, protocol, port, listener, location):
    head = parse_request(request("GET /p?q=1 HTTP/1.1", f"Host: {host}"))
    assert redirect_location(head, protocol, port, listener) == location


def test_trace_ids_look_like_amazons():
    trace = new_trace_id(0x5f000000)
    assert trace.startswith("Root=1-5f000000-") and len(trace.split("-")[2]) == 24
    assert new_trace_id() != new_trace_id()
