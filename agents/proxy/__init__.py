"""Node proxy agent (kube-proxy's job): Service rules in iptables or nftables mode.

Data flows one way, the same in both modes: Kubernetes JSON -> model
(Service, EndpointSlice, NodeInfo) -> compute_ruleset (pure decisions, no
syntax) -> a renderer (pure text: iptables-restore input, or nft -f
transactions) -> a backend (the only part that touches the kernel).  The
tracers read the rendered (or live) text back and walk packets through it,
so tests check what is really applied.

    model              the input: Services, EndpointSlices, this node's facts
    endpoints          endpoints per service port, kube-proxy's categorisation
    topology           which endpoints topology hints leave this node, and why
    ruleset            compute_ruleset: what each service port does (pure)
    changes            what changed between syncs; stale UDP conntrack flows
    names              kube-proxy's hashed iptables chain names
    iptables_render    a RuleSet as one iptables-restore transaction
    iptables_state     what of ours is installed, read from iptables-save
    iptables_backend   applies iptables-restore text; rolls back on failure
    nft_plan           kube-proxy's nftables layout of a RuleSet, as data
    nft_render         nft -f transactions: full, partial, cold start
    nft_backend        applies nft transactions; full and partial syncs
    trace_core         the packet walk both tracers share: hooks, branches,
                       chain path, outcomes (Packet, Outcome, PacketTracer)
    iptables_tracer    the walk over iptables-restore / iptables-save text
    nft_rule           one nft rule parsed into typed statements
    nft_table          table ip kube-proxy in memory, built from nft -f text
    nft_tracer         the walk over nft text (applied to an nft_table)
    agent, runner      the agent process: informers, sync loop, its timing
    __main__           `python -m agents.proxy`: the agent, inside a lab node
    health             healthz, metrics and health-check NodePorts over HTTP
    fixtures           API-shaped Service and EndpointSlice JSON for tests
    errors             ProxyError and its kinds
"""

from agents.proxy.changes import ChangeTracker, StaleUDPFlow, stale_udp_flows
from agents.proxy.endpoints import (
    Endpoint,
    EndpointCategories,
    categorize_endpoints,
    endpoints_by_service_port,
)
from agents.proxy.errors import (
    IptablesRestoreError,
    ModelError,
    ProxyCommandError,
    ProxyError,
    TracerError,
)
from agents.proxy.iptables_backend import IptablesBackend, SyncReport
from agents.proxy.iptables_render import Rendered, render, render_iptables
from agents.proxy.iptables_state import IptablesState, parse_iptables_save, render_cleanup
from agents.proxy.iptables_tracer import Tracer, trace
from agents.proxy.model import (
    EndpointSlice,
    NodeInfo,
    ProxyOptions,
    Service,
    endpoint_slice_from_k8s,
    service_from_k8s,
)
from agents.proxy.nft_tracer import NftTracer
from agents.proxy.ruleset import RuleSet, ServicePortRules, compute_ruleset
from agents.proxy.topology import Topology, choose_topology
from agents.proxy.trace_core import Outcome, TracedBranch

__all__ = [
    "ChangeTracker", "IptablesBackend", "NftTracer", "Outcome", "Rendered", "StaleUDPFlow",
    "SyncReport", "TracedBranch", "Tracer", "render", "stale_udp_flows", "trace",
    "ProxyCommandError", "Endpoint", "EndpointCategories", "EndpointSlice",
    "IptablesRestoreError", "IptablesState", "ModelError", "NodeInfo",
    "ProxyError", "ProxyOptions", "RuleSet", "Service", "ServicePortRules",
    "Topology", "TracerError", "categorize_endpoints", "choose_topology", "compute_ruleset",
    "endpoint_slice_from_k8s", "endpoints_by_service_port",
    "parse_iptables_save", "render_cleanup", "render_iptables",
    "service_from_k8s",
]
