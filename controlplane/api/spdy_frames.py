"""SPDY/3.1 framing: the frame codec under kubectl's SPDY streams.

kubectl's port-forward (and exec/attach when WebSocket is refused) speaks
SPDY/3.1 through moby/spdystream and its SPDY/3 framer.  This module is the
pure part of svclab's side of that protocol: frames as frozen dataclasses,
:func:`encode_frame`, an incremental :class:`FrameDecoder` that accepts bytes
in chunks of any size (a WebSocket tunnel splits frames across messages), and
the header-block compression: zlib with the SPDY/3 dictionary, one compression
context per direction for the whole session (so every header block must be
encoded, and decoded, in wire order).  No I/O and no threads: ``spdy.py`` runs
sessions on top of it.

Wire format (all integers big-endian): a control frame starts with
``1 | version(15) | type(16) | flags(8) | length(24)``, a data frame with
``0 | stream-id(31) | flags(8) | length(24)``.  A header block is a count and
then length-prefixed name/value pairs (32-bit lengths in SPDY/3), names in
lower case, several values of one name joined by NUL.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from base.errors import SvclabError

VERSION = 3
DEFAULT_WINDOW = 65536           # SPDY/3.1: initial stream and session windows
MAX_LENGTH = (1 << 24) - 1       # a frame's 24-bit length field
MAX_STREAM_ID = (1 << 31) - 1
MAX_WINDOW = (1 << 31) - 1
MAX_HEADER_BLOCK = 256 * 1024    # decompressed; more is refused (a zlib bomb)

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_SETTINGS_CLEAR = 0x01

SETTINGS_INITIAL_WINDOW_SIZE = 7

RST_STATUS = {1: "PROTOCOL_ERROR", 2: "INVALID_STREAM", 3: "REFUSED_STREAM",
              4: "UNSUPPORTED_VERSION", 5: "CANCEL", 6: "INTERNAL_ERROR",
              7: "FLOW_CONTROL_ERROR", 8: "STREAM_IN_USE", 9: "STREAM_ALREADY_CLOSED",
              10: "INVALID_CREDENTIALS", 11: "FRAME_TOO_LARGE"}
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
FLOW_CONTROL_ERROR, STREAM_ALREADY_CLOSED = 7, 9
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

# The SPDY/3 header dictionary (draft 3, section 2.6.10.1): 65 words, each
# after its 32-bit length, then a run of status codes, reason phrases, dates
# and common values.  Its adler32, the DICTID in every compressed header
# block's zlib header, is 0xe3c6a7c2.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range",
    "referer", "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
    "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get", "status",
    "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found"
    "500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
    "application/xhtml+xml,text/plain,text/javascript,public"
    "privatemax-age=gzip,deflate,sdch"
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) \
    + _DICTIONARY_TAIL.encode()
DICTIONARY_ID = 0xE3C6A7C2


class SpdyError(SvclabError):
    """The SPDY peer or transport did something this session cannot go on with;
    the message names what was wrong (frame, field, value)."""


# -- frames ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    associated_to: int = 0
    priority: int = 0            # 0 (highest) .. 7
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int], ...]     # (setting id, value); per-entry flags dropped
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int               # 0: the session's window (SPDY/3.1)
    delta: int


@dataclass(frozen=True)
class UnknownControl:
    """A control frame of a type SPDY/3.1 does not define (NOOP, CREDENTIAL...):
    the spec says to ignore it."""
    frame_type: int
    flags: int
    payload: bytes


Frame = (DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | Headers
         | WindowUpdate | UnknownControl)


def status_name(status: int) -> str:
    return RST_STATUS.get(status, f"status {status}")


# -- header blocks ---------------------------------------------------------------------

def encode_header_block(headers: Mapping[str, str]) -> bytes:
    """The uncompressed block; names are lower-cased (SPDY/3 requires it)."""
    out = [struct.pack(">I", len(headers))]
    seen = set()
    for name, value in headers.items():
        key = name.lower()
        if not key:
            raise SpdyError("header block: empty header name")
        if key in seen:
            raise SpdyError(f"header block: header {key!r} given twice")
        seen.add(key)
        raw_name, raw_value = key.encode(), str(value).encode()
        out += [struct.pack(">I", len(raw_name)), raw_name,
                struct.pack(">I", len(raw_value)), raw_value]
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, str]:
    """Parse an uncompressed block; raises SpdyError naming the bad part."""
    if len(block) < 4:
        raise SpdyError(f"header block: {len(block)} bytes, too short for its pair count")
    (count,) = struct.unpack_from(">I", block)
    if count * 8 > len(block) - 4:
        raise SpdyError(f"header block: {count} pairs cannot fit in {len(block) - 4} bytes")
    pos, headers = 4, {}
    for index in range(count):
        raw = []
        for part in ("name", "value"):
            if pos + 4 > len(block):
                raise SpdyError(f"header block: pair {index}: {part} length runs past the end")
            (size,) = struct.unpack_from(">I", block, pos)
            pos += 4
            if pos + size > len(block):
                raise SpdyError(f"header block: pair {index}: {part} of {size} bytes runs "
                                f"past the end ({len(block) - pos} left)")
            raw.append(block[pos:pos + size])
            pos += size
        try:
            name, value = raw[0].decode(), raw[1].decode()
        except UnicodeDecodeError as exc:
            raise SpdyError(f"header block: pair {index} is not UTF-8: {exc}") from None
        if not name:
            raise SpdyError(f"header block: pair {index} has an empty name")
        if name != name.lower():
            raise SpdyError(f"header block: header name {name!r} is not lower-case")
        if name in headers:
            raise SpdyError(f"header block: header {name!r} given twice")
        headers[name] = value
    if pos != len(block):
        raise SpdyError(f"header block: {len(block) - pos} bytes after the last of {count} pairs")
    return headers


class HeaderCompressor:
    """One direction's compression context.  zlib level 9, window 2^11,
    memLevel 1: Chromium's settings, and so byte-for-byte its output."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 11, 1, zdict=DICTIONARY)

    def compress(self, headers: Mapping[str, str]) -> bytes:
        return self.compress_block(encode_header_block(headers))

    def compress_block(self, block: bytes) -> bytes:
        """An already encoded block (tests use it to send malformed ones)."""
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction's context: each block must decompress completely."""

    def __init__(self, limit: int = MAX_HEADER_BLOCK) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)
        self._limit = limit

    def decompress(self, data: bytes) -> dict[str, str]:
        try:
            block = self._z.decompress(data, self._limit + 1)
        except zlib.error as exc:
            raise SpdyError(f"header block: zlib: {exc} (is it compressed with the SPDY/3 "
                            "dictionary?)") from None
        if len(block) > self._limit or self._z.unconsumed_tail:
            raise SpdyError(f"header block: decompresses past {self._limit} bytes")
        return decode_header_block(block)


