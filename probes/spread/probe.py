"""`svclab probe spread`: which endpoint answers each of N new connections.

A Service should split new connections over its endpoints (uniformly, or
only over local ones under a Local traffic policy).  `spread()` opens `count`
fresh connections from a lab host -- the engine (probes/spread/worker.py)
runs inside that host as `python -m probes.spread.worker` -- and `summarize()` turns
the per-connection records into a SpreadResult: counts per endpoint and per
node, the client addresses each endpoint saw, failures by kind, the rate,
latency percentiles and a chi-square p-value against uniform (or given
shares).  Summarizing is pure, so tests feed it synthetic records.

Through an ALB (`http=`, an Ingress's host and path, probes/targets.py's
HttpTarget) each connection is an HTTP/1.1 request with that Host and path;
per pod the result then holds both client addresses it saw: the TCP source
(the ALB's ENI, or a node after kube-proxy's masquerade) and the
X-Forwarded-For header (the client); failures are counted by HTTP status
(`http-404` from the ALB's default rule, `http-502`, `http-503`).
"""
from __future__ import annotations

import collections
import ipaddress
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from base.errors import LabError, UsageError
from probes.hostproc import run_streaming
from probes.spread.worker import HTTP_STATUS_PREFIX, OK, OUTCOMES
from probes.spread.zones import CrossZone, ZoneMap, cross_zone_summary, load_zone_map
from probes.stats import ChiSquareResult, chi_square, percentile
from probes.targets import HttpTarget
from topo.state import LabPaths, LabState, read_state

UNIFORM_ALPHA = 0.001        # p below this: "not what was expected"
MAX_CONCURRENCY = 4096


class SpreadError(LabError):
    """A spread run that produced no usable result (names the cause)."""


@dataclass(frozen=True)
class ConnRecord:
    """One connection: what was asked, what happened, who answered."""

    target: str                    # ip:port connected to
    outcome: str                   # ok refused timeout reset unreachable bad-reply error
    latency_ms: float
    local: str | None = None       # ip:port this host sent from
    pod: str | None = None         # the answering pod's name (workload reply)
    pod_ip: str | None = None      # the answering pod's own IP
    client: str | None = None      # the client ip:port the pod saw
    error: str | None = None       # errno name or reply problem, for failures
    forwarded_for: str | None = None   # the X-Forwarded-For the pod got (behind an ALB)
    status: int | None = None      # the HTTP status answered (tcp)

    @property
    def source_seen(self) -> str | None:
        return self.client.rpartition(":")[0].strip("[]") if self.client else None


@dataclass(frozen=True)
class Place:
    """Where an address lives in the lab: host name and node (None if no node)."""

    name: str
    node: str | None


@dataclass(frozen=True)
class EndpointCount:
    ip: str
    pod: str | None
    node: str | None
    count: int
    share: float
    sources: dict[str, int]        # client address seen -> connections
    zone: str | None = None        # the node's Availability Zone (labs with zones)
    forwarded_for: dict[str, int] = field(default_factory=dict)  # X-Forwarded-For -> conns


@dataclass(frozen=True)
class SpreadResult:
    source: str
    targets: tuple[str, ...]
    proto: str
    requested: int
    elapsed_s: float
    endpoints: tuple[EndpointCount, ...]
    by_node: dict[str, int]
    failures: dict[str, int]
    sent_from: dict[str, int]      # local addresses connections left from -> count
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    fit: ChiSquareResult | None
    expected: dict[str, float] | None
    records: tuple[ConnRecord, ...] = ()
    cross_zone: CrossZone | None = None     # labs with zones only
    http: dict | None = None       # through an ALB: {"url", "host", "path"} asked

    @property
    def ok(self) -> int:
        return sum(e.count for e in self.endpoints)

    @property
    def rate(self) -> float:
        """Connections finished per second (all outcomes)."""
        return len(self.records or ()) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p_value(self) -> float | None:
        return self.fit.p_value if self.fit else None

    def fits_expected(self, alpha: float = UNIFORM_ALPHA) -> bool | None:
        """True if the split is consistent with the expectation (None: not testable)."""
        return None if self.fit is None else self.fit.p_value >= alpha

    def to_json(self, include_records: bool = False) -> dict:
        data = {
            "source": self.source, "targets": list(self.targets), "proto": self.proto,
            "requested": self.requested, "finished": len(self.records), "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 4), "rate": round(self.rate, 1),
            "endpoints": [_endpoint_json(e) for e in self.endpoints],
            "by_node": dict(self.by_node),
            "failures": dict(self.failures), "sent_from": dict(self.sent_from),
            "latency_ms": {"p50": self.latency_p50_ms, "p99": self.latency_p99_ms},
            "chi_square": self.fit.to_json() if self.fit else None,
            "expected": self.expected, "fits_expected": self.fits_expected(),
            "cross_zone": self.cross_zone.to_json() if self.cross_zone else None}
        if self.http:
            data["http"] = dict(self.http)
        if include_records:
            data["records"] = [asdict(r) for r in self.records]
        return data

    def describe(self) -> str:
        return _describe(self)


