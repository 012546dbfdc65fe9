"""Pure lab planning: from a ClusterSpec to the hosts, links and per-host config.

Config-as-data, then render, then apply (IPMininet's way): nothing here touches
the kernel.  `plan_lab` describes the static lab; `plan_pod` describes one pod
joined to its node.  The topology code (topo/network.py) applies these plans, and
`svclab up --dry-run` prints them.

Naming lives here too, in one place: Mininet host names are short (n0, p7,
igw); users address hosts by their Kubernetes or spec names.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from base.cri import DnsConfig, HostAlias, PodSandboxConfig, ProjectedFiles
from topo.elb import Eni, elb_enis, node_return_path_routes, node_return_path_rules
from topo.spec import ClusterSpec, NodeSpec, zone_bridge, zone_interface

POD_GATEWAY = "169.254.1.1"     # Calico's fake next hop, answered by proxy ARP
MASQ_CHAIN = "cali-nat-outgoing"
DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "cluster.local"
KUBE_DNS_IP_OFFSET = 10          # 10.96.0.10
VPC_DOMAIN = "ec2.internal"
POD_TMP_SIZE = "256m"            # a pod's private /tmp (tmpfs): memory, capped
# The lab is IPv4; IPv6 autoconfiguration would only add noise to captures.
# A lab host writes `all`, which the kernel applies to every interface and to
# `default`, so interfaces made later (a pod veth's node end) start without
# IPv6 too.  A pod writes only `default`, before its veth exists: `all` (and
# any interface's own) only tries the rtnl lock and restarts the write while
# another thread holds it -- a spin that took a third of the lab daemon's CPU
# while a thousand pods started -- and `default` takes no lock.  A pod's eth0
# starts without IPv6; its lo keeps ::1, as a real pod's.
IPV4_ONLY = (("net.ipv6.conf.all.disable_ipv6", "1"),)
POD_IPV4_ONLY = (("net.ipv6.conf.default.disable_ipv6", "1"),)


@dataclass(frozen=True)
class HostConfig:
    """Everything applied inside one host once its interfaces exist."""

    host: str                       # Mininet host name (short, unique in the lab)
    kind: str                       # node | pod | router | client | bridge
    name: str                       # what users call it (k8s name, client name)
    namespace: str | None = None    # Kubernetes namespace (pods only)
    node: str | None = None         # the node a pod runs on
    addresses: tuple[str, ...] = ()
    ip_batch: tuple[str, ...] = ()  # `ip -batch` lines
    sysctls: tuple[tuple[str, str], ...] = ()
    iptables: str = ""              # iptables-restore --noflush input
    resolv_conf: str | None = None  # private /etc/resolv.conf content
    hostname: str | None = None     # a UTS namespace of its own with this name (pods)
    etc_files: tuple[tuple[str, str], ...] = ()   # (path, content) bound over /etc files
    private_tmp: bool = False       # a tmpfs of its own on /tmp
    volumes: tuple[ProjectedFiles, ...] = ()   # read-only folders the kubelet projects (/run)


@dataclass(frozen=True)
class LinkPlan:
    host1: str
    intf1: str
    host2: str
    intf2: str


@dataclass(frozen=True)
class LabPlan:
    hosts: tuple[HostConfig, ...]
    links: tuple[LinkPlan, ...]
    bridges: tuple[str, ...] = ("vpc", "inet")
    zones: tuple[str, ...] = ()      # what the dry run says of the zones first
    igw_tc: tuple[str, ...] = ()     # `tc -batch` lines for the igw (inter-zone latency)


@dataclass(frozen=True)
class PodPlan:
    """A pod host, its veth to the node, and what the node adds for it."""

    pod: HostConfig
    link: LinkPlan
    node_batch: tuple[str, ...]
    node_sysctls: tuple[tuple[str, str], ...] = field(default=())


def node_host_name(index: int) -> str:
    return f"n{index}"


def outside_host_name(index: int) -> str:
    return f"o{index}"


def pod_host_name(seq: int) -> str:
    return f"p{seq}"


def cali_name(namespace: str, pod: str) -> str:
    """Calico-style host-side veth name: cali + 11 hex chars of a hash."""
    digest = hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()
    return "cali" + digest[:11]


def static_pod_name(index: int, node: NodeSpec) -> str:
    """Static pods are named like kubelet mirror pods: <name>-<node>."""
    return f"static-{index}-{node.name}"


def cluster_dns_ip(spec: ClusterSpec) -> str:
    """The kube-dns Service's cluster IP (the kubelets' clusterDNS)."""
    return str(spec.network.service_cidr.network_address + KUBE_DNS_IP_OFFSET)


def resolv_conf_for_pod(namespace: str, spec: ClusterSpec) -> str:
    """A pod's /etc/resolv.conf when no kubelet said otherwise: the cluster's DNS."""
    return DnsConfig(servers=(cluster_dns_ip(spec),),
                     searches=(f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}",
                               CLUSTER_DOMAIN),
                     options=("ndots:5",)).resolv_conf()


def etc_hosts_for_pod(ips: list[str], hostname: str, domain: str = "",
                      aliases: tuple[HostAlias, ...] = ()) -> str:
    """The /etc/hosts a kubelet writes for a pod on the pod network.

    The managed header, the localhost and IPv6 lines, then one line per pod
    IP: `IP<TAB>hostname`, or `IP<TAB>hostname.domain<TAB>hostname` with a
    subdomain; spec.hostAliases follow under a comment of their own."""
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet",
             "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters"]
    for ip in ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    if aliases:
        lines += ["", "# Entries added by HostAliases."]
        lines += [f"{alias.ip}\t" + "\t".join(alias.hostnames) for alias in aliases]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Segment:
    """One L2 segment of the VPC: the single subnet, or one zone's subnet."""

    bridge: str                      # vpc, or az1, az2, ...
    interface: str                   # the igw's (and the elb's) interface on it
    subnet: ipaddress.IPv4Network
    router: ipaddress.IPv4Address    # the igw's address on it (AWS's .1)
    zone: str | None = None


