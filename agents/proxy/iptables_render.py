"""Render a RuleSet as iptables-restore input, laid out as kube-proxy does.

The output is one iptables-restore --noflush transaction for the filter and
nat tables with kube-proxy's chain names and rules (pkg/proxy/iptables
syncProxyRules): our top-level chains are re-declared (which flushes them),
per-service chains are declared and filled, stale per-service chains found
in the current state are flushed and deleted, and jumps from the built-in
chains are inserted only when missing.  Nothing that is not ours is named.
Services are sorted, so equal inputs give byte-identical text.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.proxy import names
from agents.proxy.endpoints import Endpoint
from agents.proxy.iptables_state import EMPTY_STATE, IptablesState
from agents.proxy.ruleset import REJECT, TO_CLUSTER, TO_LOCAL, RuleSet, ServicePortRules

SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL = "KUBE-FIREWALL"

FILTER_CHAINS = (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS,
                 PROXY_FIREWALL)
NAT_CHAINS = (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ)

_NEW = "-m conntrack --ctstate NEW "
_LB_FIREWALL = "kubernetes load balancer firewall"
_NODEPORTS_LAST = ("kubernetes service nodeports; NOTE: this must be the "
                   "last rule in this chain")
# (table, built-in chain, our chain, extra match) in kube-proxy's order;
# each is inserted at the top, so the last one ends up first.
JUMPS = (
    ("filter", "INPUT", EXTERNAL_SERVICES, _NEW,
     "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", EXTERNAL_SERVICES, _NEW,
     "kubernetes externally-visible service portals"),
    ("filter", "INPUT", NODEPORTS, "",
     "kubernetes health check service ports"),
    ("filter", "FORWARD", SERVICES, _NEW, "kubernetes service portals"),
    ("filter", "OUTPUT", SERVICES, _NEW, "kubernetes service portals"),
    ("filter", "FORWARD", FORWARD, "", "kubernetes forwarding rules"),
    ("filter", "INPUT", PROXY_FIREWALL, _NEW, _LB_FIREWALL),
    ("filter", "OUTPUT", PROXY_FIREWALL, _NEW, _LB_FIREWALL),
    ("filter", "FORWARD", PROXY_FIREWALL, _NEW, _LB_FIREWALL),
    ("nat", "OUTPUT", SERVICES, "", "kubernetes service portals"),
    ("nat", "PREROUTING", SERVICES, "", "kubernetes service portals"),
    ("nat", "POSTROUTING", POSTROUTING, "", "kubernetes postrouting rules"),
)
KUBELET_JUMPS = (("filter", "INPUT", KUBELET_FIREWALL, "", ""),
                 ("filter", "OUTPUT", KUBELET_FIREWALL, "", ""))


def comment(text: str) -> str:
    """A '-m comment' match, quoted when the text has spaces."""
    return f'-m comment --comment "{text}"' if " " in text else \
        f"-m comment --comment {text}"


def probability(n: int) -> str:
    """kube-proxy's computeProbability: 1/n printed with %0.10f."""
    return "%0.10f" % (1.0 / n)


class _Out:
    """Line buffers of one render (kube-proxy's filterRules/natRules...)."""

    def __init__(self) -> None:
        self.filter_rules: list[str] = []
        self.nat_chains: set[str] = set()
        self.nat_rules: list[str] = []


class _PortChains:
    """The chain names of one service port."""

    def __init__(self, sp: ServicePortRules) -> None:
        n, p = str(sp.name), sp.protocol
        self.cluster = names.cluster_chain(n, p)
        self.local = names.local_chain(n, p)
        self.external = names.external_chain(n, p)
        self.firewall = names.firewall_chain(n, p)

    def policy(self, action: str) -> str:
        return self.local if action == TO_LOCAL else self.cluster


def _endpoint_chain(sp: ServicePortRules, ep: Endpoint) -> str:
    return names.endpoint_chain(str(sp.name), sp.protocol, ep.address)


