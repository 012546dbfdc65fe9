"""exec and attach over SPDY: kubectl's fallback when WebSocket is refused.

The client opens one stream per standard stream, named by its ``streamtype``
header (error, stdin, stdout, stderr, and resize with a terminal from
protocol v3 on); the server waits for all it expects, then relays as over
WebSocket: stdout/stderr end with a FIN, the client's FIN on stdin closes
the process's input, and the error stream gets the final Status (v4 JSON,
v2/v3 the message alone on failure) before it is closed.
"""

from __future__ import annotations

import logging
import threading
import time

from base.cri import ExecSession
from controlplane.api.spdy import SpdyError, SpdySession, SpdyStream, SpdyTimeout
from controlplane.api.streams import channels
from controlplane.api.streams.channels import ChannelError, ResizeDecoder
from controlplane.api.streams.exec import (
    CLOSE_WAIT,
    JOIN_TIMEOUT,
    POLL,
    Relay,
    discard,
    status_for,
)
from controlplane.api.streams.target import ExecOptions

log = logging.getLogger("controlplane.api.streams")
STREAM_CREATION_TIMEOUT = 30.0
STREAM_TYPES = ("error", "stdin", "stdout", "stderr", "resize")


def expected_streams(opts: ExecOptions, version: str) -> set[str]:
    wanted = {"error"}
    wanted |= {name for name, on in (("stdin", opts.stdin), ("stdout", opts.stdout),
                                     ("stderr", opts.stderr)) if on}
    if opts.tty and version in ("v3.channel.k8s.io", "v4.channel.k8s.io"):
        wanted.add("resize")
    return wanted


def _accept(spdy: SpdySession, wanted: set[str]) -> dict[str, SpdyStream] | None:
    deadline = time.monotonic() + STREAM_CREATION_TIMEOUT
    got: dict[str, SpdyStream] = {}
    while not wanted <= got.keys():
        left = deadline - time.monotonic()
        stream = spdy.accept_stream(left) if left > 0 else None
        if stream is None:
            log.info("exec: the client opened %s of %s streams", sorted(got), sorted(wanted))
            return None
        kind = stream.headers.get("streamtype", "")
        if kind in STREAM_TYPES and kind not in got:
            got[kind] = stream
        else:
            stream.reset()
    return got


def serve_spdy(spdy: SpdySession, version: str, session: ExecSession, opts: ExecOptions,
               attach: bool) -> None:
    """Run an exec/attach session on a started SPDY session until it ends."""
    got = _accept(spdy, expected_streams(opts, version))
    if got is None:
        session.kill()
        return
    out, err = got.get("stdout"), got.get("stderr")
    relay = Relay(session, opts, attach=attach,
                  stdout=out.write if out else discard, stderr=err.write if err else discard,
                  stdout_done=out.close if out else _nothing,
                  stderr_done=err.close if err else _nothing)
    readers = [threading.Thread(target=target, args=(spdy, got[kind], relay), daemon=True,
                                name=f"svclab-stream-{kind}")
               for kind, target in (("stdin", _read_stdin), ("resize", _read_resize))
               if kind in got]
    try:
        for reader in readers:
            reader.start()
        code = relay.wait(alive=lambda: not spdy.closed)
        if code is not None:
            got["error"].write(channels.status_payload(version == "v4.channel.k8s.io",
                                                       status_for(code)))
            got["error"].close()
            deadline = time.monotonic() + CLOSE_WAIT
            while not spdy.closed and time.monotonic() < deadline:
                time.sleep(POLL)    # the client reads the rest, then hangs up
    except SpdyError as exc:
        log.debug("exec client went away: %s", exc)
    finally:
        relay.stop.set()
        spdy.close()
        for reader in readers:
            reader.join(JOIN_TIMEOUT)
        relay.close()


def _read_stdin(spdy: SpdySession, stream: SpdyStream, relay: Relay) -> None:
    try:
        while not relay.stop.is_set():
            try:
                data = stream.read(POLL)
            except SpdyTimeout:
                continue
            if not data:
                if spdy.closed or stream.reset_status is not None:
                    relay.stop.set()      # the client went away: not the end of its input
                else:
                    relay.close_stdin()
                return
            relay.write_stdin(data)
    except SpdyError:
        relay.stop.set()


def _read_resize(_spdy: SpdySession, stream: SpdyStream, relay: Relay) -> None:
    decoder = ResizeDecoder()
    try:
        while not relay.stop.is_set():
            try:
                data = stream.read(POLL)
            except SpdyTimeout:
                continue
            if not data:
                return
            for width, height in decoder.feed(data):
                relay.resize(width, height)
    except SpdyError:
        relay.stop.set()
    except ChannelError as exc:
        log.info("exec client sent a bad resize: %s", exc)


def _nothing() -> None:
    """No stream to close."""
