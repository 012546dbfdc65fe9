"""Target health as AWS keeps it: a state machine per (load balancer, target),
and the two kinds of check (TCP connect, HTTP GET) run from the ELB's VPC side.

States: `initial` (registered, not yet proven: gets no traffic), `healthy`,
`unhealthy`.  `healthy_threshold` consecutive successes make a target
healthy, `unhealthy_threshold` consecutive failures make it unhealthy.  The
state machine is pure (time is passed in), so tests drive it with a fake clock.
"""
from __future__ import annotations

import asyncio
import errno as errno_module
from dataclasses import dataclass, field, replace

from base.elb_api import HealthCheck

INITIAL, HEALTHY, UNHEALTHY = "initial", "healthy", "unhealthy"
MAX_TRANSITIONS = 20


@dataclass(frozen=True)
class Transition:
    at: float              # wall-clock time (seconds since the epoch)
    state: str
    reason: str


@dataclass(frozen=True)
class TargetHealth:
    """What the ELB knows about one target; `observe` returns the next value."""

    node: str
    address: str
    state: str = INITIAL
    successes: int = 0      # consecutive
    failures: int = 0       # consecutive
    checks: int = 0
    last_check: float | None = None
    last_result: str = ""   # "ok" or why the check failed
    transitions: tuple[Transition, ...] = field(default=())

    @property
    def in_service(self) -> bool:
        return self.state == HEALTHY

    def observe(self, ok: bool, detail: str, now: float, check: HealthCheck) -> TargetHealth:
        successes = self.successes + 1 if ok else 0
        failures = 0 if ok else self.failures + 1
        state = self.state
        if ok and state != HEALTHY and successes >= check.healthy_threshold:
            state = HEALTHY
        elif not ok and state != UNHEALTHY and failures >= check.unhealthy_threshold:
            state = UNHEALTHY
        transitions = self.transitions
        if state != self.state:
            why = (f"{successes} consecutive successful checks" if ok
                   else f"{failures} consecutive failed checks ({detail})")
            transitions = (transitions + (Transition(now, state, why),))[-MAX_TRANSITIONS:]
        return replace(self, state=state, successes=successes, failures=failures,
                       checks=self.checks + 1, last_check=now,
                       last_result="ok" if ok else detail, transitions=transitions)


# --- the checks ----------------------------------------------------------------

async def tcp_check(address: str, port: int, timeout: float,
                    source: str | None = None) -> tuple[bool, str]:
    """Healthy when a TCP connection is accepted within the timeout."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            address, port, local_addr=(source, 0) if source else None), timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except OSError as err:
        return False, errno_name(err)
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (OSError, asyncio.TimeoutError):
        pass
    return True, "ok"


async def http_check(address: str, port: int, path: str, timeout: float,
                     source: str | None = None) -> tuple[bool, str]:
    """Healthy when GET path answers 200 within the timeout (503 is unhealthy)."""
    async def exchange() -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(
            address, port, local_addr=(source, 0) if source else None)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\n"
                         "User-Agent: ELB-HealthChecker/1.0\r\nConnection: close\r\n\r\n"
                         .encode())
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        parts = status_line.decode(errors="replace").split()
        if len(parts) < 2 or not parts[1].isdigit():
            return False, "bad-reply"
        code = int(parts[1])
        return code == 200, "ok" if code == 200 else f"http-{code}"
    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        return False, "timeout"
    except OSError as err:
        return False, errno_name(err)


async def run_check(check: HealthCheck, address: str,
                    source: str | None = None) -> tuple[bool, str]:
    if check.protocol == "HTTP":
        return await http_check(address, check.port, check.path, check.timeout, source)
    return await tcp_check(address, check.port, check.timeout, source)


def errno_name(err: OSError) -> str:
    if err.errno in errno_module.errorcode:
        return errno_module.errorcode[err.errno].lower()
    return type(err).__name__.lower()

