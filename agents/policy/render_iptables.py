"""NodeRules -> iptables-restore --noflush input for the filter table.

The layout is Calico's (felix's iptables dataplane), reduced to what
NetworkPolicy needs:

    FORWARD -> cali-FORWARD                 (the jump is the backend's, rule 1)
      established/related: ACCEPT
      -i cali+ -> cali-from-wl-dispatch     -i caliX -g cali-fw-caliX (egress)
      -o cali+ -> cali-to-wl-dispatch       -o caliX -g cali-tw-caliX (ingress)
    cali-fw-/cali-tw-<iface>: clear the allow bit, jump to each policy chain,
      RETURN once the bit is set, else DROP ("drop: no policy allowed it")
    cali-pi-/cali-po-<hash>: one policy's ingress/egress rules (its first
      line's comment names it); each allow rule sets the bit
      (MARK --set-xmark 0x10000/0x10000), then RETURN

    cali-s-<hash>: an address set (no ipset): sets bit 0x20000 when the
      source (or destination) is in one of its CIDRs; shared by every allow
      rule with the same set, which jumps to it and then tests the bit

A pod not isolated for a direction has no dispatch entry for it (allow).
Every allow rule and every drop carries a comment naming the policy and rule
index (or the pod), so a tracer path or `svclab trace` can name them.
A remote set of one CIDR is matched inline (-s/-d); larger ones go through
a shared set chain, so 500 policies over the same few peer selectors write
each pod IP list once instead of once per rule (Calico shares ipsets so).
"""

from __future__ import annotations

import hashlib

from agents.policy.compute import ALLOW_MARK, AllowRule, NodeRules, PolicyChain, Workload

TOP = "cali-FORWARD"
FROM_DISPATCH = "cali-from-wl-dispatch"
TO_DISPATCH = "cali-to-wl-dispatch"
PREFIX = "cali-"
MULTIPORT_MAX = 15          # a range counts as two
MARK = f"{ALLOW_MARK:#x}/{ALLOW_MARK:#x}"
SET_MARK = 0x20000
IN_SET = f"{SET_MARK:#x}/{SET_MARK:#x}"
ANY = ("0.0.0.0/0",)


def set_chain_name(flag: str, cidrs: tuple[str, ...]) -> str:
    digest = hashlib.sha1(f"{flag}|{','.join(cidrs)}".encode()).hexdigest()[:12]
    return f"cali-s-{digest}"


def _flags(rule: AllowRule) -> tuple[str, str]:
    """(remote, local) address flags of an allow rule."""
    return ("-s", "-d") if rule.direction == "Ingress" else ("-d", "-s")


def uses_set_chain(rule: AllowRule) -> bool:
    return rule.remote is not None and len(rule.remote) > 1


def _comment(text: str) -> str:
    """-m comment (at most 256 characters, no double quotes)."""
    return f'-m comment --comment "{text.replace(chr(34), chr(39))[:250]}"'


def _port_chunks(ports: tuple[tuple[int, int], ...]) -> list[list[tuple[int, int]]]:
    chunks: list[list[tuple[int, int]]] = [[]]
    used = 0
    for lo, hi in ports:
        cost = 1 if lo == hi else 2
        if used + cost > MULTIPORT_MAX:
            chunks.append([])
            used = 0
        chunks[-1].append((lo, hi))
        used += cost
    return chunks


def _port_text(chunk: list[tuple[int, int]], proto: str) -> str:
    spec = ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in chunk)
    if len(chunk) == 1:
        return f"-m {proto} --dport {spec}"
    return f"-m multiport --dports {spec}"


def _addr(flag: str, cidr: str) -> str:
    return "" if cidr == "0.0.0.0/0" else f"{flag} {cidr} "


def allow_lines(chain: str, rule: AllowRule) -> list[str]:
    """The -A lines of one allow rule (cross product of addresses and ports)."""
    remote_flag, local_flag = _flags(rule)
    lines = []
    if uses_set_chain(rule):
        lines.append(f"-A {chain} -j {set_chain_name(remote_flag, rule.remote)}")
        remotes, pre = ANY, f"-m mark --mark {IN_SET} "
    else:
        remotes, pre = rule.remote if rule.remote is not None else ANY, ""
    locals_ = tuple(f"{ip}/32" for ip in rule.local) if rule.local is not None else ANY
    if rule.protocol is None:
        protos = [""]
    elif not rule.ports:
        protos = [f"-p {rule.protocol.lower()} "]
    else:
        p = rule.protocol.lower()
        protos = [f"-p {p} {_port_text(c, p)} " for c in _port_chunks(rule.ports)]
    tail = f"{_comment(rule.comment)} -j MARK --set-xmark {MARK}"
    return lines + [f"-A {chain} {pre}{_addr(remote_flag, r)}{_addr(local_flag, loc)}"
                    f"{proto}{tail}" for loc in locals_ for r in remotes for proto in protos]


