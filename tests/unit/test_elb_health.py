"""Target health: AWS's thresholds on a fake clock, and the real TCP/HTTP checks
against loopback servers."""
from __future__ import annotations

import asyncio
import socket

from agents.elb.health import HEALTHY, INITIAL, UNHEALTHY, TargetHealth, http_check, tcp_check
from agents.elb.status import targets_in_service
from base.elb_api import HealthCheck, Listener, LoadBalancer, Target

CLASSIC_CHECK = HealthCheck("TCP", 1, interval=10, timeout=5, healthy_threshold=2,
                            unhealthy_threshold=6)


def run(target, results, check=CLASSIC_CHECK, start=1000.0):
    """Feed check results at interval spacing; return the final TargetHealth."""
    now = start
    for ok in results:
        target = target.observe(ok, "ok" if ok else "timeout", now, check)
        now += check.interval
    return target


def test_new_target_needs_healthy_threshold_successes():
    target = TargetHealth("n1", "172.31.0.11")
    assert target.state == INITIAL and not target.in_service
    after_one = run(target, [True])
    assert after_one.state == INITIAL
    after_two = run(target, [True, True])
    assert after_two.state == HEALTHY and after_two.in_service
    assert after_two.transitions[-1].at == 1010.0
    assert after_two.transitions[-1].reason == "2 consecutive successful checks"


def test_healthy_target_leaves_after_unhealthy_threshold_failures_not_before():
    healthy = run(TargetHealth("n1", "172.31.0.11"), [True, True])
    five = run(healthy, [False] * 5, start=2000.0)
    assert five.state == HEALTHY and five.failures == 5
    six = run(healthy, [False] * 6, start=2000.0)
    assert six.state == UNHEALTHY
    # the sixth failure came 5 intervals after the first: detection time <= 6 x 10 s
    assert six.transitions[-1].at == 2050.0
    assert "6 consecutive failed checks (timeout)" in six.transitions[-1].reason


def test_a_success_resets_the_failure_count_and_recovery_needs_the_threshold():
    healthy = run(TargetHealth("n1", "a"), [True, True])
    flappy = run(healthy, [False] * 5 + [True] + [False] * 5)
    assert flappy.state == HEALTHY
    down = run(healthy, [False] * 6)
    back_one = run(down, [True])
    assert back_one.state == UNHEALTHY
    back = run(down, [True, True])
    assert back.state == HEALTHY
    assert [t.state for t in back.transitions] == [HEALTHY, UNHEALTHY, HEALTHY]


def _lb(flavour):
    return LoadBalancer("d/w", "u", "h", flavour, "203.0.113.11", (Listener(80, "TCP", 1),),
                        (Target("n1", "a"), Target("n2", "b")), CLASSIC_CHECK)


def test_in_service_is_the_healthy_set_and_an_all_unhealthy_nlb_fails_open():
    up = run(TargetHealth("n1", "a"), [True, True])
    down = run(TargetHealth("n2", "b"), [False] * 6)
    starting = TargetHealth("n2", "b")
    assert targets_in_service(_lb("classic"), {"a": up, "b": down}) == ("a",)
    assert targets_in_service(_lb("nlb"), {"a": up, "b": starting}) == ("a",)
    all_down = {"a": run(TargetHealth("n1", "a"), [False] * 6), "b": down}
    assert targets_in_service(_lb("classic"), all_down) == ()
    assert targets_in_service(_lb("nlb"), all_down) == ("a", "b")
    assert targets_in_service(_lb("nlb"), {"a": starting, "b": down}) == ()


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


async def _serve_http(sock: socket.socket, status: int) -> asyncio.AbstractServer:
    async def answer(reader, writer):
        if b"\r\n\r\n" not in await reader.read(4096):   # the TCP check just closes
            writer.close()
            return
        body = b'{"localEndpoints": 0}'
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(answer, sock=sock)


def test_tcp_and_http_checks_against_loopback():
    async def scenario():
        ok_sock, bad_sock, silent = _listening(), _listening(), _listening()
        ok_server = await _serve_http(ok_sock, 200)
        bad_server = await _serve_http(bad_sock, 503)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        try:
            results = {
                "tcp-open": await tcp_check("127.0.0.1", ok_sock.getsockname()[1], 1),
                "tcp-closed": await tcp_check("127.0.0.1", closed_port, 1),
                "http-200": await http_check("127.0.0.1", ok_sock.getsockname()[1],
                                             "/healthz", 1),
                "http-503": await http_check("127.0.0.1", bad_sock.getsockname()[1],
                                             "/healthz", 1),
                "http-silent": await http_check("127.0.0.1", silent.getsockname()[1],
                                                "/healthz", 0.3),
            }
        finally:
            ok_server.close()
            bad_server.close()
            silent.close()
        return results
    results = asyncio.run(scenario())
    assert results == {"tcp-open": (True, "ok"), "tcp-closed": (False, "econnrefused"),
                       "http-200": (True, "ok"), "http-503": (False, "http-503"),
                       "http-silent": (False, "timeout")}
