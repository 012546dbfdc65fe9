"""Which rules decided a traced packet's fate: the proxy tracers, with the path.

agents/proxy's tracers answer "what can happen to this packet" (verdict,
DNAT, masquerade, probability per branch) and record, per branch, every
chain it entered and every rule that matched (agents.proxy.trace_core's
path).  `walk_*` return every branch as a `Branch` with that path, labelled
by where the chain ran (nat, filter, or nat-post for postrouting);
`pick_branch` chooses the one the capture shows (same DNAT target, same
masquerade, same fate).

The node's rules come live from the kernel: `iptables-save` (only the nat
and filter tables are walked: kube-proxy's, and in filter the NetworkPolicy
chains cali-*) or `nft list table ip kube-proxy` plus, when present, `nft
list table ip svclab-netpol`, whose listing syntax `listing_to_commands`
turns back into the `nft -f` commands the nft tracer reads.  The policy
rules match on interfaces: `pod_interfaces` reads the node's pod routes
(`ip -4 route`: pod IP -> cali veth); `policy_steps` names the policy rule
that allowed or the workload chain that dropped the packet, from the
comments the policy renderers put on every allow and drop rule.
`parse_conntrack` reads `conntrack -L` lines.  Pure: no I/O here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from agents.proxy.errors import TracerError
from agents.proxy.iptables_tracer import Tracer
from agents.proxy.nft_tracer import NftTracer
from agents.proxy.trace_core import TracedBranch

POLICY_TABLE = "ip svclab-netpol"
NFT_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0,
                  "security": 50, "srcnat": 100}


@dataclass(frozen=True)
class Branch:
    """One possible fate of the packet, with the chains it went through."""

    verdict: str                    # ACCEPT | DROP | REJECT | NO-MATCH
    dnat: str | None
    masquerade: bool
    probability: float
    path: tuple[tuple[str, str], ...]   # (nat | filter | nat-post, chain)
    policy: tuple[str, ...] = ()        # NetworkPolicy decisions, see policy_steps

    def chains(self, table: str | None = None) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for t, c in self.path if table is None or t == table))


# --- iptables ------------------------------------------------------------------

def kube_tables(iptables_save: str) -> str:
    """Only the nat and filter tables of an iptables-save (the tracer's subset)."""
    keep, lines = False, []
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            keep = line[1:] in ("nat", "filter")
        if keep:
            lines.append(line)
    return "\n".join(lines) + "\n"


def walk_iptables(iptables_save: str, local_addresses, src: str, dst: str, dport: int,
                  protocol: str = "tcp", locally_originated: bool = False,
                  interfaces: dict[str, str] | None = None) -> list[Branch]:
    """interfaces: the node's pod IPs -> cali veths (needed once policy
    rules, which match -i/-o, are in the filter table)."""
    tracer = Tracer(kube_tables(iptables_save), local_addresses, interfaces)
    return [_branch(b) for b in tracer.branches(src, dst, dport, protocol,
                                                locally_originated=locally_originated)]


# --- nftables ------------------------------------------------------------------

def walk_nftables(listing: str, local_addresses, src: str, dst: str, dport: int,
                  protocol: str = "tcp", locally_originated: bool = False,
                  interfaces: dict[str, str] | None = None,
                  policy_listing: str | None = None) -> list[Branch]:
    """policy_listing: `nft list table ip svclab-netpol`, walked with
    kube-proxy's table (its forward base chain runs first, priority -10)."""
    tables = ({POLICY_TABLE: listing_to_commands(policy_listing, POLICY_TABLE)}
              if policy_listing else None)
    tracer = NftTracer(listing_to_commands(listing), local_addresses, interfaces=interfaces,
                       tables=tables)
    return [_branch(b) for b in tracer.branches(src, dst, dport, protocol,
                                                locally_originated=locally_originated)]


def _branch(traced: TracedBranch) -> Branch:
    """A tracer's branch, its chains labelled by where they ran."""
    path = tuple(("nat-post" if step.hook == "postrouting" else step.table, step.chain)
                 for step in traced.entered)
    return Branch(traced.verdict, traced.packet.dnat, traced.packet.masquerade,
                  traced.probability, path, policy_steps(traced))


_COMMENT = re.compile(r'comment "([^"]*)"')
_ALLOW = re.compile(r"^\S+/\S+ (ingress|egress) rule \d+$")


def policy_steps(traced: TracedBranch) -> tuple[str, ...]:
    """What the NetworkPolicy chains (cali-*) decided on this branch, e.g.
    'egress of a/p1: allowed by a/web egress rule 0' or 'ingress of b/q:
    drop: no policy allowed it (ingress of b/q) [policies: b/deny]'."""
    out: list[str] = []
    consulted: list[str] = []
    for step in traced.path:
        if step.rule is None or not step.chain.startswith("cali-"):
            continue
        match = _COMMENT.search(step.rule)
        note = match.group(1) if match else ""
        if note.startswith("policy "):
            consulted.append(note[len("policy "):])
        elif _ALLOW.match(note):
            out.append(f"{note.split()[1]}: allowed by {note} ({step.chain})")
        elif note.startswith("drop: "):
            out.append(f"{note} [policies: {', '.join(consulted) or 'none'}] ({step.chain})")
    return tuple(out)


def pod_interfaces(routes: str) -> dict[str, str]:
    """`ip -4 route` of a node -> {pod IP: its cali veth} (the /32 routes)."""
    out = {}
    for line in routes.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "dev" and words[2].startswith("cali"):
            out[words[0].split("/")[0]] = words[2]
    return out


_MARK_OP = re.compile(r"meta mark set meta mark ([|^&]) (0x[0-9a-f]+)")
_MARK_TEST = re.compile(r"meta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+)")
_PROTO_PORT = re.compile(r"\b(tcp|udp|sctp) dport ")
_MARK_OPS = {"|": "or", "^": "xor", "&": "and"}


def _normalise_rule(rule: str) -> str:
    rule = _MARK_OP.sub(lambda m: f"mark set mark {_MARK_OPS[m.group(1)]} "
                        f"{int(m.group(2), 16):#x}", rule)
    rule = _PROTO_PORT.sub(lambda m: f"meta l4proto {m.group(1)} th dport ", rule)
    return _MARK_TEST.sub(lambda m: f"mark and {int(m.group(1), 16):#x} == "
                          f"{int(m.group(2), 16)}", rule)


def _chain_spec(line: str) -> str:
    """'type nat hook prerouting priority dstnat - 10; policy accept;' -> nft -f spec."""
    match = re.match(r"type (\w+) hook (\w+) priority ([^;]+);", line)
    if not match:
        raise TracerError(f"nft listing: unreadable base chain line: {line}")
    words, value, sign = match.group(3).split(), 0, 1
    for word in words:
        if word in ("+", "-"):
            sign = 1 if word == "+" else -1
        else:
            value += sign * (NFT_PRIORITIES[word] if word in NFT_PRIORITIES else int(word))
    return f"type {match.group(1)} hook {match.group(2)} priority {value} ;"


def _blocks(listing: str):
    """(kind, name, [lines]) for every set, map and chain of the table listing."""
    depth, current, body, pending = 0, None, [], ""
    for raw in listing.splitlines():
        line = raw.strip()
        if not line:
            continue
        if depth == 1 and current is None:
            match = re.match(r"(set|map|chain) (\S+) \{$", line)
            if match:
                current, body, depth = (match.group(1), match.group(2)), [], 2
                continue
            if line.startswith("comment"):
                continue
        if depth == 0:
            if re.match(r"table ip \S+ \{$", line):
                depth = 1
                continue
            raise TracerError(f"nft listing: unexpected line {line!r}")
        if depth == 1 and line == "}":
            depth = 0
            continue
        if current is not None:
            text = (pending + " " + line).strip() if pending else line
            balance = text.count("{") - text.count("}")
            if balance < 0 and text == "}":
                yield current[0], current[1], body
                current, depth = None, 1
                continue
            if balance > 0:
                pending = text
                continue
            pending = ""
            body.append(text)
    if current is not None or depth:
        raise TracerError("nft listing: unbalanced braces")


def _elements(text: str) -> list[str]:
    inner = text[text.index("{") + 1:text.rindex("}")]
    return [part.strip() for part in inner.split(",") if part.strip()]


def listing_to_commands(listing: str, table: str = "ip kube-proxy") -> str:
    """`nft list table` output -> `nft -f` add commands the nft tracer applies."""
    declares, chains, rules, elements = [f"add table {table}"], [], [], []
    for kind, name, body in _blocks(listing):
        if kind in ("set", "map"):
            spec = [line.rstrip(";") for line in body
                    if line.startswith(("type ", "flags "))]
            declares.append(f"add {kind} {table} {name} {{ {' ; '.join(spec)} ; }}")
            dynamic = any(line.startswith("flags") and "dynamic" in line for line in body)
            for line in body:
                if line.startswith("elements = ") and not dynamic:
                    elements += [f"add element {table} {name} {{ {e} }}"
                                 for e in _elements(line)]
            continue
        base = [line for line in body if line.startswith("type ")]
        chains.append(f"add chain {table} {name}" +
                      (f" {{ {_chain_spec(base[0])} }}" if base else ""))
        rules += [f"add rule {table} {name} {_normalise_rule(line)}"
                  for line in body if not line.startswith(("type ", "comment "))]
    return "\n".join(declares + chains + rules + elements) + "\n"


# --- choosing the branch the capture shows -------------------------------------

def pick_branch(branches: list[Branch], dnat: str | None, masquerade: bool,
                forwarded: bool) -> tuple[Branch | None, bool]:
    """The branch matching what the capture saw; (branch, exact match?)."""
    def score(branch: Branch) -> int:
        passed = branch.verdict in ("ACCEPT", "NO-MATCH")
        return (4 * (branch.dnat == dnat) + 2 * (branch.masquerade == masquerade)
                + (passed == forwarded))
    if not branches:
        return None, False
    best = max(branches, key=lambda b: (score(b), b.probability))
    return best, score(best) == 7


# --- conntrack -----------------------------------------------------------------

@dataclass(frozen=True)
class ConntrackEntry:
    proto: str
    orig: tuple[str, int, str, int]     # src, sport, dst, dport
    reply: tuple[str, int, str, int]
    state: str | None
    line: str


_CT_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


def parse_conntrack(text: str) -> list[ConntrackEntry]:
    """`conntrack -L` lines -> entries (lines that are not flows are skipped)."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] not in ("tcp", "udp"):
            continue
        fields = _CT_FIELD.findall(line)
        if len(fields) < 8:
            continue
        values = [v for _, v in fields[:8]]
        orig = (values[0], int(values[2]), values[1], int(values[3]))
        reply = (values[4], int(values[6]), values[5], int(values[7]))
        state = words[3] if words[3].isupper() and "=" not in words[3] else None
        out.append(ConntrackEntry(words[0], orig, reply, state, line.strip()))
    return out


def find_conntrack(entries: list[ConntrackEntry], proto: str, src: str, sport: int,
                   dst: str, dport: int) -> ConntrackEntry | None:
    for entry in entries:
        if entry.proto == proto and entry.orig == (src, sport, dst, dport):
            return entry
    return None


# --- igw and elb rules ---------------------------------------------------------

def igw_rule_for(iptables_save: str, before, after) -> str | None:
    """The IGW-* nat rule that rewrote before -> after (1:1 NAT), as its line."""
    for line in iptables_save.splitlines():
        if not line.startswith("-A IGW-"):
            continue
        if before.dst.addr != after.dst.addr and f"-d {before.dst.addr}/32" in line \
                and f"--to-destination {after.dst.addr}" in line:
            return line
        if before.src.addr != after.src.addr and f"-s {before.src.addr}/32" in line \
                and f"--to-source {after.src.addr}" in line:
            return line
    return None


def nat_rule_to(iptables_save: str, destination: str) -> str | None:
    """A DNAT line with --to-destination destination (ELB NLB listeners)."""
    for line in iptables_save.splitlines():
        if line.startswith("-A ") and f"--to-destination {destination}" in line.split(" -j ")[-1]:
            return line
    return None


__all__ = ["Branch", "walk_iptables", "walk_nftables", "listing_to_commands", "kube_tables",
           "policy_steps", "pod_interfaces", "POLICY_TABLE",
           "pick_branch", "ConntrackEntry", "parse_conntrack", "find_conntrack",
           "igw_rule_for", "nat_rule_to"]
