"""Node proxy agent (kube-proxy equivalent): pure rule computation, renderers,
the iptables backend and a packet tracer for tests.

Data flows one way: Kubernetes JSON -> model (Service, EndpointSlice,
NodeInfo) -> compute_ruleset (pure) -> render_iptables (pure text) ->
IptablesBackend (the only part that touches the kernel).
"""

from agents.proxy.changes import ChangeTracker, StaleUDPFlow, stale_udp_flows
from agents.proxy.endpoints import (Endpoint, EndpointCategories,
                                    categorize_endpoints,
                                    endpoints_by_service_port)
from agents.proxy.errors import (CommandError, IptablesRestoreError,
                                 ModelError, ProxyError, TracerError)
from agents.proxy.iptables_backend import IptablesBackend, SyncReport
from agents.proxy.iptables_render import Rendered, render, render_iptables
from agents.proxy.iptables_state import (IptablesState, parse_iptables_save,
                                         render_cleanup)
from agents.proxy.model import (EndpointSlice, NodeInfo, ProxyOptions,
                                Service, endpoint_slice_from_k8s,
                                service_from_k8s)
from agents.proxy.ruleset import RuleSet, ServicePortRules, compute_ruleset
from agents.proxy.tracer import Outcome, Tracer, trace

__all__ = [
    "ChangeTracker", "IptablesBackend", "Outcome", "Rendered", "StaleUDPFlow",
    "SyncReport", "Tracer", "render", "stale_udp_flows", "trace",
    "CommandError", "Endpoint", "EndpointCategories", "EndpointSlice",
    "IptablesRestoreError", "IptablesState", "ModelError", "NodeInfo",
    "ProxyError", "ProxyOptions", "RuleSet", "Service", "ServicePortRules",
    "TracerError", "categorize_endpoints", "compute_ruleset",
    "endpoint_slice_from_k8s", "endpoints_by_service_port",
    "parse_iptables_save", "render_cleanup", "render_iptables",
    "service_from_k8s",
]
