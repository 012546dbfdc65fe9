"""What a workload server is asked to serve: plain frozen data, parsed from the CLI.

Kept apart from the server so the pod runtime can build a `WorkloadConfig`
(or the equivalent argv) from a Pod spec without importing asyncio code.
"""
from __future__ import annotations

from dataclasses import dataclass

from base.errors import SvclabError, UsageError

SUPPORTED_PROTOCOLS = ("TCP", "UDP")


class WorkloadError(SvclabError):
    """Base of the errors the workload server raises on purpose."""


class WorkloadConfigError(UsageError, WorkloadError):
    """A configuration the server cannot run with (exit code 2)."""


class PortSpecError(WorkloadConfigError):
    """A `--port` value that is not `PORT[/TCP|/UDP]`."""


@dataclass(frozen=True, order=True)
class PortSpec:
    """One declared container port, e.g. 8000/TCP (port 0 = any free port, for tests)."""

    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def parse_port_spec(text: str) -> PortSpec:
    """Parse `80`, `80/TCP`, `53/udp` into a PortSpec; raise PortSpecError otherwise."""
    number, _, protocol = text.strip().partition("/")
    protocol = (protocol or "TCP").upper()
    if protocol not in SUPPORTED_PROTOCOLS:
        choices = ", ".join(SUPPORTED_PROTOCOLS)
        raise PortSpecError(f"port {text!r}: protocol must be one of {choices}")
    if not number.isdigit() or not 0 <= int(number) <= 65535:
        raise PortSpecError(f"port {text!r}: port number must be 0-65535")
    return PortSpec(int(number), protocol)


@dataclass(frozen=True)
class WorkloadConfig:
    """Everything the server needs; defaults match a pod with no declared ports."""

    pod_name: str
    pod_ip: str
    ports: tuple[PortSpec, ...] = (PortSpec(80, "TCP"),)
    bind_ip: str = "0.0.0.0"
    ready_file: str | None = None
    grace_seconds: float = 0.0
    # how long a silent TCP client waits for the echo banner; an HTTP client (an
    # ALB on a loaded machine) may send its request this late and still get HTTP
    sniff_timeout: float = 1.0
    idle_timeout: float = 60.0     # echo sessions idle longer than this are closed
    drain_timeout: float = 0.5     # in-flight connections get this long once listeners close
    backlog: int = 1024

    def __post_init__(self) -> None:
        if not self.ports:
            object.__setattr__(self, "ports", (PortSpec(80, "TCP"),))
        # Declared ports are unique per (port, protocol); each port 0 is its own listener.
        fixed = sorted({spec for spec in self.ports if spec.port != 0})
        ephemeral = [spec for spec in self.ports if spec.port == 0]
        object.__setattr__(self, "ports", tuple(fixed + ephemeral))
        if self.grace_seconds < 0:
            raise WorkloadConfigError(f"grace must be >= 0, got {self.grace_seconds}")
