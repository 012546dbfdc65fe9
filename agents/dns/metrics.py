"""Prometheus metrics of the DNS server, named like CoreDNS's so dashboards carry over.

Counters live in plain dicts updated from the server's event loop only (no
locks on the hot path); `render()` produces the text exposition format served
on the metrics port (CoreDNS serves the same on :9153).
"""
from __future__ import annotations

import bisect

from agents.dns.wire import rcode_name

# CoreDNS's buckets: 0.25 ms doubling up to ~8 s.
LATENCY_BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))


class DnsMetrics:
    """Query counters and a latency histogram; call only from the server's loop thread."""

    def __init__(self):
        self.requests: dict[str, int] = {}          # by transport: udp / tcp
        self.responses: dict[str, int] = {}         # by rcode name
        self.dropped: dict[str, int] = {}           # by reason
        self.forwarded = 0
        self.internal_errors = 0
        self.zone_serial = 0
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe(self, proto: str, rcode: int | None, seconds: float) -> None:
        """One request handled; rcode None means nothing was sent back (dropped)."""
        self.requests[proto] = self.requests.get(proto, 0) + 1
        if rcode is None:
            self.count_drop("malformed")
            return
        name = rcode_name(rcode)
        self.responses[name] = self.responses.get(name, 0) + 1
        self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._latency_count += 1

    def count_drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def render(self) -> str:
        lines = ["# HELP coredns_dns_requests_total Counter of DNS requests made per protocol.",
                 "# TYPE coredns_dns_requests_total counter"]
        lines += [f'coredns_dns_requests_total{{proto="{proto}"}} {count}'
                  for proto, count in sorted(self.requests.items())]
        lines += ["# HELP coredns_dns_responses_total Counter of responses per response code.",
                  "# TYPE coredns_dns_responses_total counter"]
        lines += [f'coredns_dns_responses_total{{rcode="{rcode}"}} {count}'
                  for rcode, count in sorted(self.responses.items())]
        histogram = "coredns_dns_request_duration_seconds"
        lines += [f"# HELP {histogram} Histogram of the time each request took.",
                  f"# TYPE {histogram} histogram"]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._bucket_counts):
            cumulative += count
            lines.append(f'{histogram}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{histogram}_bucket{{le="+Inf"}} {self._latency_count}')
        lines.append(f"coredns_dns_request_duration_seconds_sum {self._latency_sum:.9f}")
        lines.append(f"coredns_dns_request_duration_seconds_count {self._latency_count}")
        lines += ["# HELP svclab_dns_dropped_total Queries dropped without a reply, per reason.",
                  "# TYPE svclab_dns_dropped_total counter"]
        lines += [f'svclab_dns_dropped_total{{reason="{reason}"}} {count}'
                  for reason, count in sorted(self.dropped.items())]
        lines += ["# HELP coredns_forward_requests_total Queries sent to the upstream resolver.",
                  "# TYPE coredns_forward_requests_total counter",
                  f"coredns_forward_requests_total {self.forwarded}",
                  "# HELP svclab_dns_internal_errors_total Unexpected errors in the server loop.",
                  "# TYPE svclab_dns_internal_errors_total counter",
                  f"svclab_dns_internal_errors_total {self.internal_errors}",
                  "# HELP svclab_dns_zone_serial Serial of the zone being served.",
                  "# TYPE svclab_dns_zone_serial gauge",
                  f"svclab_dns_zone_serial {self.zone_serial}"]
        return "\n".join(lines) + "\n"
