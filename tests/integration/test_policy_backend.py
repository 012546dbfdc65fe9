"""The policy agent's backends against the real kernel, in throwaway namespaces.

Every command runs through ``ip netns exec svtest-<pid>-<n>``, where a
Calico-like veth (``cali`` + hash, as topo names a pod's host side) stands
for a pod.  In both modes: apply, re-apply (nothing changes; in iptables
mode the jump to cali-FORWARD stays FORWARD's rule 1, once, even after
kube-proxy's agent inserted its own jump on top), a change (a policy gone:
its chains go too), a refused apply (typed error naming the line, old rules
still in force), and cleanup back to exactly what was there before -- with
foreign rules and topo's nat chains left alone throughout.
"""
from __future__ import annotations

import subprocess

import pytest

from agents.policy.backend import backend_for
from agents.policy.compute import compute_node_rules
from agents.policy.errors import PolicyApplyError
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s, workload_iface

pytestmark = pytest.mark.root

NODE = "ip-172-31-0-11"
WEB = Pod("shop", "web", "192.168.1.10", NODE, (("app", "web"),), (("http", 80, "TCP"),))
API = Pod("shop", "api", "192.168.1.11", NODE, (("app", "api"),), (("http", 8080, "TCP"),))
FAR = Pod("shop", "far", "192.168.2.10", "ip-172-31-0-12", (("app", "far"),))
NAMESPACES = (Namespace("shop", (("kubernetes.io/metadata.name", "shop"),)),)
# Foreign rules (as kube-proxy and topo would have them) that must survive.
FOREIGN = """*nat
:cali-POSTROUTING - [0:0]
-A POSTROUTING -j cali-POSTROUTING
-A cali-POSTROUTING -s 192.168.1.0/24 -j MASQUERADE
COMMIT
*filter
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -d 10.0.0.0/8 -j ACCEPT
COMMIT
"""
FOREIGN_NFT = "table ip other {\n\tchain keep {\n\t\ttype filter hook forward priority 10;" \
              " policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n"


def sh(ns: str, *argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def policy(name: str, select: str, allow_from: str | None = None):
    spec = {"podSelector": {"matchLabels": {"app": select}}, "policyTypes": ["Ingress"]}
    if allow_from:
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": allow_from}}}],
                            "ports": [{"port": 80}]}]
    return policy_from_k8s({"metadata": {"name": name, "namespace": "shop"}, "spec": spec})


def rules(*policies):
    return compute_node_rules(Cluster((WEB, API, FAR), NAMESPACES, tuple(policies)), NODE)


def state(ns: str) -> str:
    """Everything a backend could have touched, comparable before/after."""
    saved = sh(ns, "iptables-save")
    body = [line for line in saved.splitlines() if not line.startswith("#")]
    return "\n".join(body) + "\n" + sh(ns, "nft", "list", "ruleset")


def forward_rules(ns: str) -> list[str]:
    return [line for line in sh(ns, "iptables-save", "-t", "filter").splitlines()
            if line.startswith("-A FORWARD ")]


def cali_chains(ns: str) -> set[str]:
    return {line[1:].split()[0] for line in sh(ns, "iptables-save", "-t", "filter").splitlines()
            if line.startswith(":cali-")}


@pytest.fixture
def node(netns):
    """The namespace with two Calico-like veths for local pods and foreign rules."""
    for pod in (WEB, API):
        sh(netns, "ip", "link", "add", workload_iface(pod.namespace, pod.name),
           "type", "veth", "peer", "name", f"eth-{pod.name}")
    sh(netns, "iptables-restore", "--noflush", stdin=FOREIGN)
    sh(netns, "nft", "-f", "-", stdin=FOREIGN_NFT)
    return netns


def sync(backend, node_rules) -> None:
    backend.apply(backend.render(node_rules))


