"""The running cluster DNS, configured by a Corefile: listeners, reload, health.

CoreDns turns a CoreConfig (agents/dns/coreconfig.py) into running parts: a
DnsServer per port whose queries go through that port's Chain, the metrics
(prometheus) on the first port's server, health on :8080 and readiness on
:8181 when the Corefile has them, and the kubernetes plugin's options on the
ZoneHolder.  It prints what CoreDNS prints: the zones it serves (`.:53`),
the configuration's SHA-512 when `reload` is on, the version.

`apply` takes a new configuration: when it listens on the same addresses
the new chains and zone options are swapped in while the sockets keep
answering (no query dropped); otherwise the listeners are closed and opened
again.  The reload thread checks the Corefile every `reload` interval
(CoreDNS's 30 s +- 15 s jitter by default; the lab's clocks run `time_factor`
times faster, so 3 s +- 0.75 s at the default 0.1) and, when its SHA-512
changed, reloads with CoreDNS's log lines; a Corefile CoreDNS would refuse
is logged and the running configuration kept.
"""
from __future__ import annotations

import platform
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agents.dns.chain import Chain, Output
from agents.dns.coreconfig import CoreConfig
from agents.dns.corefile import CorefileError
from agents.dns.errors import DnsAgentError, DnsServerError
from agents.dns.server import DnsServer

COREDNS_VERSION = "1.12.0"          # the image labd/addons.py installs
STOP_TIMEOUT = 5.0


def serve_health(address: tuple[str, int], ready: threading.Event | None) -> ThreadingHTTPServer:
    """/health (always OK) or /ready (OK once `ready` is set) on `address`."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = (self.path == "/health" and ready is None) or \
                 (self.path == "/ready" and ready is not None and ready.is_set())
            body = b"OK" if ok else b"not ready"
            try:
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass        # the prober gave up (its timeout) before we wrote

        def log_message(self, *args) -> None:
            pass
    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server


class _PortChain:
    """What a DnsServer reads its current chain from (one reference, swapped whole)."""

    def __init__(self, chain: Chain):
        self.chain = chain


class CoreDns:
    """`with CoreDns(config, holder, ...) as dns:`; `dns.apply(new_config)` to reconfigure."""

    def __init__(self, config: CoreConfig, holder, *, ready: threading.Event | None = None,
                 output: Output | None = None, bind_ip: str = "0.0.0.0",
                 ephemeral: bool = False, upstream_timeout: float = 2.0,
                 zone_options: Callable[[CoreConfig], dict] | None = None):
        """ephemeral: every listener on a free port instead of the Corefile's (tests;
        see .servers, .health_address, .ready_address); zone_options(config): the
        ZoneHolder's options for a configuration (default: the kubernetes plugin's)."""
        self.config = config
        self.holder = holder
        self.ready = ready or threading.Event()
        self.output = output or Output()
        self.bind_ip, self.ephemeral = bind_ip, ephemeral
        self.health_address: tuple[str, int] | None = None
        self.ready_address: tuple[str, int] | None = None
        self.upstream_timeout = upstream_timeout
        self.zone_options = zone_options or kubernetes_zone_options
        self.servers: dict[int, DnsServer] = {}
        self._chains: dict[int, _PortChain] = {}
        self._http: list[ThreadingHTTPServer] = []
        self._lock = threading.Lock()

    def __enter__(self) -> CoreDns:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._configure_zone(self.config)
        try:
            self._listen(self.config)
        except BaseException:
            self.stop()
            raise
        for port in self.config.ports:
            zones = sorted(s for srv in self.config.servers if srv.port == port
                           for s in srv.zones)
            for zone in zones:
                self.output.write(f"{zone}:{port}")
        if self.config.reload is not None:
            self.output.write(f"[INFO] plugin/reload: Running configuration SHA512 = "
                              f"{self.config.sha512}")
        self.output.write(f"CoreDNS-{COREDNS_VERSION}")
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                           platform.machine())
        self.output.write(f"linux/{arch}, python{platform.python_version()}, svclab")

    def stop(self) -> None:
        for server in self._http:
            server.shutdown()
            server.server_close()
        self._http = []
        for server in self.servers.values():
            server.stop(STOP_TIMEOUT)
        self.servers = {}

    @property
    def address(self) -> tuple[str, int]:
        """The first port's DNS address (tests)."""
        return self.servers[min(self.servers)].address

    def port(self, corefile_port: int) -> int:
        return self.servers[corefile_port].port

    def apply(self, config: CoreConfig) -> None:
        """Run `config` from now on: a hot swap when the listeners stay the same."""
        with self._lock:
            same = config.listeners() == self.config.listeners()
            self._configure_zone(config)
            if same:
                for port, holder in self._chains.items():
                    holder.chain = self._chain(config, port)
            else:
                self.stop()
                try:
                    self._listen(config)
                except DnsAgentError as err:     # e.g. a port in use: back to what ran
                    self.stop()
                    self._configure_zone(self.config)
                    self._listen(self.config)
                    raise CorefileError(str(err)) from err
            self.config = config

    def lameduck(self) -> float:
        """After SIGTERM: unready, still answering, for health's lameduck."""
        seconds = self.config.health.lameduck if self.config.health else 0.0
        self.ready.clear()
        if seconds > 0:
            self.output.write(f"[INFO] plugin/health: Going into lameduck mode for "
                              f"{_go_duration(seconds)}")
            time.sleep(seconds)
        return seconds

    # --- internals ----------------------------------------------------------------------

    def _configure_zone(self, config: CoreConfig) -> None:
        options = self.zone_options(config)
        if options and options != {k: self.holder.options.get(k) for k in options}:
            self.holder.reconfigure(**options)

    def _chain(self, config: CoreConfig, port: int) -> Chain:
        return Chain(tuple(s for s in config.servers if s.port == port), self.holder,
                     output=self.output, local_ip=self.bind_ip,
                     upstream_timeout=self.upstream_timeout)

    def _listen(self, config: CoreConfig) -> None:
        self._chains = {port: _PortChain(self._chain(config, port)) for port in config.ports}
        for index, port in enumerate(config.ports):
            metrics = config.prometheus if index == 0 else None
            if metrics is not None and self.ephemeral:
                metrics = (self.bind_ip, 0)
            server = DnsServer(self.bind_ip, 0 if self.ephemeral else port, self.holder,
                               metrics_address=metrics, chain_source=self._chains[port],
                               upstream_timeout=self.upstream_timeout)
            server.start()
            self.servers[port] = server
        self.health_address = self.ready_address = None
        for address, ready in ((config.health and config.health.address, None),
                               (config.ready, self.ready)):
            if address is None:
                continue
            if self.ephemeral:
                address = (self.bind_ip, 0)
            try:
                http = serve_health(address, ready)
            except OSError as err:
                raise DnsServerError(f"cannot listen on {address[0]}:{address[1]}: {err}") \
                    from err
            self._http.append(http)
            bound = http.server_address[:2]
            if ready is None:
                self.health_address = bound
            else:
                self.ready_address = bound


