"""`python -m agents.dns.cluster`: cluster DNS fed by the API, as CoreDNS's
kubernetes plugin is.

Informers list and watch Services and EndpointSlices; every change marks the
zone dirty and a rebuild thread swaps in a new frozen zone (at most every
REBUILD_SECONDS, so a burst of changes costs one rebuild).  Names outside the
cluster domain go to the upstream resolver (the VPC's AmazonProvidedDNS).
Health on :8080/health, readiness on :8181/ready (after the first zone), as
CoreDNS serves them; Prometheus metrics on :9153.  On SIGTERM it goes unready
but keeps answering for --lameduck seconds (kubeadm's Corefile: `health {
lameduck 5s }`), so queries the proxies still send here while the endpoint is
being removed are answered instead of refused.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agents.dns.__main__ import host_port
from agents.dns.errors import ZoneError
from agents.dns.holder import ZoneHolder
from agents.dns.server import DnsServer
from agents.dns.zone import DEFAULT_DOMAIN, DEFAULT_SERVICE_CIDR
from base.kube.client import KubeClient, credentials_from_kubeconfig, credentials_in_cluster
from base.kube.informer import Informer

log = logging.getLogger("svclab.dns")
REBUILD_SECONDS = 0.05
SYNC_TIMEOUT = 30.0
LAMEDUCK_SECONDS = 5.0


class ClusterZone:
    """Keeps a ZoneHolder in step with the API; a context manager."""

    def __init__(self, client: KubeClient, holder: ZoneHolder):
        self.holder = holder
        self.ready = threading.Event()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self.informers = [Informer(client, r, self._changed)
                          for r in ("services", "endpointslices")]
        self._thread = threading.Thread(target=self._rebuild_loop, name="zone", daemon=True)

    def __enter__(self) -> ClusterZone:
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            if not informer.wait_synced(SYNC_TIMEOUT):
                raise TimeoutError(f"no list of {informer.resource} in {SYNC_TIMEOUT} s")
        self._rebuild()
        self.ready.set()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join(5)
        for informer in self.informers:
            informer.stop()

    def _changed(self, kind: str, obj: dict, old: dict | None) -> None:
        self._dirty.set()

    def _rebuild_loop(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._stopping.wait(REBUILD_SECONDS)     # batch a burst of changes
            self._dirty.clear()
            self._rebuild()

    def _rebuild(self) -> None:
        services, slices = (i.items() for i in self.informers)
        try:
            zone = self.holder.update(services=services, slices=slices)
        except ZoneError as err:      # a bad object: keep serving the last good zone
            log.warning("zone not rebuilt: %s", err)
            return
        log.info("zone serial %d: %d names", zone.serial, len(zone.records))


def serve_health(address: tuple[str, int], ready: threading.Event) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/health" or (self.path == "/ready" and ready.is_set())
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


def lame_duck(ready: threading.Event, seconds: float) -> None:
    """Unready but still serving for `seconds`, as CoreDNS's health lameduck."""
    ready.clear()
    log.info("lameduck: answering for %.1f s more", seconds)
    time.sleep(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.dns.cluster", description=__doc__)
    parser.add_argument("--kubeconfig", help="default: the pod's service account")
    parser.add_argument("--listen", type=host_port, default=("0.0.0.0", 53))
    parser.add_argument("--metrics", type=host_port, default=("0.0.0.0", 9153))
    parser.add_argument("--upstream", type=host_port, help="resolver for other names")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    parser.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    parser.add_argument("--health-port", type=int, default=8080)
    parser.add_argument("--ready-port", type=int, default=8181)
    parser.add_argument("--lameduck", type=float, default=LAMEDUCK_SECONDS, metavar="SECONDS",
                        help="keep answering this long after SIGTERM (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s dns %(levelname)s %(message)s")
    credentials = (credentials_from_kubeconfig(args.kubeconfig) if args.kubeconfig
                   else credentials_in_cluster())
    holder = ZoneHolder(args.domain, service_cidr=args.service_cidr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = threading.Event()
    health = serve_health((args.listen[0], args.health_port), ready)
    ready_server = serve_health((args.listen[0], args.ready_port), ready)
    try:
        with ClusterZone(KubeClient(credentials), holder), \
                DnsServer(args.listen[0], args.listen[1], holder, upstream=args.upstream,
                          metrics_address=args.metrics):
            ready.set()
            print(json.dumps({"event": "listening", "address": "%s:%d" % args.listen}),
                  flush=True)
            while not stop.wait(0.2):
                pass
            lame_duck(ready, args.lameduck)
    finally:
        for server in (health, ready_server):
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
