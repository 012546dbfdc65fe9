"""The API server reads a request's head itself (controlplane/api/request_head.py):
what a client sends on the wire gets the answers the standard library's
parser gave."""

from __future__ import annotations

import socket
import ssl

import pytest


def exchange(server, raw: bytes) -> tuple[bytes, bool]:
    """Send raw bytes over TLS; (everything answered, whether the server closed)."""
    host, port = server.addresses[0].rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(server.ca_cert_path))
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=10) as plain, \
            context.wrap_socket(plain) as tls:
        tls.sendall(raw)
        tls.settimeout(1.0)
        answer, closed = b"", False
        try:
            while True:
                data = tls.recv(65536)
                if not data:
                    closed = True
                    break
                answer += data
        except TimeoutError:
            pass
        return answer, closed


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def request(server, *header_lines: str, line: str = "GET /api/v1/namespaces/default HTTP/1.1"
            ) -> bytes:
    head = [line, f"Host: {server.addresses[0]}", *header_lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def test_headers_are_read_whatever_their_case_and_folding(api_server):
    token = api_server.admin_token
    answer, closed = exchange(api_server, request(
        api_server, f"aUtHoRiZaTiOn: Bearer {token}", "X-Folded: first",
        "  continued", "Accept: application/json"))
    assert status_of(answer) == 200 and b'"name":"default"' in answer
    assert not closed        # HTTP/1.1: the connection stays open


def test_connection_close_is_honoured(api_server):
    answer, closed = exchange(api_server, request(
        api_server, f"Authorization: Bearer {api_server.admin_token}", "Connection: close"))
    assert status_of(answer) == 200 and closed


def test_two_requests_in_one_write_are_both_answered(api_server):
    auth = f"Authorization: Bearer {api_server.admin_token}"
    answer, _ = exchange(api_server, request(api_server, auth) + request(
        api_server, auth, line="GET /api/v1/namespaces/kube-system HTTP/1.1"))
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and b'"name":"kube-system"' in answer


@pytest.mark.parametrize("raw, status", [
    (b"GET /api HTTP/2.0\r\n\r\n", 505),
    (b"GET /api HTTP/1.x\r\n\r\n", 400),
    (b"GET /api HTTP/1.1 extra\r\n\r\n", 400),
    (b"POST /api\r\n\r\n", 400),
])
def test_a_bad_request_line_is_refused(api_server, raw, status):
    answer, closed = exchange(api_server, raw)
    # The request's version is not understood, so the answer is HTTP/0.9's: no
    # status line, only the error page (as http.server answers).
    assert f"Error code: {status}".encode() in answer and closed


def test_too_many_or_too_long_header_lines_get_431(api_server):
    many = request(api_server, *(f"X-H{i}: v" for i in range(101)))
    answer, closed = exchange(api_server, many)
    assert status_of(answer) == 431 and closed
    long = request(api_server, "X-Long: " + "a" * 70000)
    answer, closed = exchange(api_server, long)
    assert status_of(answer) == 431 and closed


def test_expect_100_continue_gets_its_interim_answer(api_server):
    body = b'{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"expect"}}'
    head = request(api_server, f"Authorization: Bearer {api_server.admin_token}",
                   "Content-Type: application/json", f"Content-Length: {len(body)}",
                   "Expect: 100-continue", line="POST /api/v1/namespaces HTTP/1.1")
    answer, _ = exchange(api_server, head + body)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert b"HTTP/1.1 201 Created" in answer