# -- encoding ------------------------------------------------------------------------

def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise SpdyError(f"control frame type {frame_type}: payload of {len(payload)} bytes "
                        f"exceeds {MAX_LENGTH}")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, flags << 24 | len(payload)) + payload


def _stream_id(what: str, stream_id: int, *, zero_ok: bool = False) -> int:
    if not (0 if zero_ok else 1) <= stream_id <= MAX_STREAM_ID:
        raise SpdyError(f"{what}: stream id {stream_id} outside 1..{MAX_STREAM_ID}")
    return stream_id


def encode_frame(frame: Frame, compressor: HeaderCompressor | None = None) -> bytes:
    """The frame's bytes.  Frames with headers need the session's compressor,
    and must then be sent in the order they were encoded."""
    match frame:
        case DataFrame(stream_id=sid, data=data, fin=fin):
            if len(data) > MAX_LENGTH:
                raise SpdyError(f"DATA: {len(data)} bytes exceed the frame limit {MAX_LENGTH}")
            return struct.pack(">II", _stream_id("DATA", sid),
                               (FLAG_FIN if fin else 0) << 24 | len(data)) + bytes(data)
        case SynStream():
            if not 0 <= frame.priority <= 7:
                raise SpdyError(f"SYN_STREAM: priority {frame.priority} outside 0..7")
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL
                                                       if frame.unidirectional else 0)
            head = struct.pack(">IIBB", _stream_id("SYN_STREAM", frame.stream_id),
                               _stream_id("SYN_STREAM associated", frame.associated_to,
                                          zero_ok=True),
                               frame.priority << 5, frame.slot)
            return _control(SYN_STREAM, flags, head + _need(compressor).compress(frame.headers))
        case SynReply(stream_id=sid, headers=headers, fin=fin):
            return _control(SYN_REPLY, FLAG_FIN if fin else 0,
                            struct.pack(">I", _stream_id("SYN_REPLY", sid))
                            + _need(compressor).compress(headers))
        case Headers(stream_id=sid, headers=headers, fin=fin):
            return _control(HEADERS, FLAG_FIN if fin else 0,
                            struct.pack(">I", _stream_id("HEADERS", sid))
                            + _need(compressor).compress(headers))
        case RstStream(stream_id=sid, status=status):
            if not 1 <= status <= 0xFFFFFFFF:
                raise SpdyError(f"RST_STREAM: status {status} is not a valid status code")
            return _control(RST_STREAM, 0, struct.pack(">II", _stream_id("RST_STREAM", sid),
                                                       status))
        case Settings(entries=entries, clear=clear):
            body = b"".join(struct.pack(">II", sid & 0xFFFFFF, value) for sid, value in entries)
            return _control(SETTINGS, FLAG_SETTINGS_CLEAR if clear else 0,
                            struct.pack(">I", len(entries)) + body)
        case Ping(ping_id=pid):
            return _control(PING, 0, struct.pack(">I", pid))
        case GoAway(last_good_stream_id=last, status=status):
            return _control(GOAWAY, 0, struct.pack(">II", _stream_id("GOAWAY", last,
                                                                     zero_ok=True), status))
        case WindowUpdate(stream_id=sid, delta=delta):
            if not 1 <= delta <= MAX_WINDOW:
                raise SpdyError(f"WINDOW_UPDATE: delta {delta} outside 1..{MAX_WINDOW}")
            return _control(WINDOW_UPDATE, 0, struct.pack(
                ">II", _stream_id("WINDOW_UPDATE", sid, zero_ok=True), delta))
        case UnknownControl(frame_type=ftype, flags=flags, payload=payload):
            return _control(ftype, flags, payload)
    raise SpdyError(f"cannot encode {frame!r}: not a SPDY frame")


