"""SPDY/3.1: the frame codec, sessions over a socketpair, and kubectl as the peer.

Test vectors from other SPDY/3 implementations (not produced by this code):
- CHROMIUM_SYN_STREAM: Chromium's net/spdy/spdy_framer_test.cc,
  SpdyFramerTest.CreateSynStreamCompressed, kV3FrameData: the SYN_STREAM that
  Chromium's framer (SPDY's reference implementation) compresses for stream 1,
  priority 4, headers bar=foo and foo=bar.
- PROXYGEN_PUSH: proxygen's SPDYCodecTest pushStreamWithHostMissing, a
  unidirectional SYN_STREAM (stream 2, associated to 1) whose header block is
  zlib with the SPDY/3 DICTID and stored (uncompressed) deflate blocks.
The last tests run the bundled kubectl's port-forward (moby/spdystream, Go's
compress/zlib) against these sessions behind a minimal fake API server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection
from wsproto.events import Ping as WsPing

from controlplane.api import spdy_frames as sf
from controlplane.api.spdy import (
    SpdyError,
    SpdySession,
    SpdyStreamReset,
    SpdyTimeout,
)

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"

CHROMIUM_SYN_STREAM = bytes.fromhex(
    "800300010000002700000001000000008000"
    "38eae3c6a7c202e50e50c24b4a04e50be6b4fc7c240a2808000000ffff")
PROXYGEN_PUSH = bytes.fromhex(
    "800300010200007c000000020000000100003830e3c6a7c20062009dff00000004000000053a7061"
    "74680000001468747470733a2f2f7777772e666f6f2e636f6d2f000000073a736368656d65000000"
    "0468747470000000073a73746174757300000003323030000000083a76657273696f6e0000000848"
    "5454502f312e31000000ffff")


# -- helpers ---------------------------------------------------------------------------

class Worker(threading.Thread):
    """fn(*args) on a thread of the test's own; value() joins (bounded) and re-raises."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True, name=f"test-{fn.__name__}")
        self.fn, self.args, self.result, self.error = fn, args, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:     # handed to the test thread by value()
            self.error = exc

    def value(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn.__name__} still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def session(sock: socket.socket, server: bool, **options) -> SpdySession:
    options.setdefault("timeout", 10)
    return SpdySession(lambda: sock.recv(65536), sock.sendall, server=server,
                       shutdown=lambda: sock.shutdown(socket.SHUT_RDWR), **options)


def read_all(stream, timeout: float = 20) -> bytes:
    out = bytearray()
    while chunk := stream.read(timeout):
        out += chunk
    return bytes(out)


class RawPeer:
    """The far end of a socketpair, spoken frame by frame (a minimal or hostile peer)."""

    def __init__(self, sock: socket.socket):
        sock.settimeout(10)
        self.sock, self.compressor, self.decoder = sock, sf.HeaderCompressor(), sf.FrameDecoder()

    def send(self, *frames) -> None:
        self.sock.sendall(b"".join(sf.encode_frame(f, self.compressor) for f in frames))

    def next(self, kind=None):
        """The next frame (of kind, skipping others); socket timeout if none comes."""
        while True:
            while (frame := self.decoder.next_frame()) is not None:
                if kind is None or isinstance(frame, kind):
                    return frame
            data = self.sock.recv(65536)
            assert data, "the session closed the transport"
            self.decoder.feed(data)

    def rest(self) -> list:
        """Every frame until the session closes the transport."""
        frames = []
        while data := self.sock.recv(65536):
            self.decoder.feed(data)
            while (frame := self.decoder.next_frame()) is not None:
                frames.append(frame)
        return frames


@pytest.fixture
def pair():
    """A started (server, client) pair over a socketpair."""
    a, b = socket.socketpair()
    server, client = session(a, True).start(), session(b, False).start()
    yield server, client
    client.close()
    server.close()
    a.close()
    b.close()


