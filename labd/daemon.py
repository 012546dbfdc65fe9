"""The lab daemon: owns one lab's Mininet network for its whole life.

`svclab up` validates the spec, writes it into the state folder and starts
`python -m labd.daemon NAME` detached.  The daemon builds the lab (hosts and
links), starts the API server with the controllers and the scheduler in a
process of their own (labd/apiproc.py), the per-node proxy and policy
agents, the outside world, the ELB and its cloud controller, the kubelets
(with their streaming endpoint for the API server) and cluster DNS; marks
the state ready once all of them answer;
serves the control socket; and on SIGTERM (or a `stop` request) tears
everything down in reverse order and removes its state folder.  If it is
killed, what it recorded lets `svclab clean` finish the job.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack

from mininet.log import setLogLevel

from base.kube.client import KubeClient
from base.signals import Signals
from controlplane.cloud.alb_controller import ensure_alb_ingress_class
from controlplane.control_plane import ControlPlane
from controlplane.identities import AWS_LOAD_BALANCER_CONTROLLER, CLOUD_CONTROLLER_MANAGER
from controlplane.kubelet.dns import KubeletDns
from labd.addons import (
    coredns_stand_in,
    install_cluster_dns,
    wait_for_cluster_dns,
)
from labd.apiproc import ApiProcess, streams_socket
from labd.components import (
    kubelet_clients,
    start_agent_fork_server,
    start_outside_world,
    start_policy_agents,
    start_proxy_agents,
    wait_for_outside_dns,
    wait_for_policy_agents,
)
from labd.control import ControlServer, record_to_json
from labd.credentials import identity_client
from labd.elb import alb_controller_for, cloud_controller_for, start_elb
from labd.nodes import NodeMembership
from labd.podstreams import PodStreamServer
from labd.supervisor import Supervisor
from topo.apihost import listener_in_netns, loopback_listener
from topo.labroot import remove_lab_root
from topo.netns import ProcRef
from topo.network import LabNetwork
from topo.plan import CLUSTER_DOMAIN, cluster_dns_ip, vpc_dns
from topo.pod_runtime import LabPodRuntime
from topo.spec import load_spec
from topo.state import LabPaths, LabState, write_state

log = logging.getLogger("svclab.daemon")

# A teardown still running after this long writes every thread's stack to the
# log (`svclab down` gives up at 60 s and prints the log's tail).
STALLED_STOP_SECONDS = 30.0


def run(name: str) -> int:
    paths = LabPaths(name)
    spec = load_spec(paths.spec)
    me = ProcRef.of(os.getpid())
    state = LabState(name=name, daemon_pid=me.pid, daemon_start=me.start,
                     proxy_mode=spec.proxy_mode)
    write_state(paths, state)
    stopping = threading.Event()        # the control socket's `stop`
    signals = Signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    with ExitStack() as lab_life:
        lab = lab_life.enter_context(_Timed("network", LabNetwork(spec, paths, state)))
        api = lab_life.enter_context(_Timed("api server", ApiProcess(
            paths, api_listeners(lab, spec, state))))
        start_agent_fork_server(spec, lab)      # imports while the API server starts
        supervisor = lab_life.enter_context(_Timed("supervisor", Supervisor(lab)))
        supervisor.on_change = lambda: _save_agents(state, lab, supervisor)
        record_api(api, lab, state, paths)
        # Start everything, then wait for everything: the waits overlap.
        start_proxy_agents(spec, lab, api, supervisor)
        start_outside_world(spec, lab, supervisor)
        elb = start_elb(spec, lab, supervisor, api)
        admin = KubeClient.from_kubeconfig(str(paths.kubeconfig))
        coredns = coredns_stand_in(spec)    # in-cluster: its pod's service-account token
        runtime = LabPodRuntime(lab)
        # exec, attach, port-forward and logs, as the API server's process asks
        lab_life.enter_context(PodStreamServer(runtime, streams_socket(paths)))
        # The kubelets, each as its node (controlplane/identities.py), RBAC-bound; the
        # controllers and the scheduler run beside the API server (labd/apiproc.py).
        control_plane = lab_life.enter_context(_Timed("kubelets", ControlPlane(
            admin, runtime, [n.name for n in spec.nodes], controllers=False,
            builtin_images={"coredns": coredns},
            node_clients=kubelet_clients(spec, lab, api),
            # kubelets report 4x per grace period
            heartbeat_seconds=min(5.0, spec.node_monitor_grace_period / 4),
            # Leases and Job back-off on the lab's clock
            time_factor=spec.time_factor,
            # clusterDNS, and each node's resolver from the VPC's DHCP
            kubelet_dns=KubeletDns((cluster_dns_ip(spec),), CLUSTER_DOMAIN, vpc_dns(spec)))))
        cloud = lab_life.enter_context(_Timed("cloud controller", cloud_controller_for(
            spec, lab, elb, identity_client(api, CLOUD_CONTROLLER_MANAGER))))
        lab_life.enter_context(_Timed("alb controller", alb_controller_for(
            spec, lab, elb, identity_client(api, AWS_LOAD_BALANCER_CONTROLLER))))
        install_cluster_dns(admin, spec)
        ensure_alb_ingress_class(admin)     # the IngressClass `alb`, as the Helm chart installs
        nodes = NodeMembership(spec, lab, api, admin, supervisor, control_plane,
                               cloud.set_static_dns)
        lab_life.enter_context(_Timed("control socket", ControlServer(
            paths.control, _control_handlers(lab, state, stopping, nodes))))
        start_policy_agents(spec, lab, api, supervisor)   # each after its node's proxy syncs
        wait_for_outside_dns(spec, lab)
        wait_for_cluster_dns(admin)
        wait_for_policy_agents(lab)
        state.ready = True
        write_state(paths, state)
        log.info("lab %s ready: %d hosts", name, len(state.hosts))
        while not (signals.wait(0.05) or stopping.is_set()):
            pass
        log.info("lab %s stopping", name)
        faulthandler.dump_traceback_later(STALLED_STOP_SECONDS, file=sys.stderr)
        state.ready = False
        write_state(paths, state)
    faulthandler.cancel_dump_traceback_later()
    remove_lab_root(paths)
    return 0


class _Timed:
    """A component of the lab whose stop is logged with how long it took."""

    def __init__(self, what: str, component):
        self.what = what
        self.component = component

    def __enter__(self):
        return self.component.__enter__()

    def __exit__(self, *exc):
        started = time.monotonic()
        try:
            return self.component.__exit__(*exc)
        finally:
            log.info("stopped the %s in %.2f s", self.what, time.monotonic() - started)


def _control_handlers(lab: LabNetwork, state: LabState, stopping: threading.Event,
                      nodes: NodeMembership) -> dict:
    return {
        "status": lambda: state.to_json(),
        "add_node": nodes.add,
        "remove_node": nodes.remove,
        "add_pod": lambda name, namespace, node, ip=None, command=None:
            record_to_json(lab.add_pod(name, namespace, node, ip, command)),
        "remove_pod": lambda name, namespace: lab.remove_pod(name, namespace),
        "stop": stopping.set,
    }


def api_listeners(lab: LabNetwork, spec, state: LabState) -> list:
    """The API server listens on the host's loopback (kubectl) and on the control
    plane's :6443; the daemon opens both (the second inside that node)."""
    control_node = next(lab.nodes[r.host] for r in state.hosts.values()
                        if r.kind == "node" and spec.node(r.name).is_control_plane)
    return [loopback_listener(), listener_in_netns(control_node.pid)]


def record_api(api: ApiProcess, lab: LabNetwork, state: LabState, paths: LabPaths) -> None:
    """Its process (for `svclab clean`), its address and the admin's kubeconfig,
    written through the lab's own state writes."""
    state.apiserver_pid, state.apiserver_start = api.pid, api.start_time
    state.api_url = f"https://{api.addresses[0]}"
    state.kubeconfig = str(api.write_kubeconfig(paths.kubeconfig, state.api_url))
    lab.save_state()


def _save_agents(state: LabState, lab: LabNetwork, supervisor: Supervisor) -> None:
    state.agents = supervisor.summary()
    lab.save_state()        # under the lab's lock, as its own writes


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Mininet warns about the host's br_netfilter; our bridges live in their
    # own namespaces, where the plan turns bridge-nf-call-* off.
    setLogLevel("error")
    if len(sys.argv) != 2:
        print("usage: python -m labd.daemon NAME", file=sys.stderr)
        return 2
    try:
        return run(sys.argv[1])
    except Exception:
        log.exception("lab daemon failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