def test_iptables_apply_reapply_change_break_cleanup(node):
    before = state(node)
    backend = backend_for("iptables", netns=node)
    sync(backend, rules(policy("deny-web", "web"), policy("allow-api", "web", "far")))
    first = forward_rules(node)
    assert first[0] == '-A FORWARD -m comment --comment "cali:svclab-netpol" -j cali-FORWARD'
    assert sum("cali-FORWARD" in line for line in first) == 1
    tw_web = f"cali-tw-{WEB.iface}"
    assert tw_web in cali_chains(node)
    saved = sh(node, "iptables-save", "-t", "filter")
    assert "192.168.2.10" in saved and "no policy allowed it" in saved

    applied = state(node)                                     # re-apply: no change
    again = backend.render(rules(policy("deny-web", "web"), policy("allow-api", "web", "far")))
    assert again.repair == ()
    backend.apply(again)
    assert state(node) == applied

    # kube-proxy's agent puts a missing jump of its own on top: ours moves back.
    sh(node, "iptables", "-I", "FORWARD", "1", "-j", "KUBE-FORWARD")
    sync(backend, rules(policy("deny-web", "web"), policy("allow-api", "web", "far")))
    now = forward_rules(node)
    assert now[0].endswith("-j cali-FORWARD") and sum("cali-FORWARD" in x for x in now) == 1
    sh(node, "iptables", "-D", "FORWARD", "2")                # the extra KUBE jump

    sync(backend, rules(policy("allow-api", "web", "far")))  # deny-web deleted
    chains_now = cali_chains(node)
    assert tw_web in chains_now                               # still isolated by allow-api
    sync(backend, rules())                                    # no policy left
    assert tw_web not in cali_chains(node)
    assert not any(c.startswith(("cali-pi-", "cali-tw-")) for c in cali_chains(node))

    sync(backend, rules(policy("deny-web", "web")))
    good = state(node)
    broken = backend.render(rules(policy("deny-web", "web")))
    text = broken.text.replace("COMMIT", "-A cali-FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT")
    with pytest.raises(PolicyApplyError) as err:
        backend.apply(type(broken)(broken.rules_text, text))
    assert err.value.line_text == "-A cali-FORWARD -p tcp --dport 99999 -j ACCEPT"
    assert err.value.returncode != 0 and "iptables-restore" in err.value.argv
    assert state(node) == good                                # old rules in force

    backend.cleanup()
    assert state(node) == before
    backend.cleanup()                                         # nothing left: a no-op
    assert state(node) == before


def test_nftables_apply_reapply_change_break_cleanup(node):
    before = state(node)
    backend = backend_for("nftables", netns=node)
    sync(backend, rules(policy("deny-web", "web"), policy("allow-api", "web", "far")))
    table = sh(node, "nft", "list", "table", "ip", "svclab-netpol")
    assert f"cali-tw-{WEB.iface}" in table and "192.168.2.10" in table
    assert "hook forward" in table
    assert forward_rules(node) == [line for line in before.splitlines()
                                   if line.startswith("-A FORWARD ")]   # no iptables jump

    applied = state(node)
    sync(backend, rules(policy("deny-web", "web"), policy("allow-api", "web", "far")))
    assert state(node) == applied                             # re-apply: no change

    sync(backend, rules())                                    # every policy deleted
    table = sh(node, "nft", "list", "table", "ip", "svclab-netpol")
    assert f"cali-tw-{WEB.iface}" not in table and "192.168.2.10" not in table

    sync(backend, rules(policy("deny-web", "web")))
    good = state(node)
    rendered = backend.render(rules(policy("deny-web", "web")))
    lines = rendered.text.rstrip("\n").split("\n")
    lines.insert(len(lines) - 1, "\t\tip saddr 300.1.2.3 accept")
    with pytest.raises(PolicyApplyError) as err:
        backend.apply(type(rendered)(rendered.rules_text, "\n".join(lines) + "\n"))
    assert err.value.line == len(lines) - 1
    assert "300.1.2.3" in err.value.line_text
    assert state(node) == good                                # old rules in force

    backend.cleanup()
    assert state(node) == before
    backend.cleanup()
    assert state(node) == before