def _filter_target(action: str, name: str) -> tuple[str, str]:
    if action == REJECT:
        return "REJECT", f"{name} has no endpoints"
    return "DROP", f"{name} has no local endpoints"


def _render_entries(sp: ServicePortRules, ch: _PortChains, out: _Out) -> None:
    """KUBE-SERVICES / KUBE-NODEPORTS entries and the filter verdicts."""
    name, p = str(sp.name), sp.protocol.lower()
    proto = f"-m {p} -p {p}"
    has_ext = sp.external_action in (TO_CLUSTER, TO_LOCAL)
    ext_target, ext_comment = _filter_target(sp.external_action, name)
    if sp.internal_action in (TO_CLUSTER, TO_LOCAL):
        out.nat_rules.append(
            f"-A {SERVICES} {comment(name + ' cluster IP')} {proto} "
            f"-d {sp.cluster_ip} --dport {sp.port} "
            f"-j {ch.policy(sp.internal_action)}")
    else:
        target, text = _filter_target(sp.internal_action, name)
        out.filter_rules.append(
            f"-A {SERVICES} {comment(text)} {proto} -d {sp.cluster_ip} "
            f"--dport {sp.port} -j {target}")
    for ip in sp.external_ips:
        if sp.has_endpoints:
            out.nat_rules.append(
                f"-A {SERVICES} {comment(name + ' external IP')} {proto} "
                f"-d {ip} --dport {sp.port} -j {ch.external}")
        if not has_ext:
            out.filter_rules.append(
                f"-A {EXTERNAL_SERVICES} {comment(ext_comment)} {proto} "
                f"-d {ip} --dport {sp.port} -j {ext_target}")
    lb_chain = ch.firewall if sp.firewall else ch.external
    for ip in sp.load_balancer_ips:
        if sp.has_endpoints:
            out.nat_rules.append(
                f"-A {SERVICES} {comment(name + ' loadbalancer IP')} {proto} "
                f"-d {ip} --dport {sp.port} -j {lb_chain}")
        if sp.firewall:
            out.filter_rules.append(
                f"-A {PROXY_FIREWALL} "
                f"{comment(f'{name} traffic not accepted by {ch.firewall}')} "
                f"{proto} -d {ip} --dport {sp.port} -j DROP")
    if not has_ext:
        out.filter_rules.extend(
            f"-A {EXTERNAL_SERVICES} {comment(ext_comment)} {proto} "
            f"-d {ip} --dport {sp.port} -j {ext_target}"
            for ip in sp.load_balancer_ips)
    if sp.node_port:
        if sp.has_endpoints:
            out.nat_rules.append(
                f"-A {NODEPORTS} {comment(name)} {proto} "
                f"--dport {sp.node_port} -j {ch.external}")
        if not has_ext:
            out.filter_rules.append(
                f"-A {EXTERNAL_SERVICES} {comment(ext_comment)} "
                f"-m addrtype --dst-type LOCAL {proto} "
                f"--dport {sp.node_port} -j {ext_target}")
    if sp.health_check_node_port:
        out.filter_rules.append(
            f"-A {NODEPORTS} {comment(name + ' health check node port')} "
            f"-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT")


