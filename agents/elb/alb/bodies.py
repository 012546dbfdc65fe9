"""Moving HTTP message bodies between streams, as framed by their heads.

Each relay copies one body from a reader to a writer (or, with no writer,
reads it and throws it away: a request the ALB answers itself must still be
consumed for the next one on the connection) and returns the bytes moved.
Chunked bodies are passed on chunk by chunk, framing and trailers included.
"""
from __future__ import annotations

import asyncio

from agents.elb.alb.http import CHUNKED, LENGTH, UNTIL_CLOSE, HttpParseError

CHUNK = 65536
MAX_CHUNK_LINE = 4096


async def relay(framing: str, length: int, src: asyncio.StreamReader,
                dst: asyncio.StreamWriter | None) -> int:
    """Copy the body after a head; raises asyncio.IncompleteReadError when the
    sender stops early, HttpParseError on broken chunk framing."""
    if framing == LENGTH:
        return await _relay_length(length, src, dst)
    if framing == CHUNKED:
        return await _relay_chunked(src, dst)
    if framing == UNTIL_CLOSE:
        return await _relay_until_close(src, dst)
    return 0


async def _relay_length(length: int, src, dst) -> int:
    left = length
    while left:
        data = await src.readexactly(min(left, CHUNK))
        left -= len(data)
        if dst is not None:
            dst.write(data)
            await dst.drain()
    return length


async def _relay_chunked(src, dst) -> int:
    moved = 0
    while True:
        line = await src.readuntil(b"\r\n")
        if len(line) > MAX_CHUNK_LINE:
            raise HttpParseError("chunk size line too long")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as err:
            raise HttpParseError(f"bad chunk size {size_text[:20]!r}") from err
        parts = [line]
        if size == 0:
            while True:                              # trailers, then the empty line
                trailer = await src.readuntil(b"\r\n")
                parts.append(trailer)
                if trailer == b"\r\n":
                    break
            _write(dst, parts)
            moved += sum(map(len, parts))
            if dst is not None:
                await dst.drain()
            return moved
        left = size + 2                              # data and its CRLF
        while left:
            data = await src.readexactly(min(left, CHUNK))
            parts.append(data)
            left -= len(data)
            if sum(map(len, parts)) >= CHUNK:
                _write(dst, parts)
                moved += sum(map(len, parts))
                parts = []
                if dst is not None:
                    await dst.drain()
        _write(dst, parts)
        moved += sum(map(len, parts))
        if dst is not None:
            await dst.drain()


async def _relay_until_close(src, dst) -> int:
    moved = 0
    while True:
        data = await src.read(CHUNK)
        if not data:
            return moved
        moved += len(data)
        if dst is not None:
            dst.write(data)
            await dst.drain()


def _write(dst, parts: list[bytes]) -> None:
    if dst is not None and parts:
        dst.write(b"".join(parts))


async def read_small(framing: str, length: int, src: asyncio.StreamReader,
                     limit: int = CHUNK) -> bytes | None:
    """A Content-Length body of at most limit bytes, read whole (None: the
    body is not like that and has to be relayed)."""
    if framing == LENGTH and length <= limit:
        return await src.readexactly(length)
    return None


async def tunnel(a_reader, a_writer, b_reader, b_writer) -> None:
    """Bytes both ways until either side closes (an upgraded connection)."""
    async def pump(src, dst):
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
    await asyncio.gather(pump(a_reader, b_writer), pump(b_reader, a_writer))
