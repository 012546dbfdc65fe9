"""The cluster spec: what a lab is made of, parsed and validated as data.

A spec is YAML a user writes (see topo/clusters/default.yaml).  `load_spec`
turns it into frozen dataclasses or raises SpecError naming the failing field
and the allowed values, before anything is started.  Every address the lab
uses is derived here, in one place, so the topology code never invents one.

A lab has either one subnet (`network.vpcSubnet`, the seed's cluster) or
Availability Zones (`network.zones`): one subnet per zone inside the VPC
range, nodes placed in zones (round-robin by default) and named after their
address as EC2 does.  `with_zones` turns a spec without zones into one with
zones (`svclab up --zones N`).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from base.errors import SpecError
from topo import fields
from topo.iptables_alt import BACKENDS as IPTABLES_BACKENDS
from topo.iptables_alt import detect_backend
from topo.spec_zones import (
    DEFAULT_REGION,
    ZONED_VPC,
    ZoneSpec,
    parse_zones,
    place_node,
    spread_over_zones,
    zone_bridge,
    zone_interface,
)

# Re-exported: the zone names and helpers are part of the spec's interface.
__all__ = ["ClientSpec", "ClusterSpec", "NetworkSpec", "NodeSpec", "OutsideSpec", "ZoneSpec",
           "load_spec", "parse_spec", "read_spec_data", "with_zones", "zone_bridge",
           "zone_interface"]

API_VERSION = "svclab/v1alpha1"
PROXY_MODES = ("iptables", "nftables")
SWITCHES = ("linuxbridge", "ovs")
ROLES = ("control-plane", "worker")
# Host names the lab uses for its own infrastructure (and zone bridges: az1, ...).
RESERVED_HOST_NAMES = ("igw", "elb", "vpc", "inet")
# Safety: public-looking addresses only from documentation ranges.
DOCUMENTATION_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "198.51.100.0/24", "203.0.113.0/24"))
PRIVATE_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


@dataclass(frozen=True)
class NetworkSpec:
    vpc_subnet: Net
    pod_cidr: Net
    pod_block_prefix: int
    service_cidr: Net
    node_port_range: tuple[int, int]
    public_ips: Net
    internet: Net
    region: str = ""                     # us-east-1 in a lab with zones
    zones: tuple[ZoneSpec, ...] = ()     # (): a lab without zones, one subnet
    inter_zone_latency: float = 0.0      # seconds each crossing between zones adds (0: none)

    def zone(self, name: str) -> ZoneSpec:
        for zone in self.zones:
            if zone.name == name:
                return zone
        raise KeyError(name)

    def zone_index(self, name: str) -> int:
        return self.zones.index(self.zone(name))

    @property
    def vpc_router(self) -> Addr:
        """The VPC router (the igw's VPC side, eth0): base + 1, as in AWS;
        with zones, the first zone's router."""
        if self.zones:
            return self.zones[0].router
        return self.vpc_subnet.network_address + 1

    @property
    def vpc_resolver(self) -> Addr:
        """The VPC DNS resolver: base + 2, as in AWS."""
        return self.vpc_subnet.network_address + 2

    @property
    def internet_gateway(self) -> Addr:
        """The igw's address on the internet segment."""
        return self.internet.network_address + 1

    @property
    def internet_resolver(self) -> Addr:
        """Public DNS on the internet segment, served on the igw."""
        return self.internet.network_address + 53

    @property
    def elb_vpc_address(self) -> Addr:
        """The load balancer's interface in the VPC (an ELB's ENI, on eth0);
        with zones, its ENI in the first zone (topo/elb.py lists them all)."""
        if self.zones:
            return self.zones[0].elb_address
        return self.vpc_subnet.network_address + 5

    @property
    def elb_vips(self) -> tuple[Addr, ...]:
        """Public addresses of the load balancer: .10 is the elb host's own, the
        rest (.11-.49) its pool; a load balancer takes one per zone node."""
        base = self.internet.network_address
        return tuple(base + i for i in range(10, 50))


@dataclass(frozen=True)
class NodeSpec:
    name: str          # the Kubernetes node name, e.g. ip-172-31-0-10
    role: str          # control-plane | worker
    address: Addr      # VPC (private) address
    public_ip: Addr    # EC2-style public IP the igw maps 1:1
    pod_block: Net     # this node's pod block
    static_pods: int   # pods the lab starts with on this node
    zone: str | None = None   # its Availability Zone; None in a lab without zones

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


@dataclass(frozen=True)
class ClientSpec:
    name: str
    address: Addr


@dataclass(frozen=True)
class OutsideSpec:
    """A service on the internet (an ExternalName target): a host with a name."""

    name: str                       # its public DNS name, e.g. db.example.com
    address: Addr
    ports: tuple[tuple[int, str], ...]   # (port, TCP|UDP)


@dataclass(frozen=True)
class ClusterSpec:
    network: NetworkSpec
    nodes: tuple[NodeSpec, ...]
    clients: tuple[ClientSpec, ...]
    proxy_mode: str
    switch: str
    outside: tuple[OutsideSpec, ...] = ()
    time_factor: float = 0.1        # AWS's seconds (health checks) times this
    node_monitor_grace_period: float = 40.0   # seconds without a kubelet report -> NotReady
    # The nodes' iptables (topo/iptables_alt.py): nft | legacy; by default
    # what the machine's `iptables` is (detected: iptables_backend_given False).
    iptables_backend: str = field(default_factory=detect_backend)
    iptables_backend_given: bool = False

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def default_spec_path() -> Path:
    return Path(str(resources.files("topo") / "clusters" / "default.yaml"))


def read_spec_data(path: str | Path | None = None) -> Any:
    """A spec file's data as YAML gives it (the default cluster when path is None)."""
    path = Path(path) if path else default_spec_path()
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError("file", f"cannot read {path}: {err.strerror}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError("file", f"{path} is not valid YAML: {err}") from err


def load_spec(path: str | Path | None = None, *, proxy_mode: str | None = None,
              zones: int | None = None) -> ClusterSpec:
    """Read and validate a spec file (the default cluster when path is None);
    zones: spread it over that many zones first (`svclab up --zones N`)."""
    data = read_spec_data(path)
    if proxy_mode is not None:
        if not isinstance(data, dict):
            data = {}
        data = {**data, "proxyMode": proxy_mode}
    if zones is not None:
        data = with_zones(data, zones)
    return parse_spec(data)


def with_zones(data: Any, count: int) -> Any:
    """The spec data `svclab up --zones N` runs: a spec without zones spread
    over N zones (us-east-1a.. on 172.31.(16*i).0/20); see spread_over_zones."""
    return spread_over_zones(data, count, _NETWORK_DEFAULTS["vpcSubnet"])


_TOP_FIELDS = ("apiVersion", "kind", "network", "nodes", "clients", "outside", "proxyMode",
               "iptablesBackend", "switch", "timeFactor", "nodeMonitorGracePeriod")


def parse_spec(data: Any) -> ClusterSpec:
    """Validate a spec given as plain data (what YAML produced)."""
    top = fields.mapping(data, "spec", _TOP_FIELDS)
    if top.get("apiVersion", API_VERSION) != API_VERSION:
        raise SpecError("apiVersion", f"unsupported value {top['apiVersion']!r}; "
                        f"allowed: {API_VERSION}")
    if top.get("kind", "Cluster") != "Cluster":
        raise SpecError("kind", f"unsupported value {top['kind']!r}; allowed: Cluster")
    network = _parse_network(top.get("network") or {})
    proxy_mode = fields.choice(top.get("proxyMode", "iptables"), "proxyMode", PROXY_MODES)
    backend_given = "iptablesBackend" in top
    iptables_backend = (fields.choice(top["iptablesBackend"], "iptablesBackend",
                                      IPTABLES_BACKENDS) if backend_given else detect_backend())
    switch = fields.choice(top.get("switch", "linuxbridge"), "switch", SWITCHES)
    nodes = _parse_nodes(top.get("nodes"), network)
    taken = {n.name for n in nodes} | {zone_bridge(i) for i in range(len(network.zones))}
    clients = _parse_clients(top.get("clients", [{"name": "client"}]), network, taken)
    outside = _parse_outside(top.get("outside", []), network,
                             {c.address for c in clients})
    time_factor = top.get("timeFactor", 0.1)
    if isinstance(time_factor, bool) or not isinstance(time_factor, (int, float)) \
            or not 0 < time_factor <= 1:
        raise SpecError("timeFactor", f"invalid value {time_factor!r}; allowed: a number "
                        "greater than 0 and at most 1 (AWS's timings are multiplied by it)")
    grace = top.get("nodeMonitorGracePeriod", 40)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 2 <= grace <= 600:
        raise SpecError("nodeMonitorGracePeriod", f"invalid value {grace!r}; allowed: seconds "
                        "from 2 to 600 (kube-controller-manager's default is 40)")
    return ClusterSpec(network, nodes, clients, proxy_mode, switch, outside,
                       float(time_factor), float(grace), iptables_backend, backend_given)


# --- network ---------------------------------------------------------------

_NETWORK_DEFAULTS = {
    "vpcSubnet": "172.31.0.0/20",
    "podCIDR": "192.168.0.0/16",
    "podBlockPrefix": 24,
    "serviceCIDR": "10.96.0.0/12",
    "nodePortRange": "30000-32767",
    "publicIPs": "198.51.100.0/24",
    "internet": "203.0.113.0/24",
}
_ZONE_FIELDS = ("region", "zones", "interZoneLatency")
_NETWORK_FIELDS = (*_NETWORK_DEFAULTS, *_ZONE_FIELDS)


def _parse_network(raw: Any) -> NetworkSpec:
    given = fields.mapping(raw, "network", _NETWORK_FIELDS)
    zoned = "zones" in given
    net = {**_NETWORK_DEFAULTS, **({"vpcSubnet": str(ZONED_VPC)} if zoned else {}),
           **{k: v for k, v in given.items() if k in _NETWORK_DEFAULTS}}
    cidrs = {key: fields.cidr(net[key], f"network.{key}")
             for key in ("vpcSubnet", "podCIDR", "serviceCIDR", "publicIPs", "internet")}
    for key in ("vpcSubnet", "podCIDR", "serviceCIDR"):
        if not any(cidrs[key].subnet_of(r) for r in PRIVATE_RANGES):
            raise SpecError(f"network.{key}", f"{cidrs[key]} is not a private range; "
                            "allowed: inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    for key in ("publicIPs", "internet"):
        if not any(cidrs[key].subnet_of(r) for r in DOCUMENTATION_RANGES):
            raise SpecError(f"network.{key}", f"{cidrs[key]} is not a documentation "
                            "range; allowed: inside 198.51.100.0/24 or 203.0.113.0/24")
    names = list(cidrs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if cidrs[a].overlaps(cidrs[b]):
                raise SpecError(f"network.{b}",
                                f"{cidrs[b]} overlaps network.{a} {cidrs[a]}")
    if cidrs["vpcSubnet"].prefixlen > 28:
        raise SpecError("network.vpcSubnet", "must be /28 or larger (AWS's limit)")
    if cidrs["serviceCIDR"].prefixlen > 27:
        raise SpecError("network.serviceCIDR",
                        "must be /27 or larger (it holds .1 kubernetes and .10 kube-dns)")
    for key in ("publicIPs", "internet"):
        if cidrs[key].prefixlen > 26:
            raise SpecError(f"network.{key}", "must be /26 or larger")
    block = net["podBlockPrefix"]
    pod_prefix = cidrs["podCIDR"].prefixlen
    if not isinstance(block, int) or isinstance(block, bool) or not pod_prefix <= block <= 28:
        raise SpecError("network.podBlockPrefix",
                        f"invalid value {block!r}; allowed: an integer from "
                        f"{pod_prefix} (the podCIDR's prefix) to 28")
    network = NetworkSpec(
        vpc_subnet=cidrs["vpcSubnet"], pod_cidr=cidrs["podCIDR"],
        pod_block_prefix=block, service_cidr=cidrs["serviceCIDR"],
        node_port_range=fields.port_range(net["nodePortRange"], "network.nodePortRange"),
        public_ips=cidrs["publicIPs"], internet=cidrs["internet"])
    if not zoned:
        for key in _ZONE_FIELDS:
            if key in given:
                raise SpecError(f"network.{key}", "only in a lab with zones; allowed: "
                                "list network.zones too (or run `svclab up --zones N`)")
        return network
    latency = given.get("interZoneLatency")
    return replace(
        network, region=fields.name(given.get("region", DEFAULT_REGION), "network.region",
                                    subdomain=False),
        zones=parse_zones(given["zones"], network.vpc_subnet),
        inter_zone_latency=0.0 if latency is None else fields.latency(
            latency, "network.interZoneLatency"))


# --- nodes and clients -----------------------------------------------------

_NODE_FIELDS = ("name", "role", "address", "publicIP", "podBlock", "staticPods", "zone")


def _parse_nodes(raw: Any, network: NetworkSpec) -> tuple[NodeSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("nodes", "must be a non-empty list of nodes")
    blocks = network.pod_cidr.subnets(new_prefix=network.pod_block_prefix)
    block_count = 2 ** (network.pod_block_prefix - network.pod_cidr.prefixlen)
    if len(raw) > block_count:
        raise SpecError("nodes", f"{len(raw)} nodes but network.podCIDR has only "
                        f"{block_count} blocks of /{network.pod_block_prefix}")
    usable = 2 ** (32 - network.pod_block_prefix) - 2
    # A node may name its block (a lab that nodes joined and left keeps its
    # blocks); the others take the free ones in order.
    given = [_pod_block(n.get("podBlock"), f"nodes[{i}].podBlock", network)
             for i, n in enumerate(raw) if isinstance(n, dict) and "podBlock" in n]
    blocks = (b for b in blocks if b not in given)
    nodes, seen_names, seen_addrs, seen_public = [], set(), set(), set()
    for i, item in enumerate(raw):
        path = f"nodes[{i}]"
        node = fields.mapping(item, path, _NODE_FIELDS)
        # With zones a node may go unnamed: it takes its EC2 name (ip-172-31-17-4).
        named = "name" in node or not network.zones
        name = fields.name(node.get("name"), f"{path}.name", subdomain=True) if named else ""
        role = fields.choice(node.get("role", "worker"), f"{path}.role", ROLES)
        zone, address = _place_node(node, i, network, path)
        name = name or fields.ec2_name(address)
        if name in seen_names:
            raise SpecError(f"{path}.name", f"duplicate node name {name!r}")
        public = fields.address(node.get("publicIP", network.public_ips.network_address + 10 + i),
                                f"{path}.publicIP", network.public_ips,
                                reserved=_edge_reserved(network.public_ips))
        if address in seen_addrs:
            raise SpecError(f"{path}.address", f"{address} is already used by another node")
        if public in seen_public:
            raise SpecError(f"{path}.publicIP", f"{public} is already used by another node")
        static_pods = node.get("staticPods", 0)
        if not isinstance(static_pods, int) or isinstance(static_pods, bool) or static_pods < 0:
            raise SpecError(f"{path}.staticPods",
                            f"invalid value {static_pods!r}; allowed: an integer >= 0")
        if static_pods > usable:
            raise SpecError(f"{path}.staticPods",
                            f"{static_pods} pods do not fit in a /{network.pod_block_prefix} "
                            f"pod block; allowed: at most {usable}")
        block = (_pod_block(node["podBlock"], f"{path}.podBlock", network)
                 if "podBlock" in node else next(blocks))
        if any(n.pod_block == block for n in nodes):
            raise SpecError(f"{path}.podBlock", f"{block} is already used by another node")
        seen_names.add(name)
        seen_addrs.add(address)
        seen_public.add(public)
        nodes.append(NodeSpec(name, role, address, public, block, static_pods, zone))
    if not any(n.is_control_plane for n in nodes):
        raise SpecError("nodes", "needs at least one node with role: control-plane")
    return tuple(nodes)


def _pod_block(raw: Any, path: str, network: NetworkSpec) -> Net:
    block = fields.cidr(raw, path)
    if block.prefixlen != network.pod_block_prefix or not block.subnet_of(network.pod_cidr):
        raise SpecError(path, f"{block} is not a pod block; allowed: a "
                        f"/{network.pod_block_prefix} of network.podCIDR {network.pod_cidr}")
    return block


def _place_node(node: dict, index: int, network: NetworkSpec,
                path: str) -> tuple[str | None, Addr]:
    """A node's zone and VPC address: without zones, an address in the VPC
    subnet (base + 10 + index by default); with zones, see place_node."""
    vpc = network.vpc_subnet
    if network.zones:
        return place_node(node, index, network.zones, path)
    if "zone" in node:
        raise SpecError(f"{path}.zone", "this lab has no zones; allowed: list "
                        "network.zones (or run `svclab up --zones N`)")
    return None, fields.address(node.get("address", vpc.network_address + 10 + index),
                                f"{path}.address", vpc, reserved=fields.aws_reserved(vpc))


def _parse_clients(raw: Any, network: NetworkSpec,
                   node_names: set[str]) -> tuple[ClientSpec, ...]:
    if not isinstance(raw, list):
        raise SpecError("clients", "must be a list of clients")
    clients, seen_names, seen_addrs = [], set(), set()
    reserved = _internet_reserved(network)
    for i, item in enumerate(raw):
        path = f"clients[{i}]"
        client = fields.mapping(item, path, ("name", "address"))
        name = fields.name(client.get("name"), f"{path}.name", subdomain=False)
        if name in seen_names or name in node_names or name in RESERVED_HOST_NAMES:
            raise SpecError(f"{path}.name", f"name {name!r} is already taken "
                            f"(reserved: {', '.join(RESERVED_HOST_NAMES)})")
        address = fields.address(client.get("address", network.internet.network_address + 100 + i),
                           f"{path}.address", network.internet, reserved=reserved)
        if address in seen_addrs:
            raise SpecError(f"{path}.address", f"{address} is already used by another client")
        seen_names.add(name)
        seen_addrs.add(address)
        clients.append(ClientSpec(name, address))
    return tuple(clients)


def _parse_outside(raw: Any, network: NetworkSpec, taken: set) -> tuple[OutsideSpec, ...]:
    if not isinstance(raw, list):
        raise SpecError("outside", "must be a list of outside services")
    found, seen_names, seen_addrs = [], set(), set(taken)
    reserved = _internet_reserved(network)
    for i, item in enumerate(raw):
        path = f"outside[{i}]"
        entry = fields.mapping(item, path, ("name", "address", "ports"))
        name = fields.name(entry.get("name"), f"{path}.name", subdomain=True)
        if "." not in name or name.endswith("cluster.local"):
            raise SpecError(f"{path}.name", f"{name!r} must be a public DNS name with a "
                            "domain, e.g. db.example.com (not under cluster.local)")
        if name in seen_names:
            raise SpecError(f"{path}.name", f"duplicate outside service {name!r}")
        address = fields.address(entry.get("address", network.internet.network_address + 50 + i),
                           f"{path}.address", network.internet, reserved=reserved)
        if address in seen_addrs:
            raise SpecError(f"{path}.address", f"{address} is already used by another host")
        ports = tuple(fields.port_spec(p, f"{path}.ports[{j}]")
                      for j, p in enumerate(entry.get("ports", ["80/TCP"])))
        seen_names.add(name)
        seen_addrs.add(address)
        found.append(OutsideSpec(name, address, ports))
    return tuple(found)


def _internet_reserved(network: NetworkSpec) -> set:
    """The igw, public DNS and the load balancer's VIP pool."""
    return _edge_reserved(network.internet) | {
        network.internet_gateway, network.internet_resolver, *network.elb_vips}


def _edge_reserved(net: Net) -> set:
    return {net.network_address, net.network_address + 1, net.broadcast_address}
