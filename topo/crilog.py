"""Container logs in the CRI format, as containerd writes them under /var/log/pods.

Each line of a container's stdout or stderr becomes one line of its log file:

    2026-12-05T13:00:00.123456789Z stdout F GET / HTTP/1.1 ...
    <RFC3339Nano time> <stdout|stderr> <F|P> <text>

`F` marks a full line (its newline dropped, a CR before it too), `P` a
partial one: a line longer than MAX_LINE is cut into P pieces, and what a
stream leaves unterminated when it ends is written as P.  The time is when
the runtime read the bytes, in local time with its offset (`Z` in UTC) and
the fraction without trailing zeros, as Go's time.RFC3339Nano prints it.
`kubectl logs` (the API server) reads these files back with `parse_line`.

The formatting and splitting here are pure; `CriLogFile` is the only writer.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 16 * 1024          # containerd's max_container_log_line_size
STREAMS = ("stdout", "stderr")
FULL, PARTIAL = b"F", b"P"


def rfc3339nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano of a Unix time in nanoseconds (default: now), local time."""
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    if nanos:
        stamp += "." + f"{nanos:09d}".rstrip("0")
    offset = local.tm_gmtoff or 0
    if offset == 0:
        return stamp + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{stamp}{sign}{hours:02d}:{minutes:02d}"


def format_line(stamp: str, stream: str, partial: bool, content: bytes) -> bytes:
    return b"%s %s %s %s\n" % (stamp.encode(), stream.encode(), PARTIAL if partial else FULL,
                                content)


@dataclass(frozen=True)
class CriLine:
    time: str
    stream: str
    partial: bool
    content: bytes


def parse_line(line: bytes) -> CriLine:
    """One line of a CRI log file (with or without its newline)."""
    line = line[:-1] if line.endswith(b"\n") else line
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"not a CRI log line (want '<time> <stream> <F|P> <text>'): {line!r}")
    stamp, stream, tags = (p.decode("ascii", "replace") for p in parts[:3])
    if stream not in STREAMS:
        raise ValueError(f"CRI log line: stream {stream!r} is not one of {', '.join(STREAMS)}")
    tag = tags.split(":", 1)[0]
    if tag not in ("F", "P"):
        raise ValueError(f"CRI log line: tag {tags!r} does not start with F or P")
    return CriLine(stamp, stream, tag == "P", parts[3] if len(parts) == 4 else b"")


class LineSplitter:
    """Cuts one stream's bytes into (partial, content) log lines as they arrive."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.pending = b""

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        lines = []
        buffer = self.pending + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            lines += self._cut(line[:-1] if line.endswith(b"\r") else line)
            start = end + 1
        rest = buffer[start:]
        while len(rest) > self.max_line:
            lines.append((True, rest[:self.max_line]))
            rest = rest[self.max_line:]
        self.pending = rest
        return lines

    def finish(self) -> list[tuple[bool, bytes]]:
        """The stream ended: what it left without a newline is a partial line."""
        rest, self.pending = self.pending, b""
        return [(True, rest)] if rest else []

    def _cut(self, line: bytes) -> list[tuple[bool, bytes]]:
        """A whole line: P pieces of max_line while it is longer, then its F end."""
        pieces = []
        while len(line) > self.max_line:
            pieces.append((True, line[:self.max_line]))
            line = line[self.max_line:]
        return [*pieces, (False, line)]


class CriLogFile:
    """One container run's log file: bytes of its streams in, CRI lines out.

    Used from one thread (the runtime's output pump); readers may read the
    file at any time, every write ends with a whole line."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        self._splitters = {stream: LineSplitter() for stream in STREAMS}
        self.error: OSError | None = None     # the first write that failed (disk full, ...)

    def write(self, stream: str, data: bytes) -> None:
        self._emit(stream, self._splitters[stream].feed(data))

    def end(self, stream: str) -> None:
        self._emit(stream, self._splitters[stream].finish())

    def close(self) -> None:
        if self._fd is not None:
            for stream in STREAMS:
                self.end(stream)
            os.close(self._fd)
            self._fd = None

    def _emit(self, stream: str, lines: list[tuple[bool, bytes]]) -> None:
        if not lines or self._fd is None or self.error is not None:
            return
        stamp = rfc3339nano()
        chunk = b"".join(format_line(stamp, stream, partial, content)
                         for partial, content in lines)
        try:
            while chunk:
                chunk = chunk[os.write(self._fd, chunk):]
        except OSError as err:   # kept, and the log stops: the container must not block
            self.error = err
