"""`python -m agents.dns.cluster`: cluster DNS fed by the API, as CoreDNS's
kubernetes plugin is, and configured by a Corefile, as CoreDNS is.

    python -m agents.dns.cluster -conf /etc/coredns/Corefile --upstream 172.31.0.2:53

The Corefile (kubeadm's, from the kube-system/coredns ConfigMap; without
-conf kubeadm's default for --domain) is read as CoreDNS reads it
(agents/dns/corefile.py, coreconfig.py); one CoreDNS refuses is refused
here too, on stderr with exit code 1, so the pod crash-loops as a real
CoreDNS pod does.  Informers list and watch Services and EndpointSlices
(and Pods for `pods verified`); every change marks the zone dirty and a
rebuild thread swaps in a new frozen zone (at most every REBUILD_SECONDS,
so a burst of changes costs one rebuild).  `forward . /etc/resolv.conf`
asks the node's resolver (--upstream: what a dnsPolicy Default pod's
resolv.conf names).  The rest is agents/dns/coredns.py: listeners, health
(:8080/health), readiness (:8181/ready, after the first zone), metrics
(:9153), the log plugin's lines on stdout, reloads every `reload` interval
scaled by --time-factor, and the lameduck after SIGTERM (kubeadm's
`health { lameduck 5s }`), so queries the proxies still send here while
the endpoint is being removed are answered instead of refused.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from agents.dns.__main__ import host_port
from agents.dns.chain import Output
from agents.dns.coreconfig import CoreConfig, build_config, kubeadm_corefile
from agents.dns.coredns import CoreDns, Reloader, kubernetes_zone_options
from agents.dns.corefile import CorefileError, parse_corefile
from agents.dns.errors import ZoneError
from agents.dns.holder import ZoneHolder
from agents.dns.zone import DEFAULT_DOMAIN, DEFAULT_SERVICE_CIDR
from base.kube.client import KubeClient, credentials_from_kubeconfig, credentials_in_cluster
from base.kube.informer import Informer
from base.signals import Signals

log = logging.getLogger("svclab.dns")
REBUILD_SECONDS = 0.05
SYNC_TIMEOUT = 30.0


class ClusterZone:
    """Keeps a ZoneHolder in step with the API; a context manager."""

    def __init__(self, client: KubeClient, holder: ZoneHolder, *, pods: bool = False):
        """pods: watch Pods too (the kubernetes plugin's `pods verified`)."""
        self.holder = holder
        self.ready = threading.Event()
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        resources = ("services", "endpointslices", "pods") if pods else \
            ("services", "endpointslices")
        self.informers = [Informer(client, r, self._changed) for r in resources]
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

    def watch_pods(self) -> None:
        """Watch Pods too from now on (a reload switched to `pods verified`)."""
        if any(i.resource == "pods" for i in self.informers):
            return
        informer = Informer(self.informers[0].client, "pods", self._changed)
        informer.start()
        if not informer.wait_synced(SYNC_TIMEOUT):
            informer.stop()
            raise TimeoutError(f"no list of pods in {SYNC_TIMEOUT} s")
        self.informers.append(informer)
        self._dirty.set()

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
        lists = dict(zip(("services", "slices", "pods"), (i.items() for i in self.informers)))
        try:
            zone = self.holder.update(**lists)
        except ZoneError as err:      # a bad object: keep serving the last good zone
            log.warning("plugin/kubernetes: zone not rebuilt: %s", err)
            return
        log.debug("zone serial %d: %d names", zone.serial, len(zone.records))


def load_config(text: str, filename: str, node_resolver: tuple[str, int] | None
                ) -> CoreConfig:
    """A Corefile's configuration (CorefileError with CoreDNS's message)."""
    return build_config(parse_corefile(text, filename), node_resolver=node_resolver,
                        read_file=lambda path: Path(path).read_text(encoding="utf-8"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.dns.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-conf", dest="conf", metavar="PATH",
                        help="Corefile to load (default: kubeadm's for --domain)")
    parser.add_argument("--kubeconfig", help="default: the pod's service account")
    parser.add_argument("--bind", default="0.0.0.0", help="address every listener binds")
    parser.add_argument("--upstream", type=host_port,
                        help="the node's resolver: what /etc/resolv.conf names in `forward`")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    parser.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    parser.add_argument("--time-factor", type=float, default=1.0, metavar="F",
                        help="the lab's clock: reload intervals are multiplied by F")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="[%(levelname)s] %(message)s")
    filename = args.conf or "Corefile"
    try:
        text = Path(args.conf).read_text(encoding="utf-8") if args.conf else \
            kubeadm_corefile(args.domain)
        config = load_config(text, filename, args.upstream)
    except OSError as err:
        print(f"open {filename}: {(err.strerror or str(err)).lower()}", file=sys.stderr)
        return 1
    except CorefileError as err:
        print(err, file=sys.stderr)
        return 1
    credentials = (credentials_from_kubeconfig(args.kubeconfig) if args.kubeconfig
                   else credentials_in_cluster())
    holder = ZoneHolder(args.domain, service_cidr=args.service_cidr)
    stop = Signals(signal.SIGTERM, signal.SIGINT)
    output, ready = Output(), threading.Event()
    with ClusterZone(KubeClient(credentials), holder, pods=_verified(config)) as cluster:
        def zone_options(new: CoreConfig) -> dict:
            if _verified(new):
                cluster.watch_pods()
            return kubernetes_zone_options(new)
        with CoreDns(config, holder, ready=ready, output=output, bind_ip=args.bind,
                     zone_options=zone_options) as dns:
            _serve(args, dns, filename, output, ready, stop)
    return 0


def _verified(config: CoreConfig) -> bool:
    return config.kubernetes is not None and config.kubernetes.pods == "verified"


def _serve(args, dns: CoreDns, filename: str, output: Output, ready: threading.Event,
           stop: Signals) -> None:
    ready.set()
    reloader = None
    if args.conf and dns.config.reload is not None:
        reloader = Reloader(dns, lambda: Path(args.conf).read_text(encoding="utf-8"),
                            lambda text: load_config(text, filename, args.upstream),
                            lambda text: parse_corefile(text, filename, check=False).sha512,
                            time_factor=args.time_factor).start()
    while not stop.wait(0.2):
        pass
    if reloader is not None:
        reloader.stop()
    output.write("[INFO] SIGTERM: Shutting down servers then terminating")
    dns.lameduck()


if __name__ == "__main__":
    sys.exit(main())
