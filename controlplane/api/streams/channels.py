"""Kubernetes' channel protocols, as data: subprotocol names, framing, status.

A WebSocket stream request multiplexes numbered channels over one
connection: every message starts with its channel number (a byte, or an
ASCII digit followed by base64 in the ``base64.`` variants).  exec/attach
use 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; ``v5.channel.k8s.io``
adds the close signal ``[255, channel]`` (the client closed its stdin).
The error channel carries, since v4, a ``metav1.Status`` as JSON — Success,
or Failure with reason NonZeroExitCode and the exit code as a cause — and
in older versions the error text only.  Port-forward over
``v4.channel.k8s.io`` (the official Python client) uses channel 2i for the
i-th port's data and 2i+1 for its errors; each starts with the port number,
two bytes little-endian.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255


class ChannelError(ValueError):
    """A channel message that does not follow the negotiated protocol."""


@dataclass(frozen=True)
class ChannelProtocol:
    name: str
    base64: bool = False          # text messages: '0'+channel, then base64
    status_json: bool = True      # error channel: metav1.Status JSON (v4+) or plain text
    close_signal: bool = False    # v5: [255, channel] half-closes a channel


EXEC_PROTOCOLS = {p.name: p for p in (
    ChannelProtocol("v5.channel.k8s.io", close_signal=True),
    ChannelProtocol("v4.channel.k8s.io"),
    ChannelProtocol("v4.base64.channel.k8s.io", base64=True),
    ChannelProtocol("channel.k8s.io", status_json=False),
    ChannelProtocol("base64.channel.k8s.io", base64=True, status_json=False),
    ChannelProtocol("", status_json=False),
)}

PORTFORWARD_PROTOCOLS = {p.name: p for p in (
    ChannelProtocol("v4.channel.k8s.io"),
    ChannelProtocol("v4.base64.channel.k8s.io", base64=True),
    ChannelProtocol("", status_json=False),
)}

# SPDY stream protocols (X-Stream-Protocol-Version), newest first, as a kubelet offers them.
SPDY_EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                       "channel.k8s.io")
SPDY_PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"      # WebSocket subprotocol carrying SPDY: SPDY/3.1+portforward.k8s.io


def encode(protocol: ChannelProtocol, channel: int, data: bytes) -> tuple[bytes, bool]:
    """One message for channel: (payload, is_text)."""
    if protocol.base64:
        return str(channel).encode() + base64.b64encode(data), True
    return bytes((channel,)) + data, False


def decode(protocol: ChannelProtocol, message: bytes) -> tuple[int, bytes]:
    """(channel, data) of one client message; ChannelError if malformed."""
    if not message:
        raise ChannelError("empty message: no channel byte")
    if protocol.close_signal and message[0] == CLOSE_SIGNAL:
        if len(message) != 2:
            raise ChannelError(f"close signal must name one channel, got {len(message) - 1} "
                               "bytes")
        return CLOSE_SIGNAL, message[1:]
    if protocol.base64:
        channel = message[0] - ord("0")
        try:
            return channel, base64.b64decode(message[1:], validate=True)
        except binascii.Error as exc:
            raise ChannelError(f"channel {channel}: invalid base64: {exc}") from exc
    return message[0], message[1:]


def port_prefix(port: int) -> bytes:
    return struct.pack("<H", port)


# ---- the error channel's Status -----------------------------------------------------

def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int) -> dict:
    """What the API server reports for a command that exited non-zero."""
    return {"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: "
                       f"command terminated with exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(reason: str, code: int, message: str) -> dict:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "code": code}


def status_payload(protocol_json: bool, status: dict) -> bytes:
    """The error channel's bytes: the Status as JSON (v4+), or its message when it
    failed (older protocols say nothing on success)."""
    if protocol_json:
        return json.dumps(status, separators=(",", ":")).encode()
    return b"" if status["status"] == "Success" else status["message"].encode()


class ResizeDecoder:
    """Terminal sizes from the resize channel: a stream of JSON objects
    ``{"Width": w, "Height": h}`` split across messages in any way."""

    LIMIT = 4096    # an object still incomplete after this many characters is garbage

    def __init__(self) -> None:
        self._buffer = ""
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[tuple[int, int]]:
        self._buffer += data.decode("utf-8", "replace")
        sizes = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return sizes
            try:
                obj, end = self._json.raw_decode(text)
            except json.JSONDecodeError as exc:
                if len(text) > self.LIMIT:
                    raise ChannelError(f"resize: not a JSON object: {exc}") from exc
                self._buffer = text
                return sizes        # incomplete: wait for the rest
            self._buffer = text[end:]
            sizes.append(_size(obj))


def _size(obj) -> tuple[int, int]:
    if not isinstance(obj, dict):
        raise ChannelError(f"resize: expected an object with Width and Height, got {obj!r}")
    fields = {str(k).lower(): v for k, v in obj.items()}
    width, height = fields.get("width"), fields.get("height")
    if not (isinstance(width, int) and isinstance(height, int)) or width < 0 or height < 0:
        raise ChannelError(f"resize: Width and Height must be non-negative integers, got {obj!r}")
    return width, height
