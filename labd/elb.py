"""The ELB in a running lab: start its agent in the `elb` host, build its cloud
controller, and read the status the agent keeps (`svclab lb status`).

The daemon calls `start_elb` once the lab is up and enters a CloudController
(controlplane/cloud/controller.py) after the API server; `cloud_controller_for`
builds one with the lab's paths, pool, time factor and (with zones) the
ELB's ENI in each zone.  The nodes' side of the NLB return path is topo/elb.py.

With zones, what a zone's load-balancer node sends from its ENI leaves
through that zone's subnet: a source rule per ENI sends it to the zone's
router when the target is in another zone (cross-zone traffic crosses the
VPC router, as it crosses AWS's zones), straight to the target when it is
in the zone.  NLB flows keep the client's address as source, so they take
the main table: straight to the target through the ENI in its subnet, which
is where the target's node sends the replies back (topo/elb.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from base.kube.client import KubeClient
from controlplane.cloud.alb_controller import AlbController
from controlplane.cloud.controller import ALB_CONFIG_FILE, CloudController
from topo.elb import ELB_HOST, elb_enis
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
    zone_enis: tuple[tuple[str, str], ...] = ()     # (zone, ENI address), spec order
    alb_config_path: Path | None = None      # base/alb_api.py's file: the ALB controller writes it
    access_log_path: Path | None = None      # the ALBs' access log


def elb_dir(lab_root: Path) -> Path:
    return lab_root / "elb"


def vip_pool(spec: ClusterSpec) -> tuple[str, ...]:
    """The VIPs LBs get: the spec's elb_vips minus the first (the host's own).
    A load balancer takes one per zone node (one in a lab without zones)."""
    return tuple(str(a) for a in spec.network.elb_vips[1:])


def zone_enis(spec: ClusterSpec) -> tuple[tuple[str, str], ...]:
    """(zone, the ELB's ENI address in it) per zone; () in a lab without zones."""
    return tuple((eni.zone, str(eni.address)) for eni in elb_enis(spec) if eni.zone)


SOURCE_TABLE = 110      # + zone index: the ELB host's per-ENI route tables


def eni_source_routes(spec: ClusterSpec) -> list[str]:
    """`ip -batch` lines for the elb host: traffic from zone i's ENI address
    (health checks, Classic connections) leaves through zone i's subnet,
    via its router for targets in other zones.  None without zones."""
    lines = []
    for index, (eni, zone) in enumerate(zip(elb_enis(spec), spec.network.zones)):
        table = SOURCE_TABLE + index
        lines += [f"rule add from {eni.address} table {table} priority {table}",
                  f"route replace {zone.subnet} dev {eni.interface} src {eni.address} "
                  f"table {table}",
                  f"route replace default via {zone.router} dev {eni.interface} "
                  f"table {table}"]
    return lines


def missing_rules(lines: list[str], rules_shown: str) -> list[str]:
    """Drop the `rule add` lines whose table already has a rule (`ip rule show`
    output): a restarted daemon does not stack duplicates."""
    return [line for line in lines if not (
        line.startswith("rule add ") and f"lookup {line.split()[-3]}" in rules_shown)]


def elb_agent_argv(spec: ClusterSpec, handle: ElbHandle, netns: int) -> list[str]:
    return [sys.executable, "-m", "agents.elb", "--config", str(handle.config_path),
            "--status", str(handle.status_path), "--vpc-ip", handle.vpc_ip,
            "--vip-interface", "eth1", "--netns-inode", str(netns),
            *(["--alb-config", str(handle.alb_config_path)] if handle.alb_config_path else []),
            *(["--access-log", str(handle.access_log_path)] if handle.access_log_path else [])]


def start_elb(spec: ClusterSpec, lab, supervisor, api=None) -> ElbHandle:
    """Fix the ELB's ENI MACs and (zones) source routes, then start the agent
    in the elb host (supervised)."""
    record = lab.state.hosts[ELB_HOST]
    directory = elb_dir(lab.paths.root)
    directory.mkdir(parents=True, exist_ok=True)
    handle = ElbHandle(config_path=directory / "config.json",
                       status_path=directory / "status.json",
                       vpc_ip=str(spec.network.elb_vpc_address), vip_pool=vip_pool(spec),
                       time_factor=float(getattr(spec, "time_factor", 0.1)),
                       zone_enis=zone_enis(spec),
                       alb_config_path=directory / ALB_CONFIG_FILE,
                       access_log_path=directory / "alb-access.log")
    batch = [f"link set dev {eni.interface} address {eni.mac}" for eni in elb_enis(spec)]
    routes = eni_source_routes(spec)
    if routes:
        batch += missing_rules(routes, run_in(record.pid, ["ip", "rule", "show"],
                                              where=ELB_HOST))
    run_in(record.pid, ["ip", "-batch", "-"], input="\n".join(batch) + "\n", where=ELB_HOST)
    supervisor.add(handle.program_key, ELB_HOST,
                   elb_agent_argv(spec, handle, record.netns))
    return handle


def alb_controller_for(spec: ClusterSpec, lab, handle: ElbHandle, client=None) -> AlbController:
    """The ALB controller (the AWS Load Balancer Controller's job): it writes the
    ALBs' config next to the ELB config, their certificates and DNS records."""
    client = client or KubeClient.from_kubeconfig(str(lab.paths.kubeconfig))
    net = spec.network
    subnets = ({zone.name: str(zone.subnet) for zone in net.zones} if net.zones
               else {None: str(net.vpc_subnet)})
    return AlbController(client, handle.alb_config_path, list(handle.vip_pool),
                         handle.time_factor, elb_config_path=handle.config_path,
                         zone_enis=dict(handle.zone_enis), vpc_subnets=subnets,
                         cluster_name=lab.paths.root.name)


def cloud_controller_for(spec: ClusterSpec, lab, handle: ElbHandle, client=None):
    """A CloudController for this lab (admin credentials unless a client is given)."""
    client = client or KubeClient.from_kubeconfig(str(lab.paths.kubeconfig))
    return CloudController(client, handle.config_path, lab.paths.outside_dns,
                           outside_dns_records(spec), list(handle.vip_pool),
                           handle.time_factor, zone_enis=dict(handle.zone_enis))
