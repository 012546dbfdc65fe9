"""`python -m agents.policy`: the node policy agent, run inside a node.

Like the proxy agent it refuses to run anywhere but the network namespace it
was started for (--netns-inode): its rules are for a lab node, never for the
machine running the lab.  Rules stay in place when it stops (as with felix):
a restarted agent takes over from them.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from agents.policy.agent import PolicyAgent, PolicyAgentConfig
from agents.policy.backend import backend_for
from base.kube.client import KubeClient


def _address(text: str) -> tuple[str, int] | None:
    if text in ("", "0", "off"):
        return None
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.policy", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True, help="this node's name")
    parser.add_argument("--mode", choices=("iptables", "nftables"), default="iptables",
                        help="where the rules go (the lab uses its proxy mode)")
    parser.add_argument("--min-sync-period", type=float, default=0.05)
    parser.add_argument("--sync-period", type=float, default=30.0)
    parser.add_argument("--healthz-bind-address", default="0.0.0.0:9099")
    parser.add_argument("--metrics-bind-address", default="0.0.0.0:9091")
    parser.add_argument("--netns-inode", type=int, required=True,
                        help="inode of the node's network namespace (a safety check: "
                             "the agent runs only there)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s policy[{args.node}] %(levelname)s %(message)s")
    if os.stat("/proc/self/ns/net").st_ino != args.netns_inode:
        print(f"error: not in the network namespace {args.netns_inode} given by "
              "--netns-inode; the agent programs only the lab node it was started for",
              file=sys.stderr)
        return 2
    config = PolicyAgentConfig(node=args.node, min_sync_period=args.min_sync_period,
                               sync_period=args.sync_period,
                               healthz=_address(args.healthz_bind_address),
                               metrics=_address(args.metrics_bind_address))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with PolicyAgent(KubeClient.from_kubeconfig(args.kubeconfig), config,
                     backend_for(args.mode)):
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