def vpc_segments(spec: ClusterSpec) -> tuple[Segment, ...]:
    """The VPC's segments: one bridge `vpc` without zones, one bridge per zone with."""
    net = spec.network
    if not net.zones:
        return (Segment("vpc", "eth0", net.vpc_subnet, net.vpc_router),)
    return tuple(Segment(zone_bridge(i), zone_interface(i), zone.subnet, zone.router, zone.name)
                 for i, zone in enumerate(net.zones))


def node_segment(spec: ClusterSpec, node: NodeSpec) -> Segment:
    segments = vpc_segments(spec)
    return next((s for s in segments if s.zone == node.zone), segments[0])


def plan_lab(spec: ClusterSpec) -> LabPlan:
    net = spec.network
    inet_len = net.internet.prefixlen
    segments = vpc_segments(spec)
    first, rest = segments[0], segments[1:]
    vpc_resolv = vpc_resolv_conf(spec)
    hosts: list[HostConfig] = []
    links: list[LinkPlan] = []
    bridges = tuple(s.bridge for s in segments) + ("inet",)
    bridge_ports = dict.fromkeys(bridges, 0)

    def attach(bridge: str, host: str, intf: str) -> None:
        bridge_ports[bridge] += 1
        links.append(LinkPlan(host, intf, bridge, f"{bridge}-eth{bridge_ports[bridge]}"))

    for bridge in bridges:
        hosts.append(HostConfig(
            host=bridge, kind="bridge", name=bridge,
            ip_batch=("link set dev lo up",),
            sysctls=IPV4_ONLY + (("net.bridge.bridge-nf-call-iptables", "0"),
                                 ("net.bridge.bridge-nf-call-arptables", "0"))))

    hosts.append(HostConfig(
        host="igw", kind="router", name="igw",
        addresses=(str(first.router), str(net.internet_gateway), *(str(s.router) for s in rest)),
        ip_batch=("link set dev lo up", *_igw_vpc_lines(spec, first),
                  f"addr add {net.internet_gateway}/{inet_len} dev eth1",
                  f"addr add {net.internet_resolver}/{inet_len} dev eth1",
                  "link set dev eth1 up",
                  *(line for s in rest for line in _igw_vpc_lines(spec, s)),
                  # The VPC route table: each node's pod block -> the node's ENI
                  # (source/dest check off), as Calico without overlay needs.
                  *(f"route add {igw_pod_route(spec, n)}" for n in spec.nodes
                    if net.zones)),
        sysctls=IPV4_ONLY + (("net.ipv4.ip_forward", "1"),),
        iptables=render_igw_rules(spec),
        resolv_conf=vpc_resolv))
    attach(first.bridge, "igw", first.interface)
    attach("inet", "igw", "eth1")
    for segment in rest:
        attach(segment.bridge, "igw", segment.interface)

    for index, node in enumerate(spec.nodes):
        hosts.append(plan_node(spec, node, node_host_name(index)))
        attach(node_segment(spec, node).bridge, node_host_name(index), "eth0")

    for client in spec.clients:
        hosts.append(HostConfig(
            host=client.name, kind="client", name=client.name,
            addresses=(str(client.address),),
            ip_batch=("link set dev lo up",
                      f"addr add {client.address}/{inet_len} dev eth0",
                      "link set dev eth0 up",
                      f"route add default via {net.internet_gateway}"),
            sysctls=IPV4_ONLY,
            resolv_conf=f"nameserver {net.internet_resolver}\n"))
        attach("inet", client.name, "eth0")

    enis = elb_enis(spec)
    hosts.append(HostConfig(
        host="elb", kind="loadbalancer", name="elb",
        addresses=(str(enis[0].address), str(net.elb_vips[0]),
                   *(str(e.address) for e in enis[1:])),
        ip_batch=("link set dev lo up", *_eni_lines(enis[0]),
                  f"addr add {net.elb_vips[0]}/{inet_len} dev eth1", "link set dev eth1 up",
                  *(line for eni in enis[1:] for line in _eni_lines(eni)),
                  f"route add default via {net.internet_gateway} dev eth1"),
        sysctls=IPV4_ONLY + (("net.ipv4.ip_forward", "1"),),
        resolv_conf=vpc_resolv))
    attach(first.bridge, "elb", enis[0].interface)
    attach("inet", "elb", "eth1")
    for segment, eni in zip(rest, enis[1:]):
        attach(segment.bridge, "elb", eni.interface)

    for index, service in enumerate(spec.outside):
        host = outside_host_name(index)
        hosts.append(HostConfig(
            host=host, kind="outside", name=service.name,
            addresses=(str(service.address),),
            ip_batch=("link set dev lo up",
                      f"addr add {service.address}/{inet_len} dev eth0",
                      "link set dev eth0 up",
                      f"route add default via {net.internet_gateway}"),
            sysctls=IPV4_ONLY,
            resolv_conf=f"nameserver {net.internet_resolver}\n"))
        attach("inet", host, "eth0")
    return LabPlan(tuple(hosts), tuple(links), bridges, describe_zones(spec),
                   inter_zone_latency_batch(spec))