def _endpoint_json(endpoint: EndpointCount) -> dict:
    data = asdict(endpoint)
    if endpoint.zone is None:       # labs without zones: the output as it always was
        del data["zone"]
    if not endpoint.forwarded_for:  # nothing in between that adds X-Forwarded-For
        del data["forwarded_for"]
    return data


def endpoint_directory(state: LabState) -> dict[str, Place]:
    """Every lab address -> the host that owns it (pods with their node)."""
    directory: dict[str, Place] = {}
    for record in state.hosts.values():
        node = record.node if record.kind == "pod" else (
            record.name if record.kind == "node" else None)
        name = record.name if record.kind != "pod" or record.namespace in (None, "default") \
            else f"{record.namespace}/{record.name}"
        for address in record.addresses:
            directory[address.split("/")[0]] = Place(name, node)
    return directory


def summarize(records: Sequence[ConnRecord], *, source: str, proto: str,
              targets: Sequence[str], elapsed_s: float, requested: int | None = None,
              directory: Mapping[str, Place] | None = None,
              expected: Mapping[str, float] | None = None,
              zones: ZoneMap | None = None, source_zone: str | None = None,
              http: Mapping[str, str] | None = None) -> SpreadResult:
    """Pure: per-connection records -> SpreadResult (counts, sources, fit, zones)."""
    directory = directory or {}
    zones = zones or ZoneMap()
    answered = [r for r in records if r.outcome == OK]
    counts = collections.Counter(r.pod_ip for r in answered)
    names = {r.pod_ip: r.pod for r in answered}
    sources: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    forwarded: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in answered:
        sources[r.pod_ip][r.source_seen] += 1
        if r.forwarded_for:
            forwarded[r.pod_ip][r.forwarded_for] += 1
    total_ok = len(answered)
    endpoints = tuple(
        EndpointCount(ip=ip, pod=names[ip], node=_place(directory, ip).node, count=count,
                      share=count / total_ok, sources=dict(sources[ip].most_common()),
                      zone=zones.node_zone.get(_place(directory, ip).node or ""),
                      forwarded_for=dict(forwarded[ip].most_common()))
        for ip, count in sorted(counts.items(), key=lambda item: _ip_key(item[0])))
    by_node = collections.Counter()
    for endpoint in endpoints:
        by_node[endpoint.node or "?"] += endpoint.count
    failures = collections.Counter(r.outcome for r in records if r.outcome != OK)
    sent_from = collections.Counter(r.local.rpartition(":")[0] for r in records if r.local)
    latencies = [r.latency_ms for r in answered]
    shares = _resolve_expected(expected, names, directory) if expected else None
    fit = None
    if shares is not None or len(counts) >= 2:
        fit = chi_square(dict(counts), shares)
    return SpreadResult(
        source=source, targets=tuple(targets), proto=proto,
        requested=len(records) if requested is None else requested, elapsed_s=elapsed_s,
        endpoints=endpoints, by_node=dict(sorted(by_node.items())),
        failures=_ordered_failures(failures),
        sent_from=dict(sent_from.most_common()),
        latency_p50_ms=percentile(latencies, 0.5), latency_p99_ms=percentile(latencies, 0.99),
        fit=fit, expected=shares, records=tuple(records),
        cross_zone=cross_zone_summary(records, {e.ip: e.node for e in endpoints},
                                      source_zone, zones),
        http=dict(http) if http else None)


