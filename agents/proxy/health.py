"""The agent's HTTP faces: kube-proxy's healthz, its metrics, and the
per-service health-check NodePorts that cloud load balancers poll.

- :10256 `/healthz` and `/livez`: 200 while the last successful sync is
  recent (kube-proxy's JSON: lastUpdated, currentTime), 503 otherwise.
- :10249 `/proxyMode`: the mode, `iptables` or `nftables` (text, no newline),
  as kube-proxy answers it ("Using Source IP" asks it with curl on a node).
- :10249 `/metrics`: Prometheus text: kube-proxy's sync duration
  histograms (all syncs, full ones, partial ones; exponential buckets from
  1 ms, factor 2, 15 of them, as pkg/proxy/metrics), last sync timestamp,
  rule and service counts, sync errors, and svclab's count of periodic
  syncs skipped because nothing had changed.
- every `healthCheckNodePort` of an externalTrafficPolicy=Local service:
  200 when this node has local ready endpoints, else 503, with kube-proxy's
  body {"service": {...}, "localEndpoints": N, "serviceProxyHealthy": true}.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = tuple(0.001 * 2 ** i for i in range(15))   # 1 ms .. 16.384 s


@dataclass
class Histogram:
    """A Prometheus histogram over BUCKETS (counts per bucket, not cumulative)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.counts[next((i for i, bound in enumerate(BUCKETS) if seconds <= bound),
                         len(BUCKETS))] += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip(BUCKETS, self.counts):
            running += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        return lines + [f'{name}_bucket{{le="+Inf"}} {self.count}',
                        f"{name}_sum {self.total:.6f}", f"{name}_count {self.count}"]


@dataclass
class SyncMetrics:
    """What /metrics reports; updated by the agent after every sync."""

    all_syncs: Histogram = field(default_factory=Histogram)
    full_syncs: Histogram = field(default_factory=Histogram)
    partial_syncs: Histogram = field(default_factory=Histogram)
    errors: int = 0
    skipped: int = 0
    last_success: float = 0.0
    rules: dict[str, int] = field(default_factory=dict)    # table -> rule lines
    services: int = 0
    endpoints: int = 0
    changes_ignored: int = 0

    @property
    def syncs(self) -> int:
        return self.all_syncs.count

    def observe(self, seconds: float, partial: bool = False) -> None:
        self.all_syncs.observe(seconds)
        (self.partial_syncs if partial else self.full_syncs).observe(seconds)

    def render(self) -> str:
        lines = self.all_syncs.render("kubeproxy_sync_proxy_rules_duration_seconds",
                                      "SyncProxyRules latency in seconds")
        lines += self.full_syncs.render(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs")
        lines += self.partial_syncs.render(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs")
        lines += ["# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge",
                  f"kubeproxy_sync_proxy_rules_last_timestamp_seconds {self.last_success:.3f}",
                  "# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge"]
        lines += [f'kubeproxy_sync_proxy_rules_iptables_total{{table="{t}"}} {n}'
                  for t, n in sorted(self.rules.items())]
        lines += ["# TYPE kubeproxy_sync_proxy_rules_errors_total counter",
                  f"kubeproxy_sync_proxy_rules_errors_total {self.errors}",
                  "# TYPE svclab_proxy_services gauge", f"svclab_proxy_services {self.services}",
                  "# TYPE svclab_proxy_endpoints gauge", f"svclab_proxy_endpoints {self.endpoints}",
                  "# TYPE svclab_proxy_noop_changes_total counter",
                  f"svclab_proxy_noop_changes_total {self.changes_ignored}",
                  "# HELP svclab_proxy_sync_skipped_total periodic syncs skipped: nothing "
                  "changed in the API or in the kernel (ruleset generation)",
                  "# TYPE svclab_proxy_sync_skipped_total counter",
                  f"svclab_proxy_sync_skipped_total {self.skipped}"]
        return "\n".join(lines) + "\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, respond):
        self.respond = respond      # (path) -> (status, content type, body)
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        status, ctype, body = self.server.respond(self.path.split("?")[0])
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class HttpFaces:
    """Owns every HTTP server of the agent and their threads."""

    def __init__(self, metrics: SyncMetrics, healthy_within: float, proxy_mode: str = ""):
        self.metrics = metrics
        self.healthy_within = healthy_within
        self.proxy_mode = proxy_mode          # what /proxyMode answers (404 while "")
        self._servers: dict[object, _Server] = {}
        self._local_endpoints: dict[int, tuple[str, str, int]] = {}  # port -> ns, name, n
        self._lock = threading.Lock()

    def start(self, healthz: tuple[str, int] | None, metrics: tuple[str, int] | None) -> None:
        if healthz:
            self._serve("healthz", healthz, self._healthz)
        if metrics:
            self._serve("metrics", metrics, self._metrics)

    def stop(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.shutdown()
            server.server_close()

    def set_health_check_ports(self, ports: dict[int, tuple[str, str, int]],
                               bind_ip: str = "0.0.0.0") -> None:
        """Serve exactly these health-check NodePorts: port -> (ns, name, local eps)."""
        with self._lock:
            self._local_endpoints = dict(ports)
            current = {k for k in self._servers if isinstance(k, int)}
        for port in current - set(ports):
            with self._lock:
                server = self._servers.pop(port)
            server.shutdown()
            server.server_close()
        for port in set(ports) - current:
            self._serve(port, (bind_ip, port), lambda path, p=port: self._service_health(p))

    def _serve(self, key, address: tuple[str, int], respond) -> None:
        server = _Server(address, respond)
        with self._lock:
            self._servers[key] = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True, name=f"http-{key}").start()

    def _healthz(self, path: str):
        if path not in ("/healthz", "/livez"):
            return 404, "text/plain", "not found\n"
        now = time.time()
        last = self.metrics.last_success
        healthy = last > 0 and now - last <= self.healthy_within
        body = json.dumps({"lastUpdated": _rfc3339(last) if last else "",
                           "currentTime": _rfc3339(now)})
        return (200 if healthy else 503), "application/json", body

    def _metrics(self, path: str):
        if path == "/proxyMode" and self.proxy_mode:
            return 200, "text/plain; charset=utf-8", self.proxy_mode
        if path != "/metrics":
            return 404, "text/plain", "not found\n"
        return 200, "text/plain; version=0.0.4", self.metrics.render()

    def _service_health(self, port: int):
        with self._lock:
            namespace, name, local = self._local_endpoints.get(port, ("", "", 0))
        body = json.dumps({"service": {"namespace": namespace, "name": name},
                           "localEndpoints": local, "serviceProxyHealthy": True})
        return (200 if local > 0 else 503), "application/json", body


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + \
        f".{int(epoch % 1 * 1e9):09d}Z"
