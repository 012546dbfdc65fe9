"""`python -m agents.proxy`: the node proxy agent, run inside a node.

It refuses to run anywhere but the network namespace it was started for
(--netns-inode): its rules are for a lab node, never for the machine running
the lab.  It names itself `kube-proxy` (its command line and comm), so that
`ps auxw | grep kube-proxy` on a node finds it, and answers kube-proxy's
`/proxyMode` on its metrics port.
"""
from __future__ import annotations

import argparse
import sys

from agents.node_agent import add_agent_arguments, bind_address, prepare, run_until_signalled
from agents.proctitle import set_process_title
from agents.proxy.agent import AgentConfig, ProxyAgent
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.nft_backend import NftablesBackend
from base.kube.client import KubeClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.proxy", description=__doc__)
    add_agent_arguments(parser, min_sync_period=0.1, healthz="0.0.0.0:10256",
                        metrics="0.0.0.0:10249")
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"),
                        default="iptables")
    parser.add_argument("--cluster-cidr", default="192.168.0.0/16")
    parser.add_argument("--service-cidr", default="10.96.0.0/12")
    args = parser.parse_args(argv)
    if not prepare(args, "proxy"):
        return 2
    set_process_title(["kube-proxy", *(sys.argv[1:] if argv is None else argv)])
    config = AgentConfig(node=args.node, cluster_cidr=args.cluster_cidr,
                         service_cidr=args.service_cidr,
                         min_sync_period=args.min_sync_period, sync_period=args.sync_period,
                         healthz=bind_address(args.healthz_bind_address),
                         metrics=bind_address(args.metrics_bind_address))
    backend = (NftablesBackend() if args.proxy_mode == "nftables"
               else IptablesBackend())
    agent = ProxyAgent(KubeClient.from_kubeconfig(args.kubeconfig), config, backend=backend)
    agent.faces.proxy_mode = args.proxy_mode
    run_until_signalled(agent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
