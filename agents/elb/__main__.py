"""`python -m agents.elb`: the AWS-style load balancer, run inside the `elb` host.

It refuses to run anywhere but the network namespace it was started for
(--netns-inode): it adds addresses and netfilter rules, which belong to the
lab's ELB host and never to the machine running the lab.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from agents.elb.agent import ElbAgent
from agents.elb.system import InternalVips, Netfilter, VipAddresses


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.elb", description=__doc__)
    parser.add_argument("--config", required=True, type=Path,
                        help="JSON config the cloud controller writes")
    parser.add_argument("--status", required=True, type=Path,
                        help="JSON status file this agent writes")
    parser.add_argument("--vpc-ip", required=True,
                        help="the ELB's VPC address: source of checks and proxied connections")
    parser.add_argument("--vip-interface", default="eth1",
                        help="interface on the internet segment that carries the VIPs")
    parser.add_argument("--alb-config", type=Path, default=None,
                        help="JSON config of the ALBs (default: alb.json next to --config)")
    parser.add_argument("--access-log", type=Path, default=None,
                        help="the ALBs' access log (default: alb-access.log next to --config)")
    parser.add_argument("--netns-inode", type=int, required=True,
                        help="inode of the elb host's network namespace (safety check)")
    return parser


async def serve(agent: ElbAgent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s elb %(levelname)s %(message)s")
    if os.stat("/proc/self/ns/net").st_ino != args.netns_inode:
        print(f"error: not in the network namespace {args.netns_inode} given by "
              "--netns-inode; the ELB agent programs only the lab's elb host",
              file=sys.stderr)
        return 2
    here = args.config.parent
    agent = ElbAgent(args.config, args.status, args.vpc_ip, netfilter=Netfilter(),
                     vips=VipAddresses(args.vip_interface),
                     alb_config_path=args.alb_config or here / "alb.json",
                     access_log=args.access_log or here / "alb-access.log",
                     internal_vips=InternalVips(args.vip_interface))
    # VIPs and rules stay when the agent stops (a restarted agent takes over
    # from them, like kube-proxy); the lab removes the whole host on `down`.
    asyncio.run(serve(agent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
