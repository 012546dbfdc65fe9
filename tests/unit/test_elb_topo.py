"""The lab-side glue: pool, MAC, and the nodes' NLB return-path rules."""
from __future__ import annotations

from pathlib import Path

from labd.elb import ElbHandle, elb_agent_argv, vip_pool
from topo.elb import ELB_MARK, elb_vpc_mac, node_return_path_routes, node_return_path_rules
from topo.spec import load_spec


def test_pool_mac_and_agent_argv_come_from_the_spec():
    spec = load_spec()
    assert vip_pool(spec)[0] == "203.0.113.11" and "203.0.113.10" not in vip_pool(spec)
    assert elb_vpc_mac(spec) == "0a:e1:ac:1f:00:05"     # 172.31.0.5
    handle = ElbHandle(Path("/run/x/elb/config.json"), Path("/run/x/elb/status.json"),
                       "172.31.0.5", vip_pool(spec), 0.1)
    argv = elb_agent_argv(spec, handle, 4026532999)
    assert argv[1:3] == ["-m", "agents.elb"]
    assert argv[argv.index("--vpc-ip") + 1] == "172.31.0.5"
    assert argv[argv.index("--netns-inode") + 1] == "4026532999"


def test_nodes_mark_flows_from_the_elb_mac_and_route_their_replies_back_to_it():
    spec = load_spec()
    rules = node_return_path_rules(spec).splitlines()
    mark = f"0x{ELB_MARK:x}/0x{ELB_MARK:x}"
    assert rules[0] == "*mangle" and rules[-1] == "COMMIT"
    assert "-A PREROUTING -j ELB-RETURN" in rules
    new = next(r for r in rules if "--mac-source" in r)
    assert "--mac-source 0a:e1:ac:1f:00:05" in new and "--ctstate NEW" in new
    assert new.endswith(f"-j CONNMARK --set-xmark {mark}")
    reply = next(r for r in rules if "--ctdir REPLY" in r)
    assert f"--mark {mark}" in reply and reply.endswith(f"-j MARK --set-xmark {mark}")
    assert node_return_path_routes(spec) == [
        f"rule add fwmark {mark} table 105 priority 105",
        "route add default via 172.31.0.5 dev eth0 table 105"]
