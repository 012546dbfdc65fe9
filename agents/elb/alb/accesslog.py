"""The ALB's access log: one line per request in AWS's format, in one file.

AWS writes space-separated fields, quoted where they may hold spaces, "-"
where a field has no value.  The lab writes the fields it knows (client,
target, the three processing times, both status codes, bytes, request,
user agent, TLS cipher and protocol, target group ARN, trace id, SNI name,
certificate, matched rule priority, request creation time, action, redirect
URL, the targets tried and their codes, connection trace id) and "-" for the
rest (error reason, desync classification).  `format_entry` is pure; `AccessLog`
buffers lines and appends them to the file (AWS ships a file per node every
five minutes to S3; the lab appends continuously and rotates at LIMIT bytes).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
LIMIT = 64 * 1024 * 1024
FLUSH_BYTES = 64 * 1024


@dataclass(frozen=True)
class LogEntry:
    type: str                       # http | https
    time: float                     # when the response was made (epoch seconds)
    elb: str                        # app/<name>/<id>
    client: str                     # ip:port
    target: str | None              # ip:port, None: no target
    request_processing_time: float  # -1: not dispatched to a target
    target_processing_time: float   # -1: no response from a target
    response_processing_time: float
    elb_status_code: int | None
    target_status_code: int | None
    received_bytes: int
    sent_bytes: int
    request: str                    # METHOD scheme://host:port/path?query HTTP/1.1
    user_agent: str = "-"
    ssl_cipher: str = "-"
    ssl_protocol: str = "-"
    target_group_arn: str = "-"
    trace_id: str = "-"
    domain_name: str = "-"
    chosen_cert_arn: str = "-"
    matched_rule_priority: int | None = None    # 0: the default rule
    request_creation_time: float = 0.0
    actions_executed: str = "-"
    redirect_url: str = "-"
    error_reason: str = "-"
    targets_tried: tuple[str, ...] = ()
    target_codes: tuple[str, ...] = ()
    conn_trace_id: str = "-"


_second: list = [None, ""]      # the last whole second formatted, and its text


def iso(stamp: float) -> str:
    """ISO 8601 with microseconds, UTC (the seconds part formatted once per second)."""
    whole = int(stamp)
    if _second[0] != whole:
        _second[:] = [whole, dt.datetime.fromtimestamp(whole, dt.timezone.utc)
                      .strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((stamp - whole) * 1e6):06d}Z"


def _seconds(value: float) -> str:
    return "-1" if value < 0 else f"{value:.3f}"


def _quoted(value: str) -> str:
    return '"' + (value or "-").replace('"', "%22") + '"'


def format_entry(e: LogEntry) -> str:
    fields = [
        e.type, iso(e.time), e.elb, e.client, e.target or "-",
        _seconds(e.request_processing_time), _seconds(e.target_processing_time),
        _seconds(e.response_processing_time),
        "-" if e.elb_status_code is None else str(e.elb_status_code),
        "-" if e.target_status_code is None else str(e.target_status_code),
        str(e.received_bytes), str(e.sent_bytes), _quoted(e.request), _quoted(e.user_agent),
        e.ssl_cipher or "-", e.ssl_protocol or "-", e.target_group_arn or "-",
        _quoted(e.trace_id), _quoted(e.domain_name), _quoted(e.chosen_cert_arn),
        "-" if e.matched_rule_priority is None else str(e.matched_rule_priority),
        iso(e.request_creation_time), _quoted(e.actions_executed), _quoted(e.redirect_url),
        _quoted(e.error_reason), _quoted(" ".join(e.targets_tried)),
        _quoted(" ".join(e.target_codes)), _quoted("-"), _quoted("-"), e.conn_trace_id or "-"]
    return " ".join(fields)


def _id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def elb_id(name: str) -> str:
    """The load balancer's resource id, as the log's `elb` field shows it."""
    return f"app/{name}/{_id('alb', name)}"


def region_of(hostname: str) -> str:
    """The region in an ELB DNS name (...<region>.elb.amazonaws.com)."""
    parts = hostname.split(".")
    return parts[parts.index("elb") - 1] if "elb" in parts[1:] else DEFAULT_REGION


def target_group_arn(alb_name: str, hostname: str, group: str) -> str:
    return (f"arn:aws:elasticloadbalancing:{region_of(hostname)}:{ACCOUNT}:targetgroup/"
            f"{group[:32]}/{_id('tg', alb_name, group)}")


def request_field(method: str, scheme: str, host: str, port: int, target: str,
                  version: str) -> str:
    """The "request" field: the method, the whole URL with the listener's port, the version."""
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return f"{method} {scheme}://{host or '-'}:{port}{target} {version}"


class AccessLog:
    """Appends lines to one file; flush() writes what is buffered."""

    def __init__(self, path: Path | None):
        self.path = path
        self.buffer: list[str] = []
        self.size = 0

    def add(self, entry: LogEntry) -> None:
        if self.path is None:
            return
        line = format_entry(entry) + "\n"
        self.buffer.append(line)
        self.size += len(line)
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buffer or self.path is None:
            return
        text, self.buffer, self.size = "".join(self.buffer), [], 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.stat().st_size > LIMIT:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(text)