@pytest.fixture
def raw():
    """A started server session and a RawPeer on the other end."""
    a, b = socket.socketpair()
    sessions = []

    def make(**options) -> tuple[SpdySession, RawPeer]:
        sessions.append(session(a, True, **options).start())
        return sessions[-1], RawPeer(b)
    yield make
    for s in sessions:
        s.close()
    a.close()
    b.close()


# -- the codec -----------------------------------------------------------------------------

def test_the_dictionary_is_spdy3s_and_matches_the_dictid_other_implementations_send():
    assert len(sf.DICTIONARY) == 1423
    assert zlib.adler32(sf.DICTIONARY) == sf.DICTIONARY_ID == 0xE3C6A7C2
    assert CHROMIUM_SYN_STREAM[20:24] == PROXYGEN_PUSH[20:24] == struct.pack(">I", 0xE3C6A7C2)
    assert sf.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert sf.DICTIONARY.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def test_decodes_chromiums_compressed_syn_stream():
    decoder = sf.FrameDecoder()
    decoder.feed(CHROMIUM_SYN_STREAM)
    assert decoder.next_frame() == sf.SynStream(1, {"bar": "foo", "foo": "bar"}, priority=4)
    assert decoder.pending == 0


@pytest.mark.skipif("ng" in zlib.ZLIB_RUNTIME_VERSION, reason="zlib-ng deflates differently")
def test_compresses_byte_for_byte_like_chromium():
    frame = sf.SynStream(1, {"bar": "foo", "foo": "bar"}, priority=4)
    assert sf.encode_frame(frame, sf.HeaderCompressor()) == CHROMIUM_SYN_STREAM


def test_decodes_proxygens_unidirectional_push_stream():
    decoder = sf.FrameDecoder()
    decoder.feed(PROXYGEN_PUSH)
    assert decoder.next_frame() == sf.SynStream(
        2, {":path": "https://www.foo.com/", ":scheme": "http", ":status": "200",
            ":version": "HTTP/1.1"}, associated_to=1, unidirectional=True)


