"""One ALB listener on one ALB node's VIP: the HTTP/1.1 reverse proxy itself.

Per client connection (kept alive between requests, closed after the ALB's
idle timeout without a request): read a request head, route it by the
listener's rules (match.py), then answer it locally (fixed response,
redirect, 503 when the target group has nobody to send to) or forward it to
a target the balancer picks, on a pooled keep-alive connection from the
node's ENI, with the X-Forwarded-* headers added (http.py).  What the ALB
answers when the target fails, as AWS documents it:
- 502: the target refused or reset the connection, closed it without
  answering, or answered something that is not HTTP;
- 504: no connection within 10 s, or no response head within the idle timeout.
An idempotent request (with at most a small body) that meets a pooled
connection the target has just closed is sent once more on a fresh one
(what any keep-alive proxy must do).  `Expect: 100-continue` is answered by
the ALB itself.
Every request leaves one access-log line (accesslog.py).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from agents.elb.alb.accesslog import AccessLog, LogEntry, request_field
from agents.elb.alb.bodies import CHUNK, read_small, relay, tunnel
from agents.elb.alb.http import (
    LENGTH,
    NO_BODY,
    UNTIL_CLOSE,
    Head,
    HttpParseError,
    body_framing,
    client_response_head,
    error_page,
    forward_head,
    new_trace_id,
    parse_request,
    parse_response,
    redirect_location,
    response,
    wants_keep_alive,
)
from agents.elb.alb.match import Match, route, split_host
from agents.elb.alb.pool import Conn, TargetPool, small_reads
from agents.elb.alb.runtime import AlbRuntime
from agents.elb.alb.tls import server_context
from base.alb_api import FIXED_RESPONSE, FORWARD, HTTPS, Certificate

log = logging.getLogger("elb.alb")
HEAD_LIMIT = 64 * 1024
END = b"\r\n\r\n"
CLIENT_CLOSED = 460         # what ALB logs when the client left before the answer
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class _TargetTimeout(Exception):
    pass


@dataclass
class _Exchange:
    """One request's facts, gathered for its log line."""

    client: str
    created: float
    head: Head | None = None
    received: int = 0
    sent: int = 0
    target: str | None = None
    group: str = "-"
    dispatched: float = -1.0
    answered: float = -1.0
    elb_code: int | None = None
    target_code: int | None = None
    match: Match | None = None
    trace: str = "-"
    redirect: str = "-"
    action: str = "-"
    tried: tuple[str, ...] = ()


