"""An ALB target group's health checks: HTTP(S) GET of the path on the target
(its traffic port unless the check names one), healthy when the answer's
code is one of the matcher's, within the timeout.

The state machine is the ELB's (agents/elb/health.py) with one difference
AWS documents for ALBs: a newly registered target becomes healthy after its
first successful check; afterwards `healthy_threshold` consecutive
successes bring an unhealthy target back and `unhealthy_threshold`
consecutive failures take a healthy one out.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ssl

from agents.elb.health import INITIAL, TargetHealth, errno_name
from base.alb_api import HTTPS, HealthCheck, Target

USER_AGENT = "ELB-HealthChecker/2.0"


def observe(health: TargetHealth, ok: bool, detail: str, now: float,
            check: HealthCheck) -> TargetHealth:
    """The target's next health after one check."""
    if health.state == INITIAL:
        check = dataclasses.replace(check, healthy_threshold=1)
    return health.observe(ok, detail, now, check)


def _insecure() -> ssl.SSLContext:
    """ALB does not verify its targets' certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


TARGET_TLS = _insecure()


async def http_check(check: HealthCheck, target: Target,
                     source: str | None = None) -> tuple[bool, str]:
    """(healthy?, "ok" or why not) for one check of one target."""
    port = check.port or target.port

    async def exchange() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(
            target.address, port, ssl=TARGET_TLS if check.protocol == HTTPS else None,
            local_addr=(source, 0) if source else None)
        try:
            writer.write(f"GET {check.path} HTTP/1.1\r\nHost: {target.address}:{port}\r\n"
                         f"User-Agent: {USER_AGENT}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        parts = status_line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, "bad-reply"
        code = int(parts[1])
        return (True, "ok") if check.accepts(code) else (False, f"http-{code}")

    try:
        return await asyncio.wait_for(exchange(), check.timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except ssl.SSLError as err:
        return False, f"tls-{err.reason or 'error'}".lower()
    except OSError as err:
        return False, errno_name(err)