def _ordered_failures(failures: Mapping[str, int]) -> dict[str, int]:
    """Socket outcomes in their fixed order, then HTTP statuses by code."""
    known = {k: failures[k] for k in OUTCOMES if failures.get(k)}
    statuses = sorted(k for k in failures if k.startswith(HTTP_STATUS_PREFIX) and failures[k])
    return {**known, **{k: failures[k] for k in statuses}}


def spread(lab: str, source: str, namespace: str | None, target_ip: str | Sequence[str],
           port: int, proto: str = "tcp", count: int = 1000, timeout: float = 2.0,
           concurrency: int = 200, *, expected: Mapping[str, float] | None = None,
           on_progress: Callable[[str], None] | None = None,
           progress_every: float = 1.0, http: HttpTarget | None = None) -> SpreadResult:
    """Open `count` new connections from host `source` of lab `lab` and summarize them.

    target_ip may be a list: connections then go to each address in turn
    (client-side round robin, to compare with a Service's own spread).
    `timeout` is per connection; `on_progress` receives progress lines.
    http: ask its path with its Host header (an Ingress behind an ALB).
    """
    targets = [target_ip] if isinstance(target_ip, str) else list(target_ip)
    _check_request(targets, port, proto, count, timeout, concurrency)
    if http is not None and proto != "tcp":
        raise UsageError(f"--proto: an HTTP target ({http.url}) is tcp, not {proto}")
    state = read_state(LabPaths(lab))
    record = state.find_host(source, namespace)
    if not record.proc.alive():
        raise LabError(f"host {source!r} of lab {lab!r} is not running")
    request = {"targets": [{"ip": ip, "port": port} for ip in targets], "proto": proto,
               "count": count, "timeout": timeout, "concurrency": concurrency,
               "progress_every": progress_every if on_progress else 0}
    if http is not None:
        request["http"] = {"host": http.host, "path": http.path}
    rounds = math.ceil(count / concurrency) + 1
    out = run_streaming(record.pid, [sys.executable, "-m", "probes.spread.worker"],
                        input=json.dumps(request), timeout=60 + timeout * rounds + count / 100,
                        where=source, on_progress=on_progress)
    try:
        raw = json.loads(out)
        records = [ConnRecord(**item) for item in raw["records"]]
    except (ValueError, TypeError, KeyError) as err:
        raise SpreadError(f"spread from {source}: unreadable worker output "
                          f"({err}): {out[:200]!r}") from err
    label = source if record.kind != "pod" or not namespace or namespace == "default" \
        else f"{namespace}/{source}"
    zones = load_zone_map(LabPaths(lab))
    source_node = record.node if record.kind == "pod" else record.name
    return summarize(records, source=label, proto=proto,
                     targets=[f"{ip}:{port}" for ip in targets], elapsed_s=raw["elapsed_s"],
                     requested=count, directory=endpoint_directory(state), expected=expected,
                     zones=zones, source_zone=zones.node_zone.get(source_node or ""),
                     http=http.to_json() if http else None)


def _check_request(targets, port, proto, count, timeout, concurrency) -> None:
    if not targets:
        raise UsageError("--to: at least one target address")
    for ip in targets:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError as err:
            raise UsageError(f"--to: {ip!r} is not an IPv4 address") from err
    if proto not in ("tcp", "udp"):
        raise UsageError(f"--proto: {proto!r}; spread supports tcp, udp")
    if not 1 <= port <= 65535:
        raise UsageError(f"--to: port {port} is not 1-65535")
    if count < 1:
        raise UsageError(f"--count: must be >= 1, got {count}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency: must be 1-{MAX_CONCURRENCY}, got {concurrency}")
    if timeout <= 0:
        raise UsageError(f"--timeout: must be > 0, got {timeout}")


