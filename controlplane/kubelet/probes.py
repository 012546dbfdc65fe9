"""Readiness (and liveness) probes: when to run them and what they conclude.

`ProbeTracker` holds a probe's schedule and thresholds exactly as the
kubelet's prober worker does: nothing before initialDelaySeconds, then one
try every periodSeconds; `successThreshold` successes in a row make the
result true, `failureThreshold` failures in a row make it false.  A
readiness result starts false.  `run_probe` performs one try through the
PodRuntime: tcpSocket and httpGet from the node to the pod IP, exec inside
the pod; named ports resolve through the container's ports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from base.cri import PodRuntime, PodRuntimeError


@dataclass
class ProbeTracker:
    probe: dict
    started: float                       # monotonic time the container started
    result: bool = False
    successes: int = 0
    failures: int = 0
    next_due: float = field(default=0.0)
    last_message: str = ""

    def __post_init__(self) -> None:
        self.next_due = self.started + float(self.probe.get("initialDelaySeconds", 0))

    @property
    def period(self) -> float:
        return float(self.probe.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        return float(self.probe.get("timeoutSeconds", 1))

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, success: bool, now: float, message: str = "") -> bool:
        """Count one try; return True when the result changed."""
        self.next_due = now + self.period
        self.last_message = message
        before = self.result
        if success:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.result = False
        return before != self.result


def resolve_port(port, container: dict) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def run_probe(runtime: PodRuntime, probe: dict, container: dict, *, node: str, pod_ip: str,
              namespace: str, pod: str, timeout: float | None = None) -> tuple[bool, str]:
    """One try of a probe: (success, message for kubectl describe / events)."""
    timeout = timeout if timeout is not None else float(probe.get("timeoutSeconds", 1))
    try:
        if "tcpSocket" in probe:
            action = probe["tcpSocket"]
            port = resolve_port(action.get("port"), container)
            if port is None:
                return False, f"port {action.get('port')!r} not found"
            host = action.get("host") or pod_ip
            if runtime.tcp_probe(node, host, port, timeout):
                return True, ""
            return False, f"dial tcp {host}:{port}: connect: connection refused"
        if "httpGet" in probe:
            action = probe["httpGet"]
            port = resolve_port(action.get("port"), container)
            if port is None:
                return False, f"port {action.get('port')!r} not found"
            host = action.get("host") or pod_ip
            headers = {h["name"]: h.get("value", "") for h in action.get("httpHeaders") or []}
            code = runtime.http_probe(node, action.get("scheme", "HTTP"), host, port,
                                      action.get("path", "/"), headers, timeout)
            if 200 <= code < 400:
                return True, ""
            return False, (f"HTTP probe failed with statuscode: {code}" if code else
                           f'Get "http://{host}:{port}{action.get("path", "/")}": '
                           "dial tcp: connect: connection refused")
        if "exec" in probe:
            command = list((probe["exec"] or {}).get("command") or [])
            if not command:
                return False, "exec probe without a command"
            code = runtime.exec_in_pod(namespace, pod, command, timeout,
                                       container.get("name", ""))
            return code == 0, "" if code == 0 else f"command {command!r} exited with {code}"
    except PodRuntimeError as err:
        return False, str(err)
    return False, "probe type not supported (tcpSocket, httpGet, exec are)"

