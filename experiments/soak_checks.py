"""What the soak counts after the churn: the rules and chains each node holds
against what the current API objects need, conntrack entries to deleted
Services and pods, and the pure comparisons behind them.

Rules: for every node, the proxy agent's rules are computed again from the
API's Services, EndpointSlices and Node (probes.trace.topology.node_ruleset,
as the agent computes them) and rendered as a full sync would write them
into empty tables; the policy agent's from its Pods, Namespaces and
NetworkPolicies.  The node's installed chains (iptables-save, or `nft -j
list table`) are compared by name and by rule count: a chain the objects do
not need is a leftover, a needed one absent or with another rule count is
"differs".  Only the agents' own chains are looked at (KUBE-* in nat and
filter, cali-* in filter -- the nat table's cali-* chains are topo's
natOutgoing --, or their nftables tables).

Conntrack: entries whose original destination is the address of a deleted
Service, or whose reply comes from the address of a deleted pod (not reused
by a live pod).  Leftovers are the UDP entries the node translated (DNAT to
a pod: kube-proxy flushes those when the Service or the endpoint goes) and
established TCP entries (they live for days); TCP entries in a closing
state (TIME_WAIT, SYN_SENT, ...) and UDP entries a node only forwarded
untranslated (the pod's own node) expire by themselves within the kernel's
timeouts (120 s at most) and are counted apart.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from agents.policy.agent import PARSERS
from agents.policy.compute import compute_node_rules
from agents.policy.model import Cluster, PolicyModelError
from agents.policy.render_iptables import render_iptables
from agents.policy.render_nft import TABLE as POLICY_TABLE
from agents.policy.render_nft import render_nft
from agents.proxy.iptables_render import render
from agents.proxy.nft_plan import TABLE as PROXY_TABLE
from agents.proxy.nft_plan import plan_ruleset
from base.kube.informer import key_of
from probes.trace.topology import node_ruleset
from topo.netns import run_in

EXPIRING_TCP = frozenset({"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "FIN_WAIT",
                          "SYN_SENT", "SYN_RECV"})
_CHAIN_DECL = re.compile(r"^:(\S+) ")
_RULE = re.compile(r"^-A (\S+) ")
_NFT_CHAIN = re.compile(r"chain (\S+) \{")


# --- pure ----------------------------------------------------------------------

def iptables_chains(text: str, prefix: str,
                    tables: tuple[str, ...] = ("nat", "filter")) -> dict[str, int]:
    """chain -> rule count of the chains named prefix* in the given tables of
    iptables-save or iptables-restore text."""
    counts: dict[str, int] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        if table not in tables:
            continue
        declared = _CHAIN_DECL.match(line)
        if declared and declared.group(1).startswith(prefix):
            counts.setdefault(declared.group(1), 0)
        rule = _RULE.match(line)
        if rule and rule.group(1).startswith(prefix):
            counts[rule.group(1)] = counts.get(rule.group(1), 0) + 1
    return counts


def nft_chains(listing: str) -> dict[str, int]:
    """chain -> rule count from `nft -j list table ...` output."""
    counts: dict[str, int] = {}
    for item in json.loads(listing).get("nftables", []):
        if "chain" in item:
            counts.setdefault(item["chain"]["name"], 0)
        elif "rule" in item:
            counts[item["rule"]["chain"]] = counts.get(item["rule"]["chain"], 0) + 1
    return counts


def compare_chains(installed: Mapping[str, int], expected: Mapping[str, int | None]) -> dict:
    """Leftover chains (installed, not needed), missing ones, and needed ones
    holding another number of rules (expected None: the count is not known)."""
    return {"leftover": sorted(set(installed) - set(expected)),
            "missing": sorted(set(expected) - set(installed)),
            "differs": sorted(c for c in set(installed) & set(expected)
                              if expected[c] is not None and installed[c] != expected[c])}


def expected_proxy_chains(mode: str, ruleset) -> dict[str, int | None]:
    if mode == "iptables":
        return iptables_chains(render(ruleset).text, "KUBE-")
    plan = plan_ruleset(ruleset)
    chains = list(plan.chains) + [c for objects in plan.services.values()
                                  for c in objects.chains]
    return {c.name: len(c.rules) for c in chains}


def expected_policy_chains(mode: str, rules) -> dict[str, int | None]:
    if mode == "iptables":
        return iptables_chains(render_iptables(rules), "cali-", ("filter",))
    # nft's listing splits and joins rules its own way: names only
    return dict.fromkeys(_NFT_CHAIN.findall(render_nft(rules)))


def parse_conntrack(text: str) -> list[dict]:
    """conntrack -L lines -> {proto, state, dst (original), reply_src}."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or "=" not in line:
            continue
        sources = [f[4:] for f in fields if f.startswith("src=")]
        dests = [f[4:] for f in fields if f.startswith("dst=")]
        if len(sources) < 2 or not dests:
            continue
        state = fields[3] if fields[0] == "tcp" and "=" not in fields[3] else ""
        entries.append({"proto": fields[0], "state": state, "dst": dests[0],
                        "reply_src": sources[1]})
    return entries


