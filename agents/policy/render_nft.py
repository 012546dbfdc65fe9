"""NodeRules -> one `nft -f` transaction replacing table ip svclab-netpol.

The same Calico layout and chain names as render_iptables (see there), in
our own table: a base chain `forward` (type filter hook forward priority
-10, before kube-proxy's filter-forward at 0) jumps to cali-FORWARD; the
dispatch chains match iifname/oifname; remote address sets and port lists
are anonymous sets in the rules (`ip saddr { .. }`, `th dport { 80, 1000-2000 }`);
the allow bit is `mark set mark or 0x10000`, tested with
`mark and 0x10000 == 0x10000`, cleared with `mark set mark and 0xfffeffff`.

The file adds, deletes and re-adds the table, so the whole table is replaced
in one transaction (no window without rules, nothing stale left).  Chains
and their rules are written as `add chain T c { rule ; .. }` in the order
that defines every chain before a rule refers to it.
"""

from __future__ import annotations

from agents.policy.compute import ALLOW_MARK, AllowRule, NodeRules, PolicyChain, Workload
from agents.policy.render_iptables import FROM_DISPATCH, TO_DISPATCH, TOP

TABLE = "svclab-netpol"
FAMILY_TABLE = f"ip {TABLE}"
BASE_CHAIN = "forward"
PRIORITY = -10
CLEAR = f"{0xFFFFFFFF & ~ALLOW_MARK:#x}"
IS_SET = f"mark and {ALLOW_MARK:#x} == {ALLOW_MARK:#x}"


def _comment(text: str) -> str:
    return f'comment "{text.replace(chr(34), chr(39))[:120]}"'


def _set(items: tuple[str, ...] | list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ports: tuple[tuple[int, int], ...]) -> str:
    return _set([str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports])


def allow_rule(rule: AllowRule) -> str:
    ingress = rule.direction == "Ingress"
    remote_field, local_field = ("saddr", "daddr") if ingress else ("daddr", "saddr")
    parts = []
    if rule.remote is not None and rule.remote != ("0.0.0.0/0",):
        parts.append(f"ip {remote_field} {_set(rule.remote)}")
    if rule.local is not None:
        parts.append(f"ip {local_field} {_set(rule.local)}")
    if rule.protocol is not None:
        parts.append(f"meta l4proto {rule.protocol.lower()}")
        if rule.ports:
            parts.append(f"th dport {_ports(rule.ports)}")
    parts += [f"mark set mark or {ALLOW_MARK:#x}", _comment(rule.comment)]
    return " ".join(parts)


def policy_chain_rules(chain: PolicyChain) -> list[str]:
    out: list[str] = []
    for i, rule in enumerate(chain.rules):
        out.append(allow_rule(rule))
        if i + 1 == len(chain.rules) or chain.rules[i + 1].index != rule.index:
            out.append(f"{IS_SET} return")
    return out


def workload_rules(wl: Workload, policies: tuple[str, ...], rules: NodeRules,
                   direction: str) -> list[str]:
    out = [f"mark set mark and {CLEAR}"]
    for name in policies:
        policy = rules.chain(name).policy
        out.append(f"jump {name} {_comment(f'policy {policy}')}")
        out.append(f"{IS_SET} return {_comment(f'allowed by {policy}')}")
    out.append(f"drop {_comment(f'drop: no policy allowed it ({direction} of {wl.key})')}")
    return out


def _chain(name: str, rules: list[str], spec: str = "") -> str:
    body = " ".join(f"{r} ;" for r in ([spec] if spec else []) + rules)
    return f"add chain {FAMILY_TABLE} {name}" + (f" {{ {body} }}" if body else "")


def render_nft(rules: NodeRules) -> str:
    """The nft -f text that replaces table ip svclab-netpol with rules."""
    out = [f"add table {FAMILY_TABLE}", f"delete table {FAMILY_TABLE}",
           f"add table {FAMILY_TABLE}"]
    out += [_chain(c.name, policy_chain_rules(c)) for c in rules.chains]
    for wl in rules.workloads:
        if wl.egress is not None:
            out.append(_chain(wl.from_chain, workload_rules(wl, wl.egress, rules, "egress")))
        if wl.ingress is not None:
            out.append(_chain(wl.to_chain, workload_rules(wl, wl.ingress, rules, "ingress")))
    out.append(_chain(FROM_DISPATCH, [f'iifname "{wl.iface}" goto {wl.from_chain}'
                                      for wl in rules.workloads if wl.egress is not None]))
    out.append(_chain(TO_DISPATCH, [f'oifname "{wl.iface}" goto {wl.to_chain}'
                                    for wl in rules.workloads if wl.ingress is not None]))
    out.append(_chain(TOP, [
        f"ct state established,related accept {_comment('svclab netpol: established')}",
        f'iifname "cali*" jump {FROM_DISPATCH}',
        f'oifname "cali*" jump {TO_DISPATCH}']))
    out.append(_chain(BASE_CHAIN, [f"jump {TOP}"],
                      f"type filter hook forward priority {PRIORITY}"))
    return "\n".join(out) + "\n"
