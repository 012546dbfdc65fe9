"""svclab's built-in pod workload server.

Pods whose container image has no runnable command run this server instead.
It listens on every declared containerPort (TCP and UDP) and answers with the
pod's name, the pod's IP and the client address it saw, so that probes can
tell which endpoint answered a Service and whether the source was translated.
"""
from agents.workload.config import (
                                    PortSpec,
                                    PortSpecError,
                                    WorkloadConfig,
                                    WorkloadConfigError,
                                    WorkloadError,
                                    parse_port_spec,
)
from agents.workload.server import WorkloadServer

__all__ = ["PortSpec", "PortSpecError", "WorkloadConfig", "WorkloadConfigError", "WorkloadError",
           "WorkloadServer", "parse_port_spec"]