def kubernetes_zone_options(config: CoreConfig) -> dict:
    """The ZoneHolder options the kubernetes plugin's settings mean."""
    kube = config.kubernetes
    if kube is None:
        return {}
    return dict(domain=kube.domain.rstrip(".") or ".", ttl=kube.ttl, pod_mode=kube.pods,
                reverse="in-addr.arpa." in kube.zones, fallthrough=kube.fallthrough)


def _go_duration(seconds: float) -> str:
    """5.0 -> "5s", 0.5 -> "500ms", as Go prints a time.Duration (enough for lameducks)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


class Reloader:
    """CoreDNS's reload plugin: watch the Corefile's SHA-512, reload when it changes."""

    def __init__(self, dns: CoreDns, read: Callable[[], str],
                 build: Callable[[str], CoreConfig], fingerprint: Callable[[str], str],
                 *, time_factor: float = 1.0, rng: random.Random | None = None):
        """read(): the Corefile's text (OSError when missing); build(text): its
        configuration (CorefileError); fingerprint(text): its SHA-512 (CorefileError
        when it does not even parse)."""
        self.dns, self.read, self.build, self.fingerprint = dns, read, build, fingerprint
        self.time_factor = time_factor
        self.rng = rng or random.Random()
        self.sha512 = dns.config.sha512
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="reload")

    def interval(self) -> float | None:
        """The next wait: interval +- jitter/2, scaled by the time factor; None: no reload."""
        reload = self.dns.config.reload
        if reload is None:
            return None
        jitter = self.rng.uniform(-reload.jitter / 2, reload.jitter / 2) if reload.jitter else 0
        return (reload.interval + jitter) * self.time_factor

    def start(self) -> Reloader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        wait = self.interval()
        while wait is not None and not self._stop.wait(wait):
            self.check()
            wait = self.interval()

    def check(self) -> bool:
        """One tick: True when a new configuration was applied."""
        output = self.dns.output
        try:
            text = self.read()
        except OSError:
            return False
        try:
            sha512 = self.fingerprint(text)
        except CorefileError as err:
            output.write(f"[WARNING] plugin/reload: Corefile parse failed: {err}")
            return False
        if sha512 == self.sha512:
            return False
        self.sha512 = sha512                    # a broken file is not retried until it changes
        output.write("[INFO] Reloading")
        try:
            config = self.build(text)
            self.dns.apply(config)
        except (CorefileError, OSError) as err:
            why = f"starting with listener file descriptors: {err}"
            output.write(f"[ERROR] Restart failed: {why}")
            output.write(f"[ERROR] plugin/reload: Corefile changed but reload failed: {why}")
            return False
        if config.reload is not None:
            output.write(f"[INFO] plugin/reload: Running configuration SHA512 = {sha512}")
        output.write("[INFO] Reloading complete")
        return True