def _render_chains(sp: ServicePortRules, ch: _PortChains, rs: RuleSet,
                   large: bool, out: _Out) -> None:
    """The per-service chains: SVC/SVL masquerade, EXT, FW, SVC/SVL, SEP."""
    name, p = str(sp.name), sp.protocol.lower()
    cidr = rs.node.cluster_cidr
    if sp.internal_action in (TO_CLUSTER, TO_LOCAL):
        match = (f"{comment(name + ' cluster IP')} -m {p} -p {p} "
                 f"-d {sp.cluster_ip} --dport {sp.port}")
        internal = ch.policy(sp.internal_action)
        if rs.options.masquerade_all:
            out.nat_rules.append(f"-A {internal} {match} -j {MARK_MASQ}")
        elif cidr is not None:
            out.nat_rules.append(
                f"-A {internal} {match} ! -s {cidr} -j {MARK_MASQ}")
    if sp.uses_external_chain:
        out.nat_chains.add(ch.external)
        ext = f"-A {ch.external}"
        dests = f"{name} external destinations"
        if not sp.external_policy_local:
            out.nat_rules.append(
                f"{ext} {comment('masquerade traffic for ' + dests)}"
                f" -j {MARK_MASQ}")
        else:
            if cidr is not None:
                out.nat_rules.append(
                    f"{ext} {comment('pod traffic for ' + dests)}"
                    f" -s {cidr} -j {ch.cluster}")
            out.nat_rules.append(
                f"{ext} {comment('masquerade LOCAL traffic for ' + dests)}"
                f" -m addrtype --src-type LOCAL -j {MARK_MASQ}")
            out.nat_rules.append(
                f"{ext} {comment('route LOCAL traffic for ' + dests)}"
                f" -m addrtype --src-type LOCAL -j {ch.cluster}")
        if sp.external_action in (TO_CLUSTER, TO_LOCAL):
            out.nat_rules.append(f"{ext} -j {ch.policy(sp.external_action)}")
    if sp.firewall:
        out.nat_chains.add(ch.firewall)
        fw = f"-A {ch.firewall} {comment(name + ' loadbalancer IP')}"
        out.nat_rules.extend(f"{fw} -s {cidr_} -j {ch.external}"
                             for cidr_ in sp.source_ranges)
        if sp.firewall_allows_node:
            out.nat_rules.extend(f"{fw} -s {ip} -j {ch.external}"
                                 for ip in sp.load_balancer_ips)
        dropped = (f"other traffic to {name} will be dropped by "
                   f"{PROXY_FIREWALL}")
        out.nat_rules.append(f"-A {ch.firewall} {comment(dropped)}")
    eps = sp.endpoints
    if eps.cluster and sp.uses_cluster_endpoints:
        _render_dispatch(sp, ch.cluster, eps.cluster, large, out)
    if eps.local and sp.uses_local_endpoints:
        _render_dispatch(sp, ch.local, eps.local, large, out)
    svc_comment = "" if large else " " + comment(name)
    for ep in eps.reachable:
        sep = _endpoint_chain(sp, ep)
        out.nat_chains.add(sep)
        out.nat_rules.append(
            f"-A {sep}{svc_comment} -s {ep.ip} -j {MARK_MASQ}")
        recent = (f" -m recent --name {sep} --set"
                  if sp.affinity_timeout_s is not None else "")
        out.nat_rules.append(
            f"-A {sep}{svc_comment}{recent} -m {p} -p {p} "
            f"-j DNAT --to-destination {ep.address}")


def _render_dispatch(sp: ServicePortRules, chain: str,
                     endpoints: tuple[Endpoint, ...], large: bool,
                     out: _Out) -> None:
    """kube-proxy's writeServiceToEndpointRules: affinity, then 1/(n-i)."""
    out.nat_chains.add(chain)
    name = str(sp.name)

    def tag(ep: Endpoint) -> str:
        return "" if large else " " + comment(f"{name} -> {ep.address}")

    if sp.affinity_timeout_s is not None:
        for ep in endpoints:
            sep = _endpoint_chain(sp, ep)
            out.nat_rules.append(
                f"-A {chain}{tag(ep)} -m recent --name {sep} --rcheck "
                f"--seconds {sp.affinity_timeout_s} --reap -j {sep}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        stat = (" -m statistic --mode random --probability "
                + probability(n - i) if i < n - 1 else "")
        out.nat_rules.append(
            f"-A {chain}{tag(ep)}{stat} -j {_endpoint_chain(sp, ep)}")