EVERY_FRAME = [
    sf.SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"}, priority=3),
    sf.SynStream(3, {"streamtype": "data"}, associated_to=1, slot=2, fin=True,
                 unidirectional=True),
    sf.SynReply(1, {}),
    sf.SynReply(3, {"status": "200"}, fin=True),
    sf.Headers(3, {"x-late": "yes"}, fin=True),
    sf.DataFrame(1, b"hello"),
    sf.DataFrame(1, b"", fin=True),
    sf.DataFrame(sf.MAX_STREAM_ID, bytes(range(256)) * 300),
    sf.RstStream(3, sf.CANCEL),
    sf.Settings(((sf.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (4, 100))),
    sf.Settings((), clear=True),
    sf.Ping(1),
    sf.Ping(0xFFFFFFFF),
    sf.GoAway(7, sf.GOAWAY_PROTOCOL_ERROR),
    sf.GoAway(0),
    sf.WindowUpdate(0, 1 << 20),
    sf.WindowUpdate(5, sf.MAX_WINDOW),
    sf.UnknownControl(10, 0, b"credential"),
]


def test_every_frame_type_round_trips_through_one_context_fed_a_byte_at_a_time():
    compressor, decoder = sf.HeaderCompressor(), sf.FrameDecoder()
    wire = b"".join(sf.encode_frame(f, compressor) for f in EVERY_FRAME)
    decoded = []
    for i in range(len(wire)):
        decoder.feed(wire[i:i + 1])
        while (frame := decoder.next_frame()) is not None:
            decoded.append(frame)
    assert decoded == EVERY_FRAME
    assert decoder.pending == 0


def test_header_blocks_share_one_compression_context_per_direction():
    compressor = sf.HeaderCompressor()
    headers = {"streamtype": "stdout", "requestid": "123456789"}
    first = sf.encode_frame(sf.SynStream(1, headers), compressor)
    second = sf.encode_frame(sf.SynStream(3, headers), compressor)
    assert len(second) < len(first)          # the second block refers back to the first
    alone = sf.FrameDecoder()
    alone.feed(second)
    with pytest.raises(SpdyError, match="zlib"):
        alone.next_frame()
    in_order = sf.FrameDecoder()
    in_order.feed(first + second)
    assert [in_order.next_frame().headers, in_order.next_frame().headers] == [headers] * 2


def test_header_names_are_sent_lower_case_and_values_keep_their_nul_separators():
    block = sf.encode_header_block({"StreamType": "data", "accept": "a\x00b"})
    assert sf.decode_header_block(block) == {"streamtype": "data", "accept": "a\x00b"}


def _control(frame_type: int, payload: bytes, version: int = 3, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, frame_type, flags << 24 | len(payload)) + payload


def _block(pairs: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    body = b"".join(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
                    for n, v in pairs)
    return struct.pack(">I", len(pairs) if count is None else count) + body


def _compressed(block: bytes, zdict: bytes = sf.DICTIONARY) -> bytes:
    z = zlib.compressobj(zdict=zdict)
    return z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)


MALFORMED = {
    "version 2": (_control(sf.PING, b"\0\0\0\1", version=2), "version 2"),
    "DATA on stream 0": (struct.pack(">II", 0, 3) + b"abc", "DATA frame on stream 0"),
    "short SYN_STREAM": (_control(sf.SYN_STREAM, b"\0\0\0\1\0\0"), "SYN_STREAM: length 6"),
    "SYN_STREAM 0": (_control(sf.SYN_STREAM, bytes(10) + _compressed(_block([]))),
                     "SYN_STREAM on stream 0"),
    "RST status 0": (_control(sf.RST_STREAM, struct.pack(">II", 1, 0)), "status 0"),
    "RST length": (_control(sf.RST_STREAM, b"\0\0\0\1\0\0\5"), "RST_STREAM: length 7"),
    "SETTINGS count": (_control(sf.SETTINGS, struct.pack(">III", 2, 7, 1)),
                       "does not fit 2 entries"),
    "PING length": (_control(sf.PING, b"\0\0\1"), "PING: length 3"),
    "GOAWAY length": (_control(sf.GOAWAY, b"\0\0\0\1"), "GOAWAY: length 4"),
    "WINDOW_UPDATE 0": (_control(sf.WINDOW_UPDATE, struct.pack(">II", 1, 0)), "delta 0"),
    "other dictionary": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([]), zdict=b"SPDY/2 had another")), "header block: zlib"),
    "garbage block": (_control(sf.SYN_REPLY, b"\0\0\0\1garbage!"), "header block: zlib"),
    "upper-case name": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"Port", b"80")]))), "'Port' is not lower-case"),
    "duplicate name": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"port", b"80"), (b"port", b"81")]))), "'port' given twice"),
    "pair count": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"port", b"80")], count=1000))), "1000 pairs cannot fit"),
    "value overrun": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"port", b"80")])[:-1])), "value of 2 bytes runs past the end"),
    "trailing bytes": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"port", b"80")]) + b"xx")), "2 bytes after the last of 1 pairs"),
    "zlib bomb": (_control(sf.SYN_REPLY, b"\0\0\0\1" + _compressed(
        _block([(b"x", bytes(sf.MAX_HEADER_BLOCK))]))), "decompresses past"),
}