def plan_node(spec: ClusterSpec, node: NodeSpec, host: str) -> HostConfig:
    """A node's host: its ENI address, routes to every peer's pod block, the
    NLB return path, Calico's natOutgoing."""
    own = node_segment(spec, node)
    batch = ["link set dev lo up",
             f"addr add {node.address}/{own.subnet.prefixlen} dev eth0",
             "link set dev eth0 up",
             f"route add default via {own.router}",
             f"route add blackhole {node.pod_block}"]
    batch += [f"route add {peer_route(spec, node, peer)}"
              for peer in spec.nodes if peer is not node]
    batch += node_return_path_routes(spec, node)
    return HostConfig(
        host=host, kind="node", name=node.name, addresses=(str(node.address),),
        ip_batch=tuple(batch),
        sysctls=IPV4_ONLY + (("net.ipv4.ip_forward", "1"),
                             ("net.ipv4.conf.all.rp_filter", "0"),
                             ("net.ipv4.conf.default.rp_filter", "0")),
        iptables=render_node_rules(spec) + node_return_path_rules(spec, node),
        resolv_conf=vpc_resolv_conf(spec))


def vpc_dns(spec: ClusterSpec) -> DnsConfig:
    """The resolver an EC2 instance in the VPC gets from DHCP (us-east-1's domain)."""
    return DnsConfig(servers=(str(spec.network.vpc_resolver),), searches=(VPC_DOMAIN,))