def set_chains(rules: NodeRules) -> dict[str, list[str]]:
    """Every shared address-set chain the allow rules use, with its lines."""
    out: dict[str, list[str]] = {}
    for chain in rules.chains:
        for rule in chain.rules:
            if not uses_set_chain(rule):
                continue
            flag = _flags(rule)[0]
            name = set_chain_name(flag, rule.remote)
            if name not in out:
                out[name] = [f"-A {name} -j MARK --set-xmark 0x0/{SET_MARK:#x}"] + [
                    f"-A {name} {flag} {cidr} -j MARK --set-xmark {IN_SET}"
                    for cidr in rule.remote]
    return out


def policy_chain_lines(chain: PolicyChain) -> list[str]:
    """A policy's chain: a line naming it (the chain name is a hash), then
    its allow rules, each rule index ending in a RETURN once one allowed."""
    lines = [f"-A {chain.name} {_comment(f'{chain.policy} {chain.direction.lower()}')}"]
    in_set = None           # the set chain whose bit is valid (allow lines keep it)
    for i, rule in enumerate(chain.rules):
        new = allow_lines(chain.name, rule)
        if uses_set_chain(rule):
            jump, new = new[0], new[1:]
            if jump != in_set:
                lines.append(jump)
                in_set = jump
        lines += new
        last = i + 1 == len(chain.rules) or chain.rules[i + 1].index != rule.index
        if last:
            lines.append(f"-A {chain.name} -m mark --mark {MARK} -j RETURN")
    return lines


def workload_lines(chain: str, wl: Workload, policies: tuple[str, ...],
                   rules: NodeRules, direction: str) -> list[str]:
    lines = [f"-A {chain} -j MARK --set-xmark 0x0/{ALLOW_MARK:#x}"]
    for name in policies:
        policy = rules.chain(name).policy
        lines.append(f"-A {chain} {_comment(f'policy {policy}')} -j {name}")
        lines.append(f"-A {chain} -m mark --mark {MARK} "
                     f"{_comment(f'allowed by {policy}')} -j RETURN")
    lines.append(f"-A {chain} "
                 f"{_comment(f'drop: no policy allowed it ({direction} of {wl.key})')} -j DROP")
    return lines


def needed_chains(rules: NodeRules, sets: dict[str, list[str]] | None = None) -> list[str]:
    names = [TOP, FROM_DISPATCH, TO_DISPATCH]
    for wl in rules.workloads:
        if wl.egress is not None:
            names.append(wl.from_chain)
        if wl.ingress is not None:
            names.append(wl.to_chain)
    names += [c.name for c in rules.chains]
    names += list(set_chains(rules) if sets is None else sets)
    return names


def render_iptables(rules: NodeRules, existing_chains: frozenset[str] = frozenset()) -> str:
    """iptables-restore --noflush input: every cali- chain we own, rewritten;
    cali- chains in existing_chains that are no longer needed are deleted."""
    sets = set_chains(rules)
    names = needed_chains(rules, sets)
    stale = sorted(c for c in existing_chains
                   if c.startswith(PREFIX) and c not in set(names))
    out = ["*filter"] + [f":{c} - [0:0]" for c in names + stale]
    out += [f"-A {TOP} -m conntrack --ctstate RELATED,ESTABLISHED "
            f"{_comment('svclab netpol: established')} -j ACCEPT",
            f"-A {TOP} -i cali+ -j {FROM_DISPATCH}",
            f"-A {TOP} -o cali+ -j {TO_DISPATCH}"]
    for wl in rules.workloads:
        if wl.egress is not None:
            out.append(f"-A {FROM_DISPATCH} -i {wl.iface} -g {wl.from_chain}")
    for wl in rules.workloads:
        if wl.ingress is not None:
            out.append(f"-A {TO_DISPATCH} -o {wl.iface} -g {wl.to_chain}")
    for wl in rules.workloads:
        if wl.egress is not None:
            out += workload_lines(wl.from_chain, wl, wl.egress, rules, "egress")
        if wl.ingress is not None:
            out += workload_lines(wl.to_chain, wl, wl.ingress, rules, "ingress")
    for chain in rules.chains:
        out += policy_chain_lines(chain)
    for lines in sets.values():
        out += lines
    out += [f"-X {c}" for c in stale]
    out.append("COMMIT")
    return "\n".join(out) + "\n"
