"""Lab-side glue for the emulated AWS load balancer: start the ELB agent in the
`elb` host, and what the nodes need for NLB return traffic.

The daemon calls `start_elb` once the lab is up and enters a CloudController
(svclab/cloud/controller.py) after the API server; `cloud_controller_for`
builds one with the lab's paths, pool and time factor.

NLB return path.  An NLB with instance targets keeps the client's address,
so a node answers `client -> VIP` flows to the client itself; through the
igw that reply would leave SNATed to the node's public IP and the client
would drop it.  So every node marks connections that arrive from the ELB's
VPC MAC (CONNMARK, bit ELB_MARK) and routes replies of those connections
through table ELB_TABLE, whose default route is the ELB.  The ELB's conntrack
then turns the reply back into VIP -> client.  The ELB's eth0 gets a fixed,
locally administered MAC (`elb_vpc_mac`) so the rules can name it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from topo.netns import run_in
from topo.spec import ClusterSpec

ELB_HOST = "elb"
ELB_MARK = 0x1000000
ELB_TABLE = 105
RETURN_CHAIN = "ELB-RETURN"


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


def elb_vpc_mac(spec: ClusterSpec) -> str:
    """0a (locally administered, unicast, AWS-ENI-like) + e1 + the VPC address."""
    octets = spec.network.elb_vpc_address.packed
    return "0a:e1:" + ":".join(f"{b:02x}" for b in octets)


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
    from svclab.cloud.controller import CloudController
    from svclab.kube.client import KubeClient
    from topo.plan import outside_dns_records     # here: topo.plan may import this module
    client = client or KubeClient.from_kubeconfig(str(lab.paths.kubeconfig))
    return CloudController(client, handle.config_path, lab.paths.outside_dns,
                           outside_dns_records(spec), list(handle.vip_pool),
                           handle.time_factor)


def node_return_path_rules(spec: ClusterSpec) -> str:
    """iptables-restore --noflush text for every node (mangle, chain ELB-RETURN)."""
    mark = f"0x{ELB_MARK:x}/0x{ELB_MARK:x}"
    return "\n".join((
        "*mangle",
        f":{RETURN_CHAIN} - [0:0]",
        f"-A PREROUTING -j {RETURN_CHAIN}",
        f"-A {RETURN_CHAIN} -i eth0 -m mac --mac-source {elb_vpc_mac(spec)} "
        f'-m conntrack --ctstate NEW -m comment --comment "flow from the ELB" '
        f"-j CONNMARK --set-xmark {mark}",
        f"-A {RETURN_CHAIN} -m conntrack --ctdir REPLY -m connmark --mark {mark} "
        f'-m comment --comment "reply to an ELB flow: route via the ELB" '
        f"-j MARK --set-xmark {mark}",
        "COMMIT", ""))


def node_return_path_routes(spec: ClusterSpec) -> list[str]:
    """`ip -batch` lines for every node: marked replies use the ELB as gateway."""
    return [f"rule add fwmark 0x{ELB_MARK:x}/0x{ELB_MARK:x} table {ELB_TABLE} "
            f"priority {ELB_TABLE}",
            f"route add default via {spec.network.elb_vpc_address} dev eth0 "
            f"table {ELB_TABLE}"]