class ListenerServer:
    """Serves one listener on one VIP; lookup() gives the ALB's current runtime."""

    def __init__(self, vip: str, port: int, protocol: str,
                 certificates: tuple[Certificate, ...],
                 lookup: Callable[[], AlbRuntime | None], pool: TargetPool,
                 access_log: AccessLog):
        self.vip, self.port, self.protocol = vip, port, protocol
        self.certificates = certificates
        self.lookup = lookup
        self.pool = pool
        self.access_log = access_log
        self.scheme = "https" if protocol == HTTPS else "http"
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Bind; raises OSError (address) or ssl.SSLError/OSError (certificate files)."""
        context = server_context(self.certificates) if self.protocol == HTTPS else None
        self._server = await asyncio.start_server(
            self._accept, self.vip, self.port, reuse_address=True, backlog=1024,
            ssl=context, limit=HEAD_LIMIT, ssl_handshake_timeout=10 if context else None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError,
                asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    # --- a client connection --------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        runtime = self.lookup()
        if not peer or runtime is None or not runtime.alb.allows(peer[0]):
            return
        client = f"{peer[0]}:{peer[1]}"
        tls = writer.get_extra_info("ssl_object")
        small_reads(writer)
        conn_id = f"TID_{os.urandom(8).hex()}"
        loop = asyncio.get_running_loop()
        while True:
            runtime = self.lookup()
            if runtime is None:
                return
            timer = loop.call_later(runtime.alb.idle_timeout, writer.transport.abort)
            try:
                raw = await reader.readuntil(END)
            except asyncio.LimitOverrunError:       # AWS: 400 past 64 KB of headers
                writer.write(response(400, error_page(400), keep_alive=False))
                await writer.drain()
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            finally:
                timer.cancel()
            exchange = _Exchange(client, time.time(), received=len(raw))
            try:
                keep = await self._exchange(runtime, raw, exchange, reader, writer)
            finally:
                self._log(runtime, exchange, tls, conn_id)
            await writer.drain()
            if not keep:
                return

    async def _exchange(self, runtime: AlbRuntime, raw: bytes, ex: _Exchange,
                        reader, writer) -> bool:
        """Answer one request; True when the client connection stays open."""
        listener = runtime.listener(self.port)
        try:
            ex.head = head = parse_request(raw)
            framing, length = body_framing(head)
        except HttpParseError as err:
            log.info("%s: bad request from %s: %s", runtime.alb.name, ex.client, err)
            return self._answer(ex, writer, 400, error_page(400), keep=False)
        if listener is None:
            return self._answer(ex, writer, 503, error_page(503), keep=False)
        keep = wants_keep_alive(head)
        ex.match = match = route(listener, split_host(head.host), head.path)
        action = match.action
        ex.action = action.type
        if action.type == FORWARD:
            return await self._forward(runtime, action.target_group, head, framing, length,
                                       ex, reader, writer, keep)
        keep = await self._skip_body(head, framing, length, ex, reader) and keep
        if action.type == FIXED_RESPONSE:
            return self._answer(ex, writer, action.status_code, action.body.encode(),
                                keep, action.content_type)
        ex.redirect = redirect_location(head, action.protocol, action.port, self.port)
        return self._answer(ex, writer, action.status_code, b"", keep,
                            extra=(("Location", ex.redirect),))

    @staticmethod
    async def _skip_body(head: Head, framing: str, length: int, ex: _Exchange,
                         reader) -> bool:
        """Consume the body of a request answered without a target; False when
        the client waits for a 100 Continue it will not get (then it is not
        read and the connection closes after the answer)."""
        if framing != NO_BODY and "100-continue" in head.tokens("expect"):
            return False
        ex.received += await relay(framing, length, reader, None)
        return True

    def _answer(self, ex: _Exchange, writer, code: int, body: bytes, keep: bool,
                content_type: str = "text/html", extra=()) -> bool:
        data = response(code, body, content_type, keep, extra)
        writer.write(data)
        ex.sent += len(data)
        ex.elb_code = code
        return keep

    # --- to a target --------------------------------------------------------------------

    async def _forward(self, runtime: AlbRuntime, group: str, head: Head, framing: str,
                       length: int, ex: _Exchange, reader, writer, keep: bool) -> bool:
        ex.group = group
        candidates, _ = runtime.serving(group)
        if not candidates:
            keep = await self._skip_body(head, framing, length, ex, reader) and keep
            return self._answer(ex, writer, 503, error_page(503), keep)
        balancer = runtime.balancer(self.vip, group)
        endpoint = balancer.pick(candidates)
        target = runtime.target(group, endpoint)
        ex.target = endpoint
        ex.tried = (endpoint,)
        runtime.requests[(group, endpoint)] += 1
        balancer.started(endpoint)
        try:
            keep = await self._to_target(runtime, group, target, head, framing, length, ex,
                                         reader, writer, keep)
        finally:
            balancer.finished(endpoint)
        if ex.elb_code in (502, 504):
            runtime.failures[(group, endpoint)] += 1
        return keep

    async def _to_target(self, runtime, group, target, head, framing, length, ex,
                         reader, writer, keep) -> bool:
        head_bytes, ex.trace = forward_head(head, ex.client.rsplit(":", 1)[0], self.scheme,
                                            self.port, new_trace_id())
        if framing != NO_BODY and "100-continue" in head.tokens("expect"):
            writer.write(CONTINUE)              # the ALB answers Expect itself
        small = await read_small(framing, length, reader)
        payload = head_bytes + (small or b"")
        ex.received += len(small or b"")
        tls = runtime.group(group).protocol == HTTPS
        attempts = 2 if head.method in IDEMPOTENT and (framing == NO_BODY or small is not None) \
            else 1
        streamed = framing != NO_BODY and small is None     # the body follows, unread
        for attempt in range(attempts):
            try:
                conn = await self.pool.acquire(target.address, target.port,
                                               runtime.source(self.vip), tls, fresh=attempt > 0)
            except asyncio.TimeoutError:
                return self._answer(ex, writer, 504, error_page(504), keep and not streamed)
            except OSError as err:
                log.info("%s: target %s: %s", runtime.alb.name, target.endpoint, err)
                return self._answer(ex, writer, 502, error_page(502), keep and not streamed)
            ex.dispatched = time.time()
            conn.writer.write(payload)
            if streamed:
                try:
                    ex.received += await relay(framing, length, reader, conn.writer)
                except asyncio.IncompleteReadError:
                    self.pool.discard(conn)     # the client broke off its own body
                    ex.elb_code = CLIENT_CLOSED
                    return False
                except HttpParseError:
                    self.pool.discard(conn)
                    return self._answer(ex, writer, 400, error_page(400), keep=False)
                except (ConnectionError, OSError):
                    self.pool.discard(conn)     # the target went away mid-body
                    return self._answer(ex, writer, 502, error_page(502), keep=False)
            try:
                await conn.writer.drain()
                raw = await self._read_head(conn, runtime.alb.idle_timeout)
                resp = parse_response(raw)
                while 100 <= resp.status < 200 and resp.status != 101:
                    writer.write(raw)           # 100 Continue and the like, passed on
                    raw = await self._read_head(conn, runtime.alb.idle_timeout)
                    resp = parse_response(raw)
                resp_framing, resp_length = body_framing(resp, head.method)
            except _TargetTimeout:
                self.pool.discard(conn)
                return self._answer(ex, writer, 504, error_page(504), keep)
            except (asyncio.IncompleteReadError, ConnectionError, OSError,
                    asyncio.LimitOverrunError, HttpParseError) as err:
                self.pool.discard(conn)
                stale = conn.reused and isinstance(err, (asyncio.IncompleteReadError,
                                                         ConnectionError)) \
                    and not getattr(err, "partial", b"")
                if stale and attempt + 1 < attempts:
                    continue
                log.info("%s: target %s failed: %s", runtime.alb.name, target.endpoint,
                         type(err).__name__)
                return self._answer(ex, writer, 502, error_page(502), keep)
            return await self._respond(conn, resp, resp_framing, resp_length, ex, reader,
                                       writer, keep)
        return False                                    # pragma: no cover - loop returns

    async def _respond(self, conn: Conn, resp: Head, framing: str, length: int,
                       ex: _Exchange, reader, writer, keep: bool) -> bool:
        """Pass the target's response on; put its connection back when reusable."""
        ex.answered = time.time()
        ex.elb_code = ex.target_code = resp.status
        keep = keep and framing != UNTIL_CLOSE and resp.status != 101
        reusable = wants_keep_alive(resp) and framing != UNTIL_CLOSE and resp.status != 101
        out = client_response_head(resp, keep, ex.head.version if ex.head else "HTTP/1.1")
        try:
            if framing == LENGTH and length <= CHUNK:
                body = await conn.reader.readexactly(length)
                writer.write(out + body)
                ex.sent += len(out) + length
            else:
                writer.write(out)
                ex.sent += len(out)
                if resp.status == 101:
                    await tunnel(reader, writer, conn.reader, conn.writer)
                    return False
                ex.sent += await relay(framing, length, conn.reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, HttpParseError):
            self.pool.discard(conn)
            return False
        if reusable:
            self.pool.release(conn)
        else:
            self.pool.discard(conn)
        return keep

    @staticmethod
    async def _read_head(conn: Conn, timeout: float) -> bytes:
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            conn.writer.transport.abort()

        timer = conn.loop.call_later(timeout, expire)
        try:
            return await conn.reader.readuntil(END)
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            if expired:
                raise _TargetTimeout() from err
            raise
        finally:
            timer.cancel()

    # --- the access log ---------------------------------------------------------------

    def _log(self, runtime: AlbRuntime, ex: _Exchange, tls, conn_id: str) -> None:
        if ex.elb_code is not None:
            runtime.codes[ex.elb_code] += 1
        now = time.time()
        head = ex.head
        request = (request_field(head.method, self.scheme, head.host, self.port,
                                 head.start[1], head.version) if head else "- - - ")
        dispatched = ex.dispatched >= 0
        answered = ex.answered >= 0
        cipher = tls.cipher() if tls else None
        self.access_log.add(LogEntry(
            type=self.scheme, time=now, elb=runtime.elb, client=ex.client, target=ex.target,
            request_processing_time=ex.dispatched - ex.created if dispatched else
            (0.0 if ex.target is None and ex.elb_code is not None else -1),
            target_processing_time=ex.answered - ex.dispatched if answered else -1,
            response_processing_time=now - ex.answered if answered else -1,
            elb_status_code=ex.elb_code, target_status_code=ex.target_code,
            received_bytes=ex.received, sent_bytes=ex.sent, request=request,
            user_agent=(head.get("user-agent") if head else None) or "-",
            ssl_cipher=cipher[0] if cipher else "-",
            ssl_protocol=tls.version() if tls else "-",
            target_group_arn=runtime.arns.get(ex.group, "-"), trace_id=ex.trace,
            domain_name=getattr(tls, "alb_sni", None) or "-" if tls else "-",
            chosen_cert_arn=getattr(tls, "alb_cert", "-") if tls else "-",
            matched_rule_priority=ex.match.priority if ex.match else None,
            request_creation_time=ex.created, actions_executed=ex.action,
            redirect_url=ex.redirect, targets_tried=ex.tried,
            target_codes=(str(ex.target_code),) if ex.target_code else (),
            conn_trace_id=conn_id))

