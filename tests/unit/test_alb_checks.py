"""An ALB target group's health checks (agents/elb/alb/checks.py): the state
machine with ALB's first-check rule, and the HTTP check with matcher codes."""
from __future__ import annotations

import asyncio

import pytest

from agents.elb.alb.checks import http_check, observe
from agents.elb.health import HEALTHY, INITIAL, UNHEALTHY, TargetHealth
from base.alb_api import HealthCheck, Target

CHECK = HealthCheck(interval=1, timeout=0.5, healthy_threshold=3, unhealthy_threshold=2)


def run(health: TargetHealth, results: list[bool]) -> list[str]:
    states = []
    for i, ok in enumerate(results):
        health = observe(health, ok, "ok" if ok else "timeout", float(i), CHECK)
        states.append(health.state)
    return states


def test_a_new_target_is_healthy_after_its_first_successful_check():
    assert run(TargetHealth("web-1", "10.0.0.1:80"), [True]) == [HEALTHY]
    assert run(TargetHealth("web-1", "10.0.0.1:80"), [False, False, True]) == \
        [INITIAL, UNHEALTHY, UNHEALTHY]


def test_thresholds_take_a_target_out_and_bring_it_back():
    states = run(TargetHealth("web-1", "10.0.0.1:80"),
                 [True, False, False, True, True, True])
    assert states == [HEALTHY, HEALTHY, UNHEALTHY, UNHEALTHY, UNHEALTHY, HEALTHY]


@pytest.mark.parametrize("code, matcher, outcome", [
    (200, "200", (True, "ok")), (204, "200-299", (True, "ok")),
    (302, "200", (False, "http-302")), (503, "200,202", (False, "http-503")),
])
def test_the_answer_must_be_one_of_the_matchers_codes(code, matcher, outcome):
    async def main():
        seen = []

        async def answer(reader, writer):
            seen.append((await reader.readuntil(b"\r\n\r\n")).decode())
            writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        check = HealthCheck(path="/healthz", timeout=2, matcher=matcher)
        result = await http_check(check, Target("127.0.0.1", port))
        server.close()
        return result, seen
    result, seen = asyncio.run(main())
    assert result == outcome
    assert seen[0].startswith("GET /healthz HTTP/1.1\r\n")
    assert "User-Agent: ELB-HealthChecker/2.0\r\n" in seen[0]


def test_a_refused_or_silent_target_fails_its_check():
    async def main():
        silent = await asyncio.start_server(lambda r, w: asyncio.sleep(5), "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        quick = HealthCheck(timeout=0.2)
        results = [await http_check(quick, Target("127.0.0.1", port)),
                   await http_check(HealthCheck(port=1, timeout=0.5), Target("127.0.0.1", port))]
        silent.close()
        return results
    assert asyncio.run(main()) == [(False, "timeout"), (False, "econnrefused")]
