"""The ELB in a running lab: start its agent in the `elb` host, build its cloud
controller, and read the status the agent keeps (`svclab lb status`).

The daemon calls `start_elb` once the lab is up and enters a CloudController
(controlplane/cloud/controller.py) after the API server; `cloud_controller_for`
builds one with the lab's paths, pool and time factor.  The nodes' side of
the NLB return path is topo/elb.py.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from base.kube.client import KubeClient
from controlplane.cloud.controller import CloudController
from topo.elb import ELB_HOST, elb_vpc_mac
from topo.netns import run_in
from topo.plan import outside_dns_records
from topo.spec import ClusterSpec


@dataclass(frozen=True)
class ElbHandle:
    """Where the ELB agent's files are, and what the cloud controller needs."""

    config_path: Path
    status_path: Path
    vpc_ip: str
    vip_pool: tuple[str, ...]
    time_factor: float
    program_key: str = "elb"


def elb_dir(lab_root: Path) -> Path:
    return lab_root / "elb"


def vip_pool(spec: ClusterSpec) -> tuple[str, ...]:
    """The VIPs LBs get: the spec's elb_vips minus the first (the host's own)."""
    return tuple(str(a) for a in spec.network.elb_vips[1:])


def elb_agent_argv(spec: ClusterSpec, handle: ElbHandle, netns: int) -> list[str]:
    return [sys.executable, "-m", "agents.elb", "--config", str(handle.config_path),
            "--status", str(handle.status_path), "--vpc-ip", handle.vpc_ip,
            "--vip-interface", "eth1", "--netns-inode", str(netns)]


def start_elb(spec: ClusterSpec, lab, supervisor, api=None) -> ElbHandle:
    """Fix the ELB's VPC MAC, then start the agent in the elb host (supervised)."""
    record = lab.state.hosts[ELB_HOST]
    directory = elb_dir(lab.paths.root)
    directory.mkdir(parents=True, exist_ok=True)
    handle = ElbHandle(config_path=directory / "config.json",
                       status_path=directory / "status.json",
                       vpc_ip=str(spec.network.elb_vpc_address), vip_pool=vip_pool(spec),
                       time_factor=float(getattr(spec, "time_factor", 0.1)))
    run_in(record.pid, ["ip", "link", "set", "dev", "eth0", "address", elb_vpc_mac(spec)],
           where=ELB_HOST)
    supervisor.add(handle.program_key, ELB_HOST,
                   elb_agent_argv(spec, handle, record.netns))
    return handle


def cloud_controller_for(spec: ClusterSpec, lab, handle: ElbHandle, client=None):
    """A CloudController for this lab (admin credentials unless a client is given)."""
    client = client or KubeClient.from_kubeconfig(str(lab.paths.kubeconfig))
    return CloudController(client, handle.config_path, lab.paths.outside_dns,
                           outside_dns_records(spec), list(handle.vip_pool),
                           handle.time_factor)