def vpc_resolv_conf(spec: ClusterSpec) -> str:
    return vpc_dns(spec).resolv_conf()


def peer_route(spec: ClusterSpec, node: NodeSpec, peer: NodeSpec) -> str:
    """How `node` reaches `peer`'s pod block: a peer in the same subnet
    directly, one in another zone through this zone's router (the igw routes
    the block on to the peer)."""
    via = peer.address if peer.zone == node.zone else node_segment(spec, node).router
    return f"{peer.pod_block} via {via}"


def igw_pod_route(spec: ClusterSpec, node: NodeSpec) -> str | None:
    """The VPC route table's entry for a node's pod block (labs with zones:
    the igw is the VPC router), or None without zones."""
    return f"{node.pod_block} via {node.address}" if spec.network.zones else None


def _igw_vpc_lines(spec: ClusterSpec, segment: Segment) -> list[str]:
    """The igw's router address on a segment; the VPC resolver (the VPC's
    base + 2) on the segment that holds it, else as a /32 on the first."""
    resolver = spec.network.vpc_resolver
    lines = [f"addr add {segment.router}/{segment.subnet.prefixlen} dev {segment.interface}"]
    if resolver in segment.subnet:
        lines.append(f"addr add {resolver}/{segment.subnet.prefixlen} dev {segment.interface}")
    elif segment.interface == "eth0" and not any(resolver in s.subnet
                                                 for s in vpc_segments(spec)):
        lines.append(f"addr add {resolver}/32 dev {segment.interface}")
    lines.append(f"link set dev {segment.interface} up")
    return lines


def _eni_lines(eni: Eni) -> list[str]:
    return [f"link set dev {eni.interface} address {eni.mac}",
            f"addr add {eni.address}/{eni.prefixlen} dev {eni.interface}",
            f"link set dev {eni.interface} up"]


def inter_zone_latency_batch(spec: ClusterSpec) -> tuple[str, ...]:
    """`tc -batch` lines for the igw: netem delay on each zone interface, so
    every packet crossing zones (it leaves the igw into its zone) waits once."""
    delay = spec.network.inter_zone_latency
    if not spec.network.zones or delay <= 0:
        return ()
    return tuple(f"qdisc add dev {s.interface} root netem delay {round(delay * 1e6)}us"
                 for s in vpc_segments(spec))


def describe_zones(spec: ClusterSpec) -> tuple[str, ...]:
    """The zones in a few lines (dry run, status); () without zones."""
    net = spec.network
    if not net.zones:
        return ()
    lines = [f"zones of region {net.region} in VPC {net.vpc_subnet}"]
    for segment, eni in zip(vpc_segments(spec), elb_enis(spec)):
        nodes = [n.name for n in spec.nodes if n.zone == segment.zone] or ["no nodes"]
        lines.append(f"  {segment.zone} {segment.subnet}: bridge {segment.bridge}, router "
                     f"{segment.router} (igw {segment.interface}), ELB ENI {eni.address} "
                     f"(elb {eni.interface}, {eni.mac}); {', '.join(nodes)}")
    if net.inter_zone_latency:
        lines.append(f"  inter-zone latency {_format_delay(net.inter_zone_latency)} "
                     "(netem on the igw's zone interfaces, where the kernel has netem)")
    return tuple(lines)