def stale_entries(entries: Iterable[Mapping], deleted_vips: set[str],
                  deleted_pods: set[str]) -> dict[str, int]:
    """Entries to deleted Services or pods: leftover (what the proxy agent
    must flush: UDP translated on this node, to a deleted Service or pod;
    and TCP established, which lives for days) or expiring (TCP in a
    closing state; UDP this node only forwarded untranslated, as the pod's
    own node does: the kernel's UDP timeouts end it, 30 s or 120 s)."""
    counts = Counter()
    for e in entries:
        if e["dst"] not in deleted_vips and e["reply_src"] not in deleted_pods:
            continue
        translated = e["dst"] != e["reply_src"]
        if e["proto"] == "tcp":
            leftover = e["state"] not in EXPIRING_TCP
        else:
            leftover = translated
        counts["leftover" if leftover else "expiring"] += 1
        counts[f"{e['proto']}:{e['state'] or '-'}{'' if translated else ':forwarded'}"] += 1
    return {"leftover": counts.pop("leftover", 0), "expiring": counts.pop("expiring", 0),
            "by_kind": dict(sorted(counts.items()))}


# --- against a lab ------------------------------------------------------------

def _objects(api) -> dict[str, list[dict]]:
    kinds = ("services", "endpointslices", "nodes", "pods", "namespaces", "networkpolicies")
    return {kind: api.list(kind)[0] for kind in kinds}


def _node_addresses(node: Mapping) -> list[str]:
    return [a["address"] for a in (node.get("status") or {}).get("addresses", [])
            if a.get("type") == "InternalIP"]


def _policy_cluster(objects: Mapping[str, list[dict]]) -> Cluster:
    """The policy agent's model of these objects, ordered as it orders them."""
    def parsed(kind):
        models = {}
        for obj in objects[kind]:
            try:
                models[key_of(obj)] = PARSERS[kind](obj)
            except PolicyModelError:      # the agent ignores these too
                continue
        return tuple(models[k] for k in sorted(models))
    return Cluster(pods=parsed("pods"), namespaces=parsed("namespaces"),
                   policies=parsed("networkpolicies"))


def rule_report(api, nodes: Mapping[str, int], mode: str) -> dict:
    """Per node (name -> its host's pid): proxy and policy chains compared
    with what the current objects need."""
    objects = _objects(api)
    by_name = {n["metadata"]["name"]: n for n in objects["nodes"]}
    cluster = _policy_cluster(objects)
    report = {}
    for name, pid in sorted(nodes.items()):
        node = by_name.get(name)
        ruleset = node_ruleset(name, _node_addresses(node or {}), node,
                               objects["services"], objects["endpointslices"])
        if mode == "iptables":
            saved = run_in(pid, ["iptables-save"], timeout=60)
            proxy = iptables_chains(saved, "KUBE-")
            # the filter table: its nat cali-* chains are topo's (natOutgoing)
            policy = iptables_chains(saved, "cali-", ("filter",))
        else:
            proxy = nft_chains(_nft_table(pid, PROXY_TABLE))
            policy = nft_chains(_nft_table(pid, POLICY_TABLE))
        report[name] = {
            "proxy": compare_chains(proxy, expected_proxy_chains(mode, ruleset)),
            "policy": compare_chains(policy, expected_policy_chains(
                mode, compute_node_rules(cluster, name))),
            "proxy_chains": len(proxy), "policy_chains": len(policy)}
    return report


def _nft_table(pid: int, table: str) -> str:
    listing = run_in(pid, ["nft", "-j", "list", "ruleset", "ip"], timeout=60)
    items = [i for i in json.loads(listing).get("nftables", [])
             if (i.get("chain") or i.get("rule") or {}).get("table") == table]
    return json.dumps({"nftables": items})


def conntrack_report(nodes: Mapping[str, int], deleted_vips: set[str],
                     deleted_pods: set[str]) -> dict:
    """Per node: conntrack entries to deleted Services and pods."""
    report = {}
    for name, pid in sorted(nodes.items()):
        listing = run_in(pid, ["conntrack", "-L"], timeout=60)
        report[name] = stale_entries(parse_conntrack(listing), deleted_vips, deleted_pods)
    return report