def _need(compressor: HeaderCompressor | None) -> HeaderCompressor:
    if compressor is None:
        raise SpdyError("a frame with headers needs the session's header compressor")
    return compressor


# -- decoding ------------------------------------------------------------------------

class FrameDecoder:
    """Bytes in (any chunking), frames out, in order.  Holds the peer's
    header decompression context, so one decoder per session direction."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes come; SpdyError if malformed."""
        if len(self._buf) < 8:
            return None
        first, second = struct.unpack_from(">II", self._buf)
        length = second & 0xFFFFFF
        if len(self._buf) < 8 + length:
            return None
        payload = bytes(self._buf[8:8 + length])
        del self._buf[:8 + length]
        flags = second >> 24
        if not first & 0x80000000:
            sid = first & 0x7FFFFFFF
            if sid == 0:
                raise SpdyError("DATA frame on stream 0 (stream ids start at 1)")
            return DataFrame(sid, payload, bool(flags & FLAG_FIN))
        version, ftype = first >> 16 & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"control frame type {ftype} has version {version}; this session "
                            f"speaks SPDY/{VERSION} (3.1)")
        return self._control(ftype, flags, payload)

    def _control(self, ftype: int, flags: int, payload: bytes) -> Frame:
        fin = bool(flags & FLAG_FIN)
        if ftype == SYN_STREAM:
            _min_length("SYN_STREAM", payload, 10)
            sid, assoc, pri, slot = struct.unpack_from(">IIBB", payload)
            sid = _nonzero("SYN_STREAM", sid & 0x7FFFFFFF)
            headers = self._headers.decompress(payload[10:])
            return SynStream(sid, headers, assoc & 0x7FFFFFFF, pri >> 5, slot, fin,
                             bool(flags & FLAG_UNIDIRECTIONAL))
        if ftype in (SYN_REPLY, HEADERS):
            name = "SYN_REPLY" if ftype == SYN_REPLY else "HEADERS"
            _min_length(name, payload, 4)
            sid = _nonzero(name, struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
            headers = self._headers.decompress(payload[4:])
            return (SynReply if ftype == SYN_REPLY else Headers)(sid, headers, fin)
        if ftype == RST_STREAM:
            sid, status = _two_words("RST_STREAM", payload)
            if status == 0:
                raise SpdyError(f"RST_STREAM on stream {sid & 0x7FFFFFFF}: status 0 is invalid")
            return RstStream(_nonzero("RST_STREAM", sid & 0x7FFFFFFF), status)
        if ftype == SETTINGS:
            _min_length("SETTINGS", payload, 4)
            (count,) = struct.unpack_from(">I", payload)
            if len(payload) != 4 + 8 * count:
                raise SpdyError(f"SETTINGS: length {len(payload)} does not fit {count} entries "
                                f"(needs {4 + 8 * count})")
            entries = tuple((struct.unpack_from(">I", payload, 4 + 8 * i)[0] & 0xFFFFFF,
                             struct.unpack_from(">I", payload, 8 + 8 * i)[0])
                            for i in range(count))
            return Settings(entries, bool(flags & FLAG_SETTINGS_CLEAR))
        if ftype == PING:
            if len(payload) != 4:
                raise SpdyError(f"PING: length {len(payload)}, must be 4")
            return Ping(struct.unpack(">I", payload)[0])
        if ftype == GOAWAY:
            last, status = _two_words("GOAWAY", payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if ftype == WINDOW_UPDATE:
            sid, delta = _two_words("WINDOW_UPDATE", payload)
            delta &= 0x7FFFFFFF
            if delta == 0:
                raise SpdyError(f"WINDOW_UPDATE on stream {sid & 0x7FFFFFFF}: delta 0 "
                                f"(allowed 1..{MAX_WINDOW})")
            return WindowUpdate(sid & 0x7FFFFFFF, delta)
        return UnknownControl(ftype, flags, payload)


def _min_length(name: str, payload: bytes, least: int) -> None:
    if len(payload) < least:
        raise SpdyError(f"{name}: length {len(payload)}, needs at least {least}")


def _two_words(name: str, payload: bytes) -> tuple[int, int]:
    if len(payload) != 8:
        raise SpdyError(f"{name}: length {len(payload)}, must be 8")
    return struct.unpack(">II", payload)


def _nonzero(name: str, stream_id: int) -> int:
    if stream_id == 0:
        raise SpdyError(f"{name} on stream 0 (stream ids start at 1)")
    return stream_id
