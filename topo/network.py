"""The running lab: builds a LabPlan into Mininet hosts and owns their lifetime.

`with LabNetwork(spec, paths) as lab:` brings the cluster up and guarantees it goes
away.  Pods come and go while it runs (`add_pod` / `remove_pod`), each a
sandbox (hostname, /etc files, private /tmp) joined to its node by a cali*
veth, whose namespaces a thread holds rather than a process
(topo/pod_sandbox.py); several are made at once.  Every host and every
process started in a host is recorded in the state folder as it appears
(with its namespace's inode and cookie), so a crashed lab can still be
cleaned up by what it wrote down.  Processes enter a host's network, mount
and UTS namespaces (`enter_argv`), so a pod's programs see its hostname.
Once `start_fork_server` has run, programs it preloaded (the node agents)
start as forks of that warm interpreter instead (topo/forkspawn.py), in the
same namespaces, recorded the same way.

A lab with zones and `interZoneLatency` gets netem on the igw's zone
interfaces when the kernel has netem; when it has not, the lab runs without
it and says so (`inter_zone_latency_notice`), nothing fails.
"""
from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import threading
import time

from base.cri import PodSandboxConfig
from base.errors import CommandError, LabError, UsageError
from base.groupcommit import GroupCommit
from topo.cleanup import processes_in_netns, stop_processes
from topo.forkspawn import ForkServer, ForkServerError
from topo.hosts import LabBridge, LabHost, configure, connect, wait_links_up
from topo.iptables_alt import apply_in_host as use_iptables_backend
from topo.netns import enter_argv, netns_cookie, run_in, started_at
from topo.plan import (
    DEFAULT_NAMESPACE,
    HostConfig,
    LabPlan,
    LinkPlan,
    plan_lab,
    plan_pod,
    pod_host_name,
    static_pod_name,
)
from topo.pod_sandbox import NodeSide, PodSandbox
from topo.spec import ClusterSpec
from topo.state import HostRecord, LabPaths, LabState, ProcessRecord, write_state

log = logging.getLogger("svclab.lab")
TEARDOWN_GRACE = 0.5      # seconds between SIGTERM and SIGKILL when the lab stops
STATIC_POD_WORKERS = 4
ENVIRON_FILE = "environ.json"   # a pod's default container environment, for `svclab exec`
LATENCY_FILE = "inter-zone-latency.txt"   # in the igw's files: whether netem applied