@pytest.mark.parametrize("wire,reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_raise_naming_what_was_wrong(wire, reason):
    decoder = sf.FrameDecoder()
    decoder.feed(wire)
    with pytest.raises(SpdyError, match=re.escape(reason)):
        decoder.next_frame()


@pytest.mark.parametrize("frame,reason", [
    (sf.DataFrame(0, b"x"), "DATA: stream id 0 outside"),
    (sf.SynStream(1, {}, priority=8), "priority 8 outside 0..7"),
    (sf.WindowUpdate(1, 0), "delta 0 outside"),
    (sf.RstStream(1, 0), "status 0"),
    (sf.SynReply(1, {"port": "80", "Port": "81"}), "'port' given twice"),
], ids=["data-0", "priority", "delta", "rst-0", "duplicate"])
def test_frames_that_cannot_be_sent_raise_naming_the_field(frame, reason):
    with pytest.raises(SpdyError, match=re.escape(reason)):
        sf.encode_frame(frame, sf.HeaderCompressor())


def test_an_incomplete_frame_waits_for_more_bytes():
    decoder = sf.FrameDecoder()
    wire = sf.encode_frame(sf.DataFrame(1, b"abcdef"))
    decoder.feed(wire[:-1])
    assert decoder.next_frame() is None and decoder.pending == len(wire) - 1
    decoder.feed(wire[-1:])
    assert decoder.next_frame() == sf.DataFrame(1, b"abcdef")


# -- sessions ------------------------------------------------------------------------------

def test_client_opens_a_stream_and_the_server_accepts_it_with_its_headers(pair):
    server, client = pair
    opened = Worker(client.open_stream, {"StreamType": "error", "port": "80", "requestid": "0"})
    stream = server.accept_stream(10)
    assert stream.headers == {"streamtype": "error", "port": "80", "requestid": "0"}
    assert opened.value().id == stream.id == 1
    assert server.accept_stream(0.05) is None            # nothing else was opened
    assert server.peer_flow_control and client.peer_flow_control


def test_ten_megabytes_each_way_while_another_stream_stays_responsive(pair):
    server, client = pair
    payload = os.urandom(10 * 1024 * 1024)
    released = threading.Event()

    def echo(stream, hold: bool):
        first = stream.read(10)
        if hold:
            released.wait(30)
        stream.write(first)
        while data := stream.read(20):
            stream.write(data)
        stream.close()

    def serve():
        return [Worker(echo, server.accept_stream(10), hold) for hold in (True, False)]

    handlers = Worker(serve)
    big = client.open_stream({"streamtype": "data"})
    small = client.open_stream({"streamtype": "data", "requestid": "1"})
    writer = Worker(lambda: (big.write(payload), big.close()))
    reader = Worker(read_all, big, 60)
    # the big stream's server side holds its data: the client's writer runs out of window...
    wait_until(lambda: big.send_window <= 0, "the big stream's window to close")
    assert writer.is_alive()
    # ...while the other stream still answers at once
    for i in range(20):
        small.write(b"ping %d" % i)
        assert small.read(10) == b"ping %d" % i
    released.set()
    writer.value()
    assert hashlib.sha256(reader.value()).digest() == hashlib.sha256(payload).digest()
    small.close()
    assert small.read(10) == b""
    for handler in handlers.value():
        handler.value()


def test_a_server_write_waits_for_the_clients_window(pair):
    server, client = pair
    opening = Worker(client.open_stream, {"streamtype": "stdout"})
    out = server.accept_stream(10)
    mine = opening.value()
    writer = Worker(out.write, b"x" * 300_000)
    wait_until(lambda: out.send_window <= 0, "the server's window on stdout to close")
    assert writer.is_alive() and mine.buffered <= sf.DEFAULT_WINDOW
    got = bytearray()
    while len(got) < 300_000:
        got += mine.read(10)
    writer.value()
    assert bytes(got) == b"x" * 300_000


def test_a_write_the_peer_never_makes_room_for_times_out_naming_the_window(raw):
    server, peer = raw(timeout=0.5)
    peer.send(sf.Settings(((sf.SETTINGS_INITIAL_WINDOW_SIZE, 1000),)), sf.SynStream(1, {}))
    stream = server.accept_stream(10)
    with pytest.raises(SpdyTimeout, match=r"stream 1: the peer's window stayed closed .*"
                                          r"\(stream 0, session"):
        stream.write(b"y" * 5000)
    assert peer.next(sf.DataFrame) == sf.DataFrame(1, b"y" * 1000)


def test_window_updates_give_back_what_the_reader_consumed(raw):
    server, peer = raw()
    peer.send(sf.SynStream(1, {}), sf.DataFrame(1, b"a" * 40000))
    stream = server.accept_stream(10)
    assert [peer.next() for _ in range(3)] == [
        sf.Settings(((sf.SETTINGS_INITIAL_WINDOW_SIZE, 65536),)),   # announced at start()
        sf.WindowUpdate(0, 15 * 65536),                               # the session window
        sf.SynReply(1, {})]
    wait_until(lambda: stream.buffered == 40000, "the data to arrive")
    assert read_exactly(stream, 40000) == b"a" * 40000
    assert peer.next(sf.WindowUpdate) == sf.WindowUpdate(1, 40000)


def read_exactly(stream, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += stream.read(10)
    return bytes(out)


def test_a_peer_without_flow_control_like_spdystream_is_neither_stalled_nor_refused(raw):
    server, peer = raw()
    blob = os.urandom(1_000_000)
    # spdystream: no SETTINGS, never a WINDOW_UPDATE, DATA regardless of windows
    peer.send(sf.SynStream(1, {"streamtype": "data"}),
              *[sf.DataFrame(1, blob[i:i + 32768]) for i in range(0, len(blob), 32768)],
              sf.DataFrame(1, b"", fin=True))
    stream = server.accept_stream(10)
    assert read_all(stream) == blob
    assert not server.peer_flow_control

    def receive() -> bytes:
        received = bytearray()
        while not (frame := peer.next(sf.DataFrame)).fin:
            received += frame.data
        return bytes(received)
    receiver = Worker(receive)
    stream.write(blob)                                  # 15 windows' worth, no update needed
    stream.close()
    assert receiver.value() == blob


def test_unread_data_past_max_buffer_holds_the_reader_back(raw):
    server, peer = raw(max_buffer=100_000)
    peer.send(sf.SynStream(1, {}))
    stream = server.accept_stream(10)
    sender = Worker(peer.send, *[sf.DataFrame(1, b"z" * 10_000) for _ in range(100)],
                    sf.DataFrame(1, b"", fin=True))
    wait_until(lambda: stream.buffered >= 100_000, "the buffer to fill")
    assert stream.buffered <= 110_000
    assert read_all(stream) == b"z" * 1_000_000
    sender.value()


def test_fin_is_a_half_close(pair):
    server, client = pair
    mine = Worker(client.open_stream, {})
    theirs = server.accept_stream(10)
    mine = mine.value()
    mine.write(b"request")
    mine.close()
    mine.close()                                        # idempotent
    assert read_all(theirs) == b"request" and theirs.remote_closed
    theirs.write(b"response after the client's FIN")
    theirs.close()
    assert read_all(mine) == b"response after the client's FIN" and mine.remote_closed
    with pytest.raises(SpdyError, match="stream 1: write after close"):
        mine.write(b"more")


def test_a_reset_ends_reads_and_fails_writes_on_both_sides(pair):
    server, client = pair
    mine = Worker(client.open_stream, {})
    theirs = server.accept_stream(10)
    mine = mine.value()
    mine.reset()
    assert theirs.read(10) == b"" and theirs.reset_status == sf.CANCEL
    with pytest.raises(SpdyStreamReset, match=r"stream 1 was reset by the peer \(CANCEL\)"):
        theirs.write(b"too late")
    with pytest.raises(SpdyStreamReset, match="reset by this side"):
        mine.write(b"too late")
    assert mine.read(1) == b""


def test_a_reset_wakes_a_writer_waiting_for_window(pair):
    server, client = pair
    opening = Worker(client.open_stream, {})
    out = server.accept_stream(10)
    mine = opening.value()
    writer = Worker(out.write, b"w" * 500_000)
    wait_until(lambda: out.send_window <= 0, "the window to close")
    mine.reset(sf.REFUSED_STREAM)
    with pytest.raises(SpdyStreamReset, match="REFUSED_STREAM"):
        writer.value()


def test_headers_frames_add_headers_and_may_finish_the_stream(raw):
    server, peer = raw()
    peer.send(sf.SynStream(1, {"streamtype": "stdin"}), sf.DataFrame(1, b"in"),
              sf.Headers(1, {"x-exit": "0"}, fin=True))
    stream = server.accept_stream(10)
    assert read_all(stream) == b"in"
    assert stream.extra_headers == {"x-exit": "0"} and stream.headers == {"streamtype": "stdin"}


def test_data_after_the_peers_fin_resets_the_stream(raw):
    server, peer = raw()
    peer.send(sf.SynStream(1, {}, fin=True), sf.DataFrame(1, b"late"))
    stream = server.accept_stream(10)
    assert peer.next(sf.RstStream) == sf.RstStream(1, sf.STREAM_ALREADY_CLOSED)
    assert stream.read(10) == b"" and stream.reset_status == sf.STREAM_ALREADY_CLOSED


def test_streams_must_come_with_the_peers_parity_in_increasing_order(raw):
    server, peer = raw()
    peer.send(sf.SynStream(2, {}), sf.SynStream(5, {}), sf.SynStream(3, {}))
    assert peer.next(sf.RstStream) == sf.RstStream(2, sf.PROTOCOL_ERROR)
    assert peer.next(sf.RstStream) == sf.RstStream(3, sf.PROTOCOL_ERROR)
    assert server.accept_stream(10).id == 5
    assert server.accept_stream(0.05) is None


def test_pings_are_echoed_and_answered(pair, raw):
    server, client = pair
    assert client.ping(10) >= 0 and server.ping(10) >= 0
    alone, peer = raw()
    peer.send(sf.Ping(7), sf.Ping(8))               # 7 has the client's parity, 8 the server's
    assert peer.next(sf.Ping) == sf.Ping(7)
    alone.close()
    assert [f for f in peer.rest() if isinstance(f, sf.Ping)] == []   # 8 was not echoed


def test_close_sends_goaway_ends_streams_and_joins_every_thread():
    before = set(threading.enumerate())
    a, b = socket.socketpair()
    server, client = session(a, True).start(), session(b, False).start()
    opening = Worker(client.open_stream, {})
    stream = server.accept_stream(10)
    mine = opening.value()
    blocked = Worker(stream.read, None)
    server.close()
    assert blocked.value() == b"" and server.closed
    wait_until(lambda: client.closed, "the client to see the end")
    assert client.goaway == sf.GoAway(1, sf.GOAWAY_OK) and client.error is None
    assert client.accept_stream(1) is None
    with pytest.raises(SpdyError, match="cannot open a stream"):
        client.open_stream({})
    assert mine.read(10) == b""
    client.close()
    server.close()                                  # idempotent
    a.close()
    b.close()
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_the_peer_going_away_ends_the_session_without_error(raw):
    server, peer = raw()
    peer.send(sf.SynStream(1, {}), sf.DataFrame(1, b"last words"))
    stream = server.accept_stream(10)
    peer.sock.shutdown(socket.SHUT_RDWR)
    assert read_all(stream) == b"last words"
    wait_until(lambda: server.closed, "the session to end")
    assert server.error is None and server.accept_stream(1) is None


@pytest.mark.parametrize("name", ["version 2", "garbage block", "upper-case name"])
def test_malformed_input_fails_the_session_with_the_reason_and_a_goaway(raw, name):
    wire, reason = MALFORMED[name]
    server, peer = raw()
    peer.send(sf.SynStream(1, {}))
    stream = server.accept_stream(10)
    if name == "upper-case name":         # in the peer's own compression context
        wire = _control(sf.SYN_STREAM, struct.pack(">IIBB", 3, 0, 0, 0)
                        + peer.compressor.compress_block(_block([(b"Port", b"80")])))
    peer.sock.sendall(wire)
    assert server.accept_stream(10) is None
    assert reason in str(server.error)
    assert peer.next(sf.GoAway).status == sf.GOAWAY_PROTOCOL_ERROR
    with pytest.raises(SpdyError, match=re.escape(reason)):
        stream.read(10)
    with pytest.raises(SpdyError, match="session failed"):
        stream.write(b"x")


def test_frames_split_into_tiny_messages_and_sent_whole():
    """A WebSocket tunnel: spdystream writes each field apart (tiny messages);
    each of our send() calls must hold whole frames."""
    a, b = socket.socketpair()
    sent: list[bytes] = []

    def send(data: bytes) -> None:
        sent.append(data)
        a.sendall(data)

    tunnel = SpdySession(lambda: a.recv(3), send, timeout=10,
                         shutdown=lambda: a.shutdown(socket.SHUT_RDWR)).start()
    client = session(b, False).start()
    try:
        opened = Worker(client.open_stream, {"streamtype": "data"})
        stream = tunnel.accept_stream(10)
        mine = opened.value()
        mine.write(b"through a straw" * 1000)
        mine.close()
        data = read_all(stream)
        stream.write(data)
        stream.close()
        assert read_all(mine) == b"through a straw" * 1000
    finally:
        client.close()
        tunnel.close()
        a.close()
        b.close()
    for chunk in sent:
        pos = 0
        while pos < len(chunk):
            pos += 8 + (struct.unpack_from(">I", chunk, pos + 4)[0] & 0xFFFFFF)
        assert pos == len(chunk)


# -- kubectl port-forward as the peer ------------------------------------------------------

POD = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"containers": [{"name": "web", "image": "nginx"}]}, "status": {"phase": "Running"}}
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True,
         "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]},
    "/api/v1/namespaces/default/pods/web": POD,
}
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"