def _format_delay(seconds: float) -> str:
    micros = round(seconds * 1e6)
    return f"{micros / 1000:g}ms" if micros >= 1000 else f"{micros}us"


def outside_dns_records(spec: ClusterSpec) -> dict[str, list[str]]:
    """What the emulated public DNS knows: outside services and EC2 host names."""
    records = {s.name: [str(s.address)] for s in spec.outside}
    for node in spec.nodes:
        records[f"{node.name}.ec2.internal"] = [str(node.address)]
        dashed = str(node.public_ip).replace(".", "-")
        records[f"ec2-{dashed}.compute-1.amazonaws.com"] = [str(node.public_ip)]
    return records


def plan_pod(spec: ClusterSpec, node_index: int, host: str, name: str,
             namespace: str, ip: ipaddress.IPv4Address,
             sandbox: PodSandboxConfig | None = None, node_host: str | None = None) -> PodPlan:
    """A pod's host: its /32 behind the node, and its sandbox (hostname, /etc, /tmp).
    node_host: the node's host name when it is not the spec order's (a node
    that joined a running lab, or one after a node that left)."""
    node = spec.nodes[node_index]
    if ip not in node.pod_block:
        raise ValueError(f"pod IP {ip} is outside {node.name}'s block {node.pod_block}")
    sandbox = sandbox or PodSandboxConfig(hostname=name)
    veth = cali_name(namespace, name)
    pod = HostConfig(
        host=host, kind="pod", name=name, namespace=namespace, node=node.name,
        addresses=(str(ip),),
        ip_batch=("link set dev lo up",
                  f"addr add {ip}/32 dev eth0", "link set dev eth0 up",
                  f"route add {POD_GATEWAY} dev eth0 scope link",
                  f"route add default via {POD_GATEWAY} dev eth0"),
        sysctls=POD_IPV4_ONLY,
        resolv_conf=(sandbox.dns.resolv_conf() if sandbox.dns is not None
                     else resolv_conf_for_pod(namespace, spec)),
        hostname=sandbox.uts_hostname,
        etc_files=(("/etc/hosts", etc_hosts_for_pod([str(ip)], sandbox.hostname, sandbox.domain,
                                                    sandbox.host_aliases)),
                   ("/etc/hostname", sandbox.uts_hostname + "\n")),
        private_tmp=True, volumes=sandbox.volumes)
    return PodPlan(
        pod=pod,
        link=LinkPlan(node_host or node_host_name(node_index), veth, host, "eth0"),
        node_batch=(f"link set dev {veth} up", f"route add {ip}/32 dev {veth} scope link"),
        # Calico's per-interface settings; the veth forwards already, as every
        # interface of a node made after its ip_forward=1.
        node_sysctls=((f"net.ipv4.conf.{veth}.proxy_arp", "1"),
                      (f"net.ipv4.neigh.{veth}.proxy_delay", "0")))


def render_node_rules(spec: ClusterSpec) -> str:
    """Calico's natOutgoing: pods reaching beyond the pod CIDR leave as the node."""
    pods = spec.network.pod_cidr
    return "\n".join((
        "*nat",
        ":cali-POSTROUTING - [0:0]",
        f":{MASQ_CHAIN} - [0:0]",
        '-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING',
        f"-A cali-POSTROUTING -j {MASQ_CHAIN}",
        f'-A {MASQ_CHAIN} -s {pods} ! -d {pods} -m comment --comment "pod egress: natOutgoing"'
        " -j MASQUERADE --random-fully",
        "COMMIT", ""))


