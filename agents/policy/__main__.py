"""`python -m agents.policy`: the node policy agent, run inside a node.

Like the proxy agent it refuses to run anywhere but the network namespace it
was started for (--netns-inode): its rules are for a lab node, never for the
machine running the lab.  Rules stay in place when it stops (as with felix):
a restarted agent takes over from them.
"""
from __future__ import annotations

import argparse
import sys

from agents.node_agent import add_agent_arguments, bind_address, prepare, run_until_signalled
from agents.policy.agent import PolicyAgent, PolicyAgentConfig
from agents.policy.backend import backend_for
from base.kube.client import KubeClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.policy", description=__doc__)
    add_agent_arguments(parser, min_sync_period=0.05, healthz="0.0.0.0:9099",
                        metrics="0.0.0.0:9091")
    parser.add_argument("--mode", choices=("iptables", "nftables"), default="iptables",
                        help="where the rules go (the lab uses its proxy mode)")
    args = parser.parse_args(argv)
    if not prepare(args, "policy"):
        return 2
    config = PolicyAgentConfig(node=args.node, min_sync_period=args.min_sync_period,
                               sync_period=args.sync_period,
                               healthz=bind_address(args.healthz_bind_address),
                               metrics=bind_address(args.metrics_bind_address))
    run_until_signalled(PolicyAgent(KubeClient.from_kubeconfig(args.kubeconfig), config,
                                    backend_for(args.mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
