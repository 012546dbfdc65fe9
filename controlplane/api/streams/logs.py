"""pods/log: a container's CRI log file served as the kubelet serves it.

The node side keeps each run's output as CRI log lines,
``<RFC3339Nano> <stdout|stderr> <F|P> <text>`` (P: a partial line the next
record continues).  The kubelet turns them back into text: an F record
ends with a newline, a P record does not; ``timestamps`` prefixes every
record with its time (RFC3339Nano, trailing zeros dropped) and a space;
``tailLines`` counts records from the end; ``sinceSeconds``/``sinceTime``
drop older records; ``limitBytes`` cuts the output; ``follow`` keeps
reading the file as it grows until the container's run ends.  Which run
to read, and the errors when there is none, follow the kubelet's
``validateContainerLogStatus`` on the pod's reported status.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from controlplane.api import errors
from controlplane.api.streams.target import go_bool, go_int

FOLLOW_POLL = 0.1
HEARTBEAT = 1.0          # an empty chunk this often while following, to notice a gone client
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                   r"(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class Record:
    nanos: int          # since the epoch
    stamp: str          # as the kubelet prints it
    stream: str         # stdout | stderr
    partial: bool
    text: bytes


@dataclass(frozen=True)
class LogOptions:
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: int | None = None
    since_nanos: int | None = None
    limit: int | None = None
    stream: str = "All"         # All | Stdout | Stderr


def parse_time(text: str) -> tuple[int, str]:
    """(nanoseconds since the epoch, Go's RFC3339Nano rendering); ValueError if malformed."""
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = 0 if zone == "Z" else (int(zone[1:3]) * 60 + int(zone[4:6])) * (
        -1 if zone[0] == "-" else 1)
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset * 60
    nanos = seconds * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)
    trimmed = fraction.rstrip("0")
    stamp = text[:19] + (f".{trimmed}" if trimmed else "") + ("Z" if offset == 0 else zone)
    return nanos, stamp


def parse_record(line: bytes) -> Record | None:
    """One CRI log line (without its newline); None if it is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    try:
        nanos, stamp = parse_time(parts[0].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return Record(nanos, stamp, parts[1].decode(), parts[2] == b"P",
                  parts[3] if len(parts) > 3 else b"")


def log_options(query: dict[str, list[str]], now_nanos: int) -> LogOptions:
    since_seconds = go_int(query, "sinceSeconds", 1)
    since_time = (query.get("sinceTime") or [""])[-1]
    if since_seconds is not None and since_time:
        raise errors.bad_request("at most one of sinceTime or sinceSeconds may be specified")
    since = None
    if since_seconds is not None:
        since = now_nanos - since_seconds * 1_000_000_000
    elif since_time:
        try:
            since = parse_time(since_time)[0]
        except ValueError as exc:
            raise errors.bad_request(f"sinceTime: {exc} (use RFC 3339, e.g. "
                                     "2024-01-02T15:04:05Z)") from exc
    stream = (query.get("stream") or ["All"])[-1] or "All"
    if stream not in ("All", "Stdout", "Stderr"):
        raise errors.bad_request(f"stream: unsupported value {stream!r} "
                                 "(supported values: All, Stdout, Stderr)")
    return LogOptions(container=(query.get("container") or [""])[-1],
                      follow=go_bool(query, "follow"), previous=go_bool(query, "previous"),
                      timestamps=go_bool(query, "timestamps"),
                      tail=go_int(query, "tailLines", 0), since_nanos=since,
                      limit=go_int(query, "limitBytes", 1), stream=stream)


def check_log_status(pod: dict, container: str, previous: bool) -> None:
    """The kubelet's refusals, from the container's reported status."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    found = next((s for key in ("containerStatuses", "initContainerStatuses")
                  for s in status.get(key) or [] if s.get("name") == container), None)
    if found is None:
        raise errors.bad_request(f'container "{container}" in pod "{name}" is not available')
    state, last = found.get("state") or {}, (found.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod '
                                     f'"{name}" not found')
        return
    if "running" in state or last:
        return
    if "terminated" in state:
        if not state["terminated"].get("containerID"):
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return
    reason = (state.get("waiting") or {}).get("reason", "")
    detail = {"ErrImagePull": "image can't be pulled",
              "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
    raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                             f"{detail}")


class LogFormatter:
    """CRI records -> the bytes the client gets (filters, timestamps, byte limit)."""

    def __init__(self, opts: LogOptions) -> None:
        self.opts = opts
        self.remaining = opts.limit

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def render(self, records: list[Record]) -> bytes:
        out = []
        for record in records:
            if self.opts.stream != "All" and record.stream != self.opts.stream.lower():
                continue
            if self.opts.since_nanos is not None and record.nanos < self.opts.since_nanos:
                continue
            text = record.text if record.partial else record.text + b"\n"
            if self.opts.timestamps:
                text = record.stamp.encode() + b" " + text
            out.append(text)
        data = b"".join(out)
        if self.remaining is not None:
            data = data[:max(self.remaining, 0)]
            self.remaining -= len(data)
        return data


def _records(lines: list[bytes]) -> list[Record]:
    return [r for r in map(parse_record, lines) if r is not None]


def read_log(path: str, opts: LogOptions, running: Callable[[], bool],
             stopped: Callable[[], bool]) -> Iterator[bytes]:
    """The log's chunks; with follow, new records as they are written until the
    run ends (``running()`` false), the server stops, or the consumer closes us.
    An empty chunk now and then lets the consumer check its client."""
    formatter = LogFormatter(opts)
    with open(path, "rb") as log_file:
        lines = log_file.read().split(b"\n")
        pending = lines.pop()          # an unterminated last line: not complete yet
        if opts.tail is not None:
            lines = lines[-opts.tail:] if opts.tail else []
        chunk = formatter.render(_records(lines))
        if chunk:
            yield chunk
        if not opts.follow or opts.previous:
            return
        idle_since = time.monotonic()
        while not formatter.exhausted and not stopped():
            alive = running()
            data = log_file.read()
            if data:
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                chunk = formatter.render(_records(lines))
                if chunk:
                    yield chunk
                    idle_since = time.monotonic()
                continue
            if not alive:
                return             # drained after the run ended
            if time.monotonic() - idle_since >= HEARTBEAT:
                yield b""
                idle_since = time.monotonic()
            time.sleep(FOLLOW_POLL)