def _resolve_expected(expected: Mapping[str, float], names: Mapping[str, str],
                      directory: Mapping[str, Place]) -> dict[str, float]:
    """Expected shares keyed by endpoint IP; keys may be IPs or pod names."""
    by_name = {name: ip for ip, name in names.items()}
    by_name.update({place.name: ip for ip, place in directory.items()
                    if place.name not in by_name})
    resolved: dict[str, float] = {}
    for key, share in expected.items():
        try:
            ip = str(ipaddress.IPv4Address(key))
        except ValueError:
            if key not in by_name:
                raise UsageError(f"--expect: {key!r} is neither an IPv4 address nor a "
                                 "pod that answered or exists in the lab") from None
            ip = by_name[key]
        resolved[ip] = resolved.get(ip, 0.0) + float(share)
    return resolved


def _place(directory: Mapping[str, Place], ip: str) -> Place:
    return directory.get(ip, Place(ip, None))


def _ip_key(ip: str):
    try:
        return (0, int(ipaddress.IPv4Address(ip)))
    except ValueError:
        return (1, ip)


def _seen(counts: Mapping[str, int]) -> str:
    """"a" for one address, "a x3, b x1" for several."""
    return ", ".join(f"{ip} x{n}" if len(counts) > 1 else ip for ip, n in counts.items())


def _describe(result: SpreadResult) -> str:
    finished = len(result.records)
    to = ", ".join(result.targets)
    if result.http:
        to = f"{result.http['url']} ({to}, Host {result.http['host']})"
    lines = [f"spread {finished}/{result.requested} {result.proto} connections from "
             f"{result.source} to {to} in {result.elapsed_s:.2f} s "
             f"({result.rate:.0f} conn/s)"]
    zoned = result.cross_zone is not None
    proxied = any(e.forwarded_for for e in result.endpoints)
    rows = [("ENDPOINT", "POD", "NODE") + (("ZONE",) if zoned else ())
            + ("COUNT", "SHARE", "EXPECTED", "SOURCE SEEN")
            + (("X-FORWARDED-FOR",) if proxied else ())]
    expected = result.fit.expected if result.fit else {}
    for e in result.endpoints:
        want = f"{expected[e.ip] / max(result.ok, 1):.1%}" if e.ip in expected else "-"
        rows.append((e.ip, e.pod or "-", e.node or "-") + ((e.zone or "-",) if zoned else ())
                    + (str(e.count), f"{e.share:.1%}", want, _seen(e.sources))
                    + ((_seen(e.forwarded_for) or "-",) if proxied else ()))
    for ip, count in expected.items():
        if count and ip not in {e.ip for e in result.endpoints}:
            rows.append((ip, "-", "-") + (("-",) if zoned else ())
                        + ("0", "0.0%", f"{count / max(result.ok, 1):.1%}", "-")
                        + (("-",) if proxied else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append("per node: " + (", ".join(f"{n} {c}" for n, c in result.by_node.items())
                                 or "none"))
    if zoned:
        cz = result.cross_zone
        lines.append(f"cross-zone: {cz.crossed} of {cz.connections} connections "
                     f"({cz.share:.1%}) crossed an AZ boundary, {cz.crossings} crossings; "
                     + ", ".join(f"{pair} {n}" for pair, n in cz.by_pair.items()))
    lines.append("sent from: " + (", ".join(result.sent_from) or "-"))
    said = {r.outcome: r.error for r in result.records
            if r.outcome.startswith(HTTP_STATUS_PREFIX) and r.error}
    lines.append("failures: " + (", ".join(
        f"{k} {v}" + (f" ({said[k]})" if k in said else "") for k, v in result.failures.items())
        or "none"))
    if result.latency_p50_ms is not None:
        lines.append(f"latency: p50 {result.latency_p50_ms:.2f} ms, "
                     f"p99 {result.latency_p99_ms:.2f} ms")
    if result.fit is None:
        lines.append("chi-square: not applicable (fewer than two endpoints answered)")
    else:
        against = "expected shares" if result.expected else "uniform"
        verdict = "consistent" if result.fits_expected() else "NOT consistent"
        lines.append(f"chi-square vs {against}: statistic {result.fit.statistic:.2f}, "
                     f"dof {result.fit.dof}, p-value {result.fit.p_value:.3g} -> {verdict} "
                     f"(alpha {UNIFORM_ALPHA})")
    return "\n".join(lines) + "\n"