class WebSocketTunnel:
    """SPDY inside WebSocket binary messages, the server end (after the 101)."""

    def __init__(self, conn: socket.socket, reader):
        self.conn, self.reader, self.ws = conn, reader, Connection(ConnectionType.SERVER)
        self.lock = threading.Lock()

    def recv(self) -> bytes:
        while True:
            for event in self.ws.events():
                if isinstance(event, BytesMessage) and event.data:
                    return bytes(event.data)
                if isinstance(event, CloseConnection):
                    return b""
                if isinstance(event, WsPing):
                    self._write(self.ws.send(event.response()))
            data = self.reader.read1(65536)
            if not data:
                return b""
            self.ws.receive_data(data)

    def send(self, data: bytes) -> None:
        self._write(self.ws.send(BytesMessage(data=data)))

    def _write(self, data: bytes) -> None:
        with self.lock:
            self.conn.sendall(data)


class FakeApiServer:
    """Just enough of an API server for `kubectl port-forward pod/web`: discovery,
    the pod, and the portforward upgrade (WebSocket tunnel, or refused so kubectl
    falls back to SPDY/3.1), whose streams it echoes."""

    def __init__(self, websocket: bool):
        self.websocket = websocket
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sessions: list[SpdySession] = []
        self.transports: list[str] = []
        self.headers: list[dict] = []
        self.threads = [Worker(self._accept)]

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)      # wakes the accept() in _accept
        self.listener.close()
        for s in self.sessions:
            s.close()
        for thread in self.threads:
            thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return                               # stop() closed the listener
            self.threads.append(Worker(self._http, conn))

    def _http(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while line := reader.readline():
                headers = {}
                while header := reader.readline().strip():
                    name, _, value = header.decode().partition(":")
                    headers[name.lower()] = value.strip()
                path = line.split()[1].decode().partition("?")[0]
                if path in DISCOVERY:
                    self._answer(conn, "200 OK", DISCOVERY[path])
                elif headers.get("upgrade", "").lower() == "spdy/3.1":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: SPDY/3.1\r\n"
                                 b"X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n")
                    self.transports.append("spdy")
                    return self._serve(conn, lambda: reader.read1(65536), conn.sendall)
                elif self.websocket and TUNNEL_PROTOCOL in headers.get(
                        "sec-websocket-protocol", ""):
                    key = headers["sec-websocket-key"].encode()
                    accept = base64.b64encode(hashlib.sha1(
                        key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\nSec-WebSocket-Protocol: " + TUNNEL_PROTOCOL.encode()
                                 + b"\r\n\r\n")
                    self.transports.append("websocket")
                    tunnel = WebSocketTunnel(conn, reader)
                    return self._serve(conn, tunnel.recv, tunnel.send)
                else:
                    self._answer(conn, "400 Bad Request", {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "no", "reason": "BadRequest", "code": 400})

    @staticmethod
    def _answer(conn: socket.socket, status: str, doc: dict) -> None:
        body = json.dumps(doc).encode()
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def _serve(self, conn, recv, send) -> None:
        spdy = SpdySession(recv, send, timeout=10,
                           shutdown=lambda: conn.shutdown(socket.SHUT_RDWR)).start()
        self.sessions.append(spdy)
        errors = {}
        while (stream := spdy.accept_stream(30)) is not None:
            self.headers.append(stream.headers)
            if stream.headers["streamtype"] == "error":
                errors[stream.headers["requestid"]] = stream
            else:
                self.threads.append(Worker(self._echo, stream,
                                           errors.pop(stream.headers["requestid"])))

    @staticmethod
    def _echo(data, error) -> None:
        while chunk := data.read(30):
            data.write(chunk)
        data.close()
        error.close()


def _forwarded_port(proc: subprocess.Popen) -> int:
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready, "kubectl port-forward printed nothing in 30 s"
    line = proc.stdout.readline()
    found = re.search(r"127\.0\.0\.1:(\d+) -> 80", line)
    assert found, f"unexpected kubectl output: {line!r}" + (
        f"\n{proc.stderr.read()}" if proc.poll() is not None else "")
    return int(found.group(1))


def _through_the_forward(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        reader = Worker(lambda: b"".join(iter(lambda: conn.recv(65536), b"")))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        return reader.value()


@pytest.mark.skipif(not KUBECTL.exists(), reason="the bundled kubectl is not installed")
@pytest.mark.parametrize("websocket", [False, True], ids=["spdy-upgrade", "websocket-tunnel"])
def test_kubectl_port_forward_speaks_to_these_sessions(tmp_path, websocket):
    api = FakeApiServer(websocket)
    (tmp_path / "kubeconfig").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api.port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                  "namespace": "default"}}]}))
    proc = subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(tmp_path / "kubeconfig"), "--cache-dir",
         str(tmp_path / "cache"), "port-forward", "pod/web", ":80"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)})
    try:
        port = _forwarded_port(proc)
        big, small = os.urandom(2_000_000), os.urandom(100_000)
        transfers = [Worker(_through_the_forward, port, blob) for blob in (big, small)]
        assert [t.value() for t in transfers] == [big, small]
        spdy = api.sessions[0]
        assert spdy.ping(10) >= 0                      # kubectl echoes our PING
        assert not spdy.peer_flow_control              # kubectl never sent a WINDOW_UPDATE
        assert sorted((h["streamtype"], h["requestid"]) for h in api.headers) == [
            ("data", "0"), ("data", "1"), ("error", "0"), ("error", "1")]
        assert {h["port"] for h in api.headers} == {"80"}
        assert api.transports == ["websocket" if websocket else "spdy"]
        assert spdy.error is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
        api.stop()