def _jump_lines(table: str, rs: RuleSet, current: IptablesState) -> list[str]:
    jumps = JUMPS + (KUBELET_JUMPS if rs.options.localhost_nodeports else ())
    lines = []
    for t, builtin, target, extra, text in jumps:
        if t == table and not current.has_jump(table, builtin, target):
            match = extra + (comment(text) + " " if text else "")
            lines.append(f"-I {builtin} {match}-j {target}")
    return lines


@dataclass(frozen=True)
class Rendered:
    """iptables-restore text plus every per-service nat chain it keeps.

    active_chains includes chains of services left out of a partial render
    (they stay as they are in the kernel and must not count as stale).
    """

    text: str
    active_chains: frozenset[str]


def render_iptables(ruleset: RuleSet,
                    current: IptablesState = EMPTY_STATE) -> str:
    """Render ruleset as iptables-restore --noflush input (a full sync).

    current is what iptables-save shows now (parse_iptables_save): stale
    per-service chains in it are deleted, present jumps are not re-added.
    """
    return render(ruleset, current).text


def render(ruleset: RuleSet, current: IptablesState = EMPTY_STATE,
           only_services: frozenset[tuple[str, str]] | None = None
           ) -> Rendered:
    """Full render, or partial when only_services is given.

    A partial render (kube-proxy's partial sync) rewrites all top-level
    chains but writes the per-service chains only of the (namespace, name)
    services listed; the other services' chains are left untouched.
    """
    rs, out = ruleset, _Out()
    opts = rs.options
    mark = hex(opts.masquerade_mark)
    large = rs.total_endpoints > opts.large_cluster_endpoints
    out.nat_rules += [
        f"-A {POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {POSTROUTING} -j MARK --xor-mark {mark}",
        f"-A {POSTROUTING} "
        f"{comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE"
        + (" --random-fully" if opts.random_fully else ""),
        f"-A {MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    filter_chains = list(FILTER_CHAINS)
    if opts.localhost_nodeports:
        filter_chains.append(KUBELET_FIREWALL)
        out.filter_rules.append(
            f"-A {KUBELET_FIREWALL} "
            f"{comment('block incoming localnet connections')}"
            " -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack "
            "! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    active: set[str] = set()
    for sp in rs.service_ports:
        chains = _PortChains(sp)
        _render_entries(sp, chains, out)
        if only_services is None or (
                sp.name.namespace, sp.name.service) in only_services:
            _render_chains(sp, chains, rs, large, out)
        else:
            skipped = _Out()
            _render_chains(sp, chains, rs, large, skipped)
            active |= skipped.nat_chains
    active |= out.nat_chains

    stale = sorted(c for c in current.chains_of("nat")
                   if names.is_service_chain(c) and c not in active)
    out.nat_rules.extend(f"-X {c}" for c in stale)
    dst = "-m addrtype --dst-type LOCAL" + (
        "" if opts.localhost_nodeports else " ! -d 127.0.0.0/8")
    out.nat_rules.append(
        f"-A {SERVICES} "
        f"{comment(_NODEPORTS_LAST)}"
        f" {dst} -j {NODEPORTS}")
    if not opts.conntrack_tcp_liberal:
        out.filter_rules.append(
            f"-A {FORWARD} -m conntrack --ctstate INVALID -j DROP")
    out.filter_rules += [
        f"-A {FORWARD} {comment('kubernetes forwarding rules')} "
        f"-m mark --mark {mark}/{mark} -j ACCEPT",
        f"-A {FORWARD} {comment('kubernetes forwarding conntrack rule')} "
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    lines = ["*filter"]
    lines += [f":{c} - [0:0]" for c in filter_chains]
    lines += _jump_lines("filter", rs, current)
    lines += out.filter_rules
    lines += ["COMMIT", "*nat"]
    lines += [f":{c} - [0:0]" for c in NAT_CHAINS]
    lines += [f":{c} - [0:0]" for c in sorted(out.nat_chains) + stale]
    lines += _jump_lines("nat", rs, current)
    lines += out.nat_rules
    lines.append("COMMIT")
    return Rendered("\n".join(lines) + "\n", frozenset(active))