class LabNetwork:
    """A cluster of lab hosts built from a spec; a context manager."""

    def __init__(self, spec: ClusterSpec, paths: LabPaths, state: LabState):
        self.spec = spec
        self.paths = paths
        self.state = state
        self.nodes: dict[str, object] = {}      # Mininet host name -> node object
        self._links: dict[str, object] = {}     # pod host name -> its veth (name)
        self._lock = threading.RLock()
        self._pod_seq = 0
        self._pending: dict[tuple[str, str], ipaddress.IPv4Address] = {}   # pods being made
        self._pod_hosts: dict[tuple[str, str], str] = {}   # (namespace, name) -> pod host
        self._pod_ips: dict[str, set[int]] = {}   # node -> its pods' addresses (as integers)
        self._node_hosts: dict[str, str] = {}     # node name -> its host (nodes join, leave)
        self._node_side = NodeSide()
        # Pods come and go by the hundred: their hosts reach the state file in
        # shared writes (base/groupcommit.py), each pod call still returning
        # only once a write holding it is done; writing (~60 ms at a thousand
        # pods) takes at most a fifth of a core.
        self._save_shared = GroupCommit(self._save_copy, spacing=4.0)
        self._write_lock = threading.Lock()     # one state file write at a time
        self._fork_server: ForkServer | None = None

    # --- lifecycle -----------------------------------------------------------

    def __enter__(self) -> LabNetwork:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self.spec.switch != "linuxbridge":
            raise LabError("switch: ovs needs Open vSwitch's kernel module"
                           + (", which this kernel does not have"
                              if not os.path.exists("/sys/module/openvswitch")
                              else "; OVS switching is not implemented yet")
                           + "; use switch: linuxbridge")
        plan = plan_lab(self.spec)
        started = time.monotonic()
        for index, config in enumerate(plan.hosts):
            node = (LabBridge(config.host, dpid=index + 1) if config.kind == "bridge"
                    else LabHost(config.host))
            self.nodes[config.host] = node
            self._record_host(config, node)
            if config.kind == "node":     # before anything in it runs iptables
                use_iptables_backend(node.pid, self.spec.iptables_backend,
                                     self.paths.files, where=config.host)
        for link in plan.links:
            connect(self.nodes, link)
        for bridge in plan.bridges:
            self.nodes[bridge].start([])
        for config in plan.hosts:
            configure(self.nodes[config.host], config, self.paths.files / config.host)
        for bridge in plan.bridges:
            wait_links_up(self.nodes[bridge])
        self._apply_inter_zone_latency(plan)
        log.info("static lab up in %.2f s", time.monotonic() - started)
        static = [(static_pod_name(i, node), "kube-system", node.name,
                   str(node.pod_block.network_address + i + 1))     # as made one by one
                  for node in self.spec.nodes for i in range(node.static_pods)]
        # A few at once: each waits on the kernel (namespaces, `ip`) part of its time.
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(STATIC_POD_WORKERS) as pool:
            for done in [pool.submit(self.add_pod, *pod) for pod in static]:
                done.result()
        self._save()
        if static:
            log.info("%d static pods up in %.2f s", len(static), time.monotonic() - started)

    def stop(self) -> None:
        """Stop every process in the lab's namespaces, then the hosts."""
        with self._lock:
            recorded = [p.proc for p in self.state.processes]
            # The whole lab is going: no grace periods (a DNS pod's lameduck
            # would hold the teardown for seconds).
            stop_processes(recorded + processes_in_netns(self._all_netns(),
                                                         exclude=self._shell_pids(),
                                                         cookies=self.state.cookies()),
                           timeout=TEARDOWN_GRACE)
            for name in list(self.nodes):
                self._terminate(name)
            self._node_side.close()
            self.state.processes.clear()
            if self._fork_server is not None:
                self._fork_server.close()

    # --- pods ----------------------------------------------------------------

    def add_pod(self, name: str, namespace: str, node_name: str,
                ip: str | None = None, command: list[str] | None = None,
                sandbox: PodSandboxConfig | None = None) -> HostRecord:
        """Create a pod host on a node, wired like Calico; optionally run a command.

        The pod's namespaces are held by a thread (topo/pod_sandbox.py), not a
        shell; only the name and address are chosen under the lab's lock, so
        several kubelets set their pods up at once."""
        with self._lock:
            if self._find_pod(name, namespace) or (namespace, name) in self._pending:
                raise UsageError(f"pod {namespace}/{name} already exists")
            node_index = self._node_index(node_name)
            address = self._pick_pod_ip(node_index, ip)
            self._pod_seq += 1
            host_name = pod_host_name(self._pod_seq)
            self._pending[(namespace, name)] = address
        try:            # outside the lock: kubelets queue for it by the hundred
            plan = plan_pod(self.spec, node_index, host_name, name, namespace, address, sandbox)
            node = self.nodes[plan.link.host1]
            host = PodSandbox(plan.pod, self.paths.files / plan.pod.host, node.pid,
                              plan.link.intf1)
        except BaseException:
            with self._lock:
                del self._pending[(namespace, name)]
            raise
        try:
            try:
                host.start()
            finally:
                with self._lock:
                    del self._pending[(namespace, name)]
                    if host.pid:
                        self.nodes[plan.pod.host] = host
                        self._links[plan.pod.host] = plan.link.intf1
                        record = self._record_host(plan.pod, host, save=False)
            self._node_side.configure(node.pid, node_name, plan.node_batch, plan.node_sysctls)
            host.wait_links_up()
            if command:
                self.spawn(plan.pod.host, command, role="container")
        except BaseException:
            with self._lock:
                self._remove_host(plan.pod.host)
            raise
        self._save_shared()
        return record

    def remove_pod(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Forget the pod under the lab's lock, then stop what is in it, remove its
        veth and end its sandbox outside the lock, so pods of every node go at once."""
        with self._lock:
            record = self._find_pod(name, namespace)
            if record is None:
                raise UsageError(f"pod {namespace}/{name} not found")
            sandboxed = isinstance(self._links.get(record.host), str)
            if not sandboxed:
                self._remove_host(record.host)
            else:
                mine = [p.proc for p in self.state.processes if p.host == record.host]
                self.state.processes = [p for p in self.state.processes
                                        if p.host != record.host]
                veth = self._links.pop(record.host)
                node = self.nodes.get(self._node_hosts.get(record.node, ""))
                sandbox = self.nodes.pop(record.host, None)
                self._terminate(record.host)
                cookie = self.state.netns_cookies.get(str(record.netns))
                # Name and address stay taken until the veth and its /32 route are gone.
                self._pending[(namespace, name)] = ipaddress.IPv4Address(record.addresses[0])
        self._save_shared()
        if not sandboxed:
            return
        try:
            cookies = {record.netns: cookie} if cookie is not None else None
            stop_processes(mine + processes_in_netns({record.netns}, cookies=cookies))
            if node is not None:
                self._node_side.delete_link(node.pid, record.node, veth)
            if sandbox is not None:
                sandbox.terminate()
            if not processes_in_netns({record.netns}, cookies=cookies):
                with self._lock:     # gone: the kernel may give its inode to anyone now
                    self.state.netns_seen = [n for n in self.state.netns_seen
                                             if n != record.netns]
                    self.state.netns_cookies.pop(str(record.netns), None)
                self._save_shared()
            shutil.rmtree(self.paths.files / record.host, ignore_errors=True)
        finally:
            with self._lock:
                self._pending.pop((namespace, name), None)

    def node_host(self, node_name: str) -> str:
        """The host of a node by its Kubernetes name (nodes join and leave)."""
        # An index, not a scan of state.hosts: kubelets call this while other
        # threads add pods, and a dict must not change size under its iteration.
        host = self._node_hosts.get(node_name)
        if host is not None:
            return host
        raise UsageError(f"node: no node {node_name!r}; nodes: "
                         + ", ".join(n.name for n in self.spec.nodes))

    # --- nodes joining and leaving (topo/node_join.py) -------------------------

    def add_node_host(self, config: HostConfig, bridge: str) -> HostRecord:
        """A node host joined to a running VPC bridge and configured."""
        with self._lock:
            if config.host in self.nodes:
                raise LabError(f"host {config.host} already exists")
            host = LabHost(config.host)
            self.nodes[config.host] = host
            record = self._record_host(config, host)
            try:
                use_iptables_backend(host.pid, self.spec.iptables_backend,
                                     self.paths.files, where=config.host)
                switch = self.nodes[bridge]
                taken = {intf.name for intf in switch.intfList()}
                port = next(f"{bridge}-eth{i}" for i in range(1, 10_000)
                            if f"{bridge}-eth{i}" not in taken)
                self._links[config.host] = connect(self.nodes,
                                                   LinkPlan(config.host, "eth0", bridge, port))
                run_in(switch.pid, ["sh", "-ec", f"ip link set dev {port} master {bridge}\n"
                                    f"ip link set dev {port} up"], where=bridge)
                configure(host, config, self.paths.files / config.host)
                wait_links_up(host)
                wait_links_up(switch)
            except BaseException:
                self._remove_host(config.host)
                raise
            self._save()
            return record

    def remove_host(self, host: str) -> None:
        """Stop everything in a host and remove it (a node leaving the lab)."""
        with self._lock:
            self._remove_host(host)
            self._save()

    def pods(self) -> list[HostRecord]:
        with self._lock:
            return [r for r in self.state.hosts.values() if r.kind == "pod"]

    def node_records(self) -> list[HostRecord]:
        """The nodes' records, taken under the lab's lock (kubelets add pods meanwhile)."""
        with self._lock:
            return [self.state.hosts[host] for host in self._node_hosts.values()]

    def find_pod(self, name: str, namespace: str) -> HostRecord | None:
        """A pod's host record by its Kubernetes name, or None.  Without the lab's
        lock: two dict lookups are atomic, and every kubelet asks before each
        pod it starts."""
        return self._find_pod(name, namespace)

    # --- processes -------------------------------------------------------------

    def start_fork_server(self, host: str, modules: list[str]) -> None:
        """From now on, start `python -m M` programs of these modules as forks of one
        interpreter that has imported them, run in `host` (agents/forkserver.py)."""
        server = ForkServer(modules)
        try:
            self.spawn(host, server.argv(), role="forkserver", pass_fds=(server.pass_fd,))
        except BaseException:
            server.close()
            raise
        server.started()
        self._fork_server = server

    def spawn(self, host: str, argv: list[str], role: str = "", *, save: bool = True,
              **popen_args) -> ProcessRecord:
        """Start argv inside a host, detached, with its output in the lab log.
        save=False: recorded in memory only, for a caller starting many at once
        that then calls save_state() (a crashed lab's cleanup finds the
        processes of its namespaces anyway)."""
        server = self._fork_server
        if server is not None and server.serves(argv):
            try:
                return self._spawn_forked(server, host, argv, role, save)
            except ForkServerError as err:
                log.warning("%s; %s starts the usual way from now on", err, role or argv[2])
        with open(self.paths.log, "ab") as logfile:
            _, record = self.popen_in(host, argv, role=role, save=save, stdin=subprocess.DEVNULL,
                                      stdout=logfile, stderr=subprocess.STDOUT, **popen_args)
        return record

    def _spawn_forked(self, server: ForkServer, host: str, argv: list[str], role: str,
                      save: bool) -> ProcessRecord:
        with self._lock:
            node = self.nodes.get(host)
            if node is None:
                raise LabError(f"host {host} is gone")
            target = node.pid
        pid, start = server.spawn(target, argv, str(self.paths.log))
        entry = ProcessRecord(host, pid, start, list(argv), role)
        with self._lock:
            self.state.processes.append(entry)
            if save:
                self._save()
        return entry

    def popen_in(self, host: str, argv: list[str], *, role: str = "", record: bool = True,
                 save: bool = True, new_session: bool = True,
                 **popen_args) -> tuple[subprocess.Popen, ProcessRecord | None]:
        """Start argv in a host's namespaces; the caller owns the Popen (and
        reaps it).  record: write it into the state folder (not for short
        commands: a crashed lab's cleanup finds every process of its
        namespaces anyway).  new_session: the process leads a session and a
        process group of its own (False when argv makes one itself)."""
        with self._lock:
            node = self.nodes.get(host)
            if node is None:
                raise LabError(f"host {host} is gone")
            prefix = enter_argv(node.pid)
        proc = subprocess.Popen([*prefix, *argv], close_fds=True,
                                start_new_session=new_session, **popen_args)
        if not record:
            return proc, None
        entry = ProcessRecord(host, proc.pid, started_at(proc.pid), list(argv), role)
        with self._lock:
            self.state.processes.append(entry)
            if save:
                self._save()
        return proc, entry

    def record_environ(self, host: str, env: dict[str, str]) -> None:
        """Remember a pod's default container environment for `svclab exec`."""
        folder = self.paths.files / host
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ENVIRON_FILE).write_text(json.dumps(env))

    def forget_process(self, record: ProcessRecord) -> None:
        """Drop a process that has exited from the records."""
        with self._lock:
            self.state.processes = [p for p in self.state.processes if p is not record]
            self._save()

    # --- internals -----------------------------------------------------------

    def _apply_inter_zone_latency(self, plan: LabPlan) -> None:
        """netem on the igw's zone interfaces; the first one tells whether this
        kernel has netem at all (a missing qdisc kind fails there, harmlessly)."""
        if not plan.igw_tc:
            return
        igw = self.nodes["igw"].pid
        first, *rest = plan.igw_tc
        try:
            run_in(igw, ["tc", *first.split()], where="igw")
        except CommandError as err:
            reason = (err.stderr or err.stdout).strip().splitlines()
            notice = ("inter-zone latency not emulated: this kernel has no netem ("
                      + (reason[-1] if reason else f"tc exit {err.returncode}") + ")")
            log.warning("%s", notice)
        else:
            for line in rest:
                run_in(igw, ["tc", *line.split()], where="igw")
            notice = (f"inter-zone latency emulated: netem on the igw's "
                      f"{len(plan.igw_tc)} zone interfaces")
        (self.paths.files / "igw" / LATENCY_FILE).write_text(notice + "\n")

    def _record_host(self, config: HostConfig, node, save: bool = True) -> HostRecord:
        record = HostRecord(host=config.host, kind=config.kind, name=config.name,
                            pid=node.pid, start=node.start_time, netns=node.netns,
                            namespace=config.namespace, node=config.node,
                            addresses=list(config.addresses))
        self.state.hosts[config.host] = record
        if record.kind == "pod":
            self._pod_hosts[(record.namespace, record.name)] = config.host
            self._pod_ips.setdefault(record.node, set()).update(_ints(record.addresses))
        elif record.kind == "node":
            self._node_hosts[record.name] = record.host
        if record.netns not in self.state.netns_seen:
            self.state.netns_seen.append(record.netns)
            cookie = getattr(node, "netns_cookie", None) or netns_cookie(node.pid)
            if cookie is not None:
                self.state.netns_cookies[str(record.netns)] = cookie
        if save:
            self._save()
        return record

    def _remove_host(self, host: str) -> None:
        record = self.state.hosts.get(host)
        if record is not None:
            mine = [p for p in self.state.processes if p.host == host]
            stop_processes([p.proc for p in mine] + processes_in_netns(
                {record.netns}, exclude={record.pid}, cookies=self.state.cookies()))
            self.state.processes = [p for p in self.state.processes if p.host != host]
        link = self._links.pop(host, None)
        if isinstance(link, str):
            node = self.nodes.get(self._node_hosts.get(record.node, "")) if record else None
            if node is not None:
                self._node_side.delete_link(node.pid, record.node, link)
        elif link is not None:
            link.delete()
        self._terminate(host)
        if record is not None and not processes_in_netns({record.netns}, exclude={record.pid},
                                                         cookies=self.state.cookies()):
            # The namespace died with its last process, and the kernel hands
            # its inode to the next namespace anyone makes (another lab's pod
            # too): stop() and `clean` must not kill by it any more.
            self.state.netns_seen = [n for n in self.state.netns_seen if n != record.netns]
            self.state.netns_cookies.pop(str(record.netns), None)
        shutil.rmtree(self.paths.files / host, ignore_errors=True)

    def _terminate(self, host: str) -> None:
        node = self.nodes.pop(host, None)
        record = self.state.hosts.pop(host, None)
        if record is not None and record.kind == "pod":
            self._pod_hosts.pop((record.namespace, record.name), None)
            self._pod_ips.get(record.node, set()).difference_update(_ints(record.addresses))
        elif record is not None and record.kind == "node":
            self._node_hosts.pop(record.name, None)
        if node is None:
            return
        node.terminate()

    def _find_pod(self, name: str, namespace: str) -> HostRecord | None:
        return self.state.hosts.get(self._pod_hosts.get((namespace, name), ""))

    def _node_index(self, node_name: str) -> int:
        for index, node in enumerate(self.spec.nodes):
            if node.name == node_name:
                return index
        raise UsageError(f"node: no node {node_name!r}; nodes: "
                         + ", ".join(n.name for n in self.spec.nodes))

    def _pick_pod_ip(self, node_index: int, wanted: str | None) -> ipaddress.IPv4Address:
        block = self.spec.nodes[node_index].pod_block
        # Integers kept as pods come and go: collecting and parsing every pod's
        # address for each new pod was O(pods), seconds of CPU at a thousand.
        used = self._pod_ips.get(self.spec.nodes[node_index].name, set())
        used = used | {int(a) for a in self._pending.values()}
        if wanted is not None:
            address = ipaddress.IPv4Address(wanted)
            if address not in block or address in (block.network_address,
                                                   block.broadcast_address):
                raise UsageError(f"ip: {address} is not a pod address in {block}")
            if int(address) in used:
                raise UsageError(f"ip: {address} is already used by another pod")
            return address
        first = int(block.network_address) + 1
        for value in range(first, first + block.num_addresses - 2):
            if value not in used:
                return ipaddress.IPv4Address(value)
        raise LabError(f"pod block {block} of node "
                       f"{self.spec.nodes[node_index].name} is full")

    def _shell_pids(self) -> set[int]:
        return {r.pid for r in self.state.hosts.values()}

    def _all_netns(self) -> set[int]:
        return set(self.state.netns_seen)

    def _save(self) -> None:
        """Write the state file now (the caller holds the lab's lock)."""
        with self._write_lock:
            write_state(self.paths, self.state)

    def _save_copy(self) -> None:
        """Write the state file from a copy, without the lab's lock.  Hundreds of
        pod workers queue for that lock while pods start, and a lock is not
        fair: the writer waited up to 6.6 s for it at a thousand pods while
        every pod it would have recorded waited for the write.  Each copy of a
        container is one step of the interpreter (atomic); the copy may hold a
        change another thread is half way through, whose own write follows.
        Copies are taken and written under one lock, so the file only moves
        forward."""
        with self._write_lock:
            write_state(self.paths, self.state.snapshot())

    def save_state(self) -> None:
        """Write the state file now (after spawns made with save=False)."""
        self._save_copy()



def _ints(addresses) -> set[int]:
    return {int(ipaddress.IPv4Address(a)) for a in addresses}


def inter_zone_latency_notice(paths: LabPaths) -> str | None:
    """What the lab said about its inter-zone latency (None: none was asked)."""
    try:
        return (paths.files / "igw" / LATENCY_FILE).read_text().strip()
    except FileNotFoundError:
        return None


def host_exec_argv(paths: LabPaths, record: HostRecord, command: list[str]) -> list[str]:
    """What `svclab exec HOST -- COMMAND` runs: COMMAND in the host's namespaces;
    in a pod also with its default container's environment, as `kubectl exec`."""
    argv = enter_argv(record.pid)
    if record.kind == "pod":
        try:
            env = json.loads((paths.files / record.host / ENVIRON_FILE).read_text())
        except FileNotFoundError:
            env = None
        if env is not None:
            argv += ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return argv + list(command)
