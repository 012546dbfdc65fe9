"""What the in-node agents share (the proxy agent, as kube-proxy, and the
policy agent, as Calico's felix): their life cycle (health and metrics
served, informers listed, then the sync runner; stopped in reverse), the
arguments both take, the safety check that an agent runs only in the
network namespace of the node it was started for (its rules are for a lab
node, never for the machine running the lab), logging to stderr, and
running until SIGTERM.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from contextlib import AbstractContextManager

from base.signals import Signals

SYNC_WAIT = 30.0     # seconds for each informer's first list


class NodeAgent:
    """A context manager over what a subclass's __init__ sets: `config`
    (healthz, metrics addresses), `faces` (HTTP health and metrics),
    `informers` (by resource) and `runner` (the bounded-frequency sync loop).
    The first sync waits until every informer has its first list; a failed
    start stops what it started."""

    def __enter__(self):
        self.faces.start(self.config.healthz, self.config.metrics)
        try:
            for informer in self.informers.values():
                informer.start()
            for resource, informer in self.informers.items():
                if not informer.wait_synced(SYNC_WAIT):
                    raise TimeoutError(f"no initial list of {resource} in {SYNC_WAIT} s")
            self.runner.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.runner.stop()
        for informer in self.informers.values():
            informer.stop()
        self.faces.stop()


def bind_address(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` (`:PORT` = all addresses); "", "0" or "off" = not served."""
    if text in ("", "0", "off"):
        return None
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


def add_agent_arguments(parser: argparse.ArgumentParser, *, min_sync_period: float,
                        healthz: str, metrics: str) -> None:
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True, help="this node's name")
    parser.add_argument("--min-sync-period", type=float, default=min_sync_period)
    parser.add_argument("--sync-period", type=float, default=30.0)
    parser.add_argument("--healthz-bind-address", default=healthz)
    parser.add_argument("--metrics-bind-address", default=metrics)
    parser.add_argument("--netns-inode", type=int, required=True,
                        help="inode of the node's network namespace (a safety check: "
                             "the agent runs only there)")


def prepare(args: argparse.Namespace, kind: str) -> bool:
    """Log as `kind[node]`; False (with the reason on stderr) when this process
    is not in the network namespace --netns-inode names."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {kind}[{args.node}] %(levelname)s %(message)s")
    if os.stat("/proc/self/ns/net").st_ino != args.netns_inode:
        print(f"error: not in the network namespace {args.netns_inode} given by "
              "--netns-inode; the agent programs only the lab node it was started for",
              file=sys.stderr)
        return False
    return True


def run_until_signalled(agent: AbstractContextManager) -> None:
    """Run the agent (a context manager) until SIGTERM or SIGINT.  Its rules
    stay in place when it stops, as kube-proxy's and felix's do: traffic keeps
    flowing, and a restarted agent takes over from them."""
    stop = Signals(signal.SIGTERM, signal.SIGINT)
    with agent:
        while not stop.wait(0.2):
            pass
