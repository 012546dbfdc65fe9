"""The ELB's kernel side in the lab: its fixed VPC MAC, and what the nodes need
for NLB return traffic.

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

from topo.spec import ClusterSpec

ELB_HOST = "elb"
ELB_MARK = 0x1000000
ELB_TABLE = 105
RETURN_CHAIN = "ELB-RETURN"


def elb_vpc_mac(spec: ClusterSpec) -> str:
    """0a (locally administered, unicast, AWS-ENI-like) + e1 + the VPC address."""
    octets = spec.network.elb_vpc_address.packed
    return "0a:e1:" + ":".join(f"{b:02x}" for b in octets)


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