def render_igw_rules(spec: ClusterSpec) -> str:
    """The igw: 1:1 NAT between EC2 public IPs and node private IPs.

    Like an AWS internet gateway it forwards only translated traffic: packets
    from the internet to anything but a public IP (a pod IP, say) are dropped,
    and so is VPC traffic from an address without a public IP.  With zones it
    is the VPC's router too: traffic between its zone interfaces (the VPC's
    local route and the pod-block routes to nodes) is forwarded as it is.
    """
    return render_igw_chains(spec, jumps=True)


def render_igw_chains(spec: ClusterSpec, *, jumps: bool = False) -> str:
    """The igw's IGW-* chains, whole (iptables-restore --noflush replaces
    a declared chain's rules: how a node joining or leaving updates them);
    jumps: also the built-in chains' jumps into them (the lab's start)."""
    def jump(line: str) -> list[str]:
        return [line] if jumps else []
    raw = ["*raw", ":IGW-INBOUND - [0:0]", *jump("-A PREROUTING -i eth1 -j IGW-INBOUND"),
           "-A IGW-INBOUND -m addrtype --dst-type LOCAL -j RETURN",
           f"-A IGW-INBOUND -d {spec.network.public_ips} -j RETURN",
           '-A IGW-INBOUND -m comment --comment "no public IP: dropped" -j DROP', "COMMIT"]
    nat = ["*nat", ":IGW-PREROUTING - [0:0]", ":IGW-POSTROUTING - [0:0]",
           *jump("-A PREROUTING -j IGW-PREROUTING"), *jump("-A POSTROUTING -j IGW-POSTROUTING")]
    filt = ["*filter", ":IGW-FORWARD - [0:0]", *jump("-A FORWARD -j IGW-FORWARD"),
            "-A IGW-FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A IGW-FORWARD -m conntrack --ctstate DNAT -j ACCEPT"]
    vpc = spec.network.vpc_subnet
    # Into the VPC: eth0, or (zones) any interface but the internet's.
    to_vpc = "! -o eth1" if spec.network.zones else "-o eth0"
    for node in spec.nodes:
        nat.append(f"-A IGW-PREROUTING -d {node.public_ip}/32 "
                   f"-j DNAT --to-destination {node.address}")
        nat.append(f"-A IGW-POSTROUTING -o eth1 -s {node.address}/32 "
                   f"-j SNAT --to-source {node.public_ip}")
        # Hairpin: VPC -> public IP -> VPC leaves and comes back as a public IP.
        nat.append(f"-A IGW-POSTROUTING {to_vpc} -s {node.address}/32 -d {vpc} "
                   f"-m conntrack --ctstate DNAT -j SNAT --to-source {node.public_ip}")
        filt.append(f"-A IGW-FORWARD -i {node_segment(spec, node).interface} -o eth1 "
                    f"-s {node.address}/32 -j ACCEPT")
    for segment in vpc_segments(spec) if spec.network.zones else ():
        filt.append(f"-A IGW-FORWARD -i {segment.interface} ! -o eth1 -m comment "
                    f'--comment "VPC route table: {segment.zone} to the VPC" -j ACCEPT')
    filt += ['-A IGW-FORWARD -m comment --comment "not translated: dropped" -j DROP']
    return "\n".join(raw + nat + ["COMMIT"] + filt + ["COMMIT", ""])


def render_plan(plan: LabPlan) -> str:
    """Human-readable dry run of a plan."""
    out = list(plan.zones)
    for host in plan.hosts:
        title = f"{host.host} ({host.kind} {host.name})"
        out.append(title)
        out += [f"  ip {line}" for line in host.ip_batch]
        out += [f"  sysctl {k}={v}" for k, v in host.sysctls]
        out += [f"  iptables-restore: {line}" for line in host.iptables.splitlines()
                if line.startswith("-A")]
        if host.kind == "router":
            out += [f"  tc {line}  (if the kernel has netem)" for line in plan.igw_tc]
    out.append("links")
    out += [f"  {l.host1}:{l.intf1} <-> {l.host2}:{l.intf2}" for l in plan.links]
    return "\n".join(out) + "\n"
