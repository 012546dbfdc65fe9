"""Soak: a lab under continuous change, probed all along; then count what leaked.

A default lab (the node grace period 6 s in quick mode so a short cut
converges) gets stable services first -- `stable-web` (one pod on the
control plane, one on ip-172-31-0-11, also a NodePort) and `stable-spread`
(one pod on each worker) -- probed the whole time: from a pod on
ip-172-31-0-11 to both ClusterIPs and from the internet client to
stable-web's NodePort on that node's public IP (experiments/soak_probes.py).
Then, for the churn time (quick ~45 s, default 30 min; `svclab experiment
run soak --duration S`),
every tick a seeded random step (experiments/soak_schedule.py): Deployments
with Services (TCP and UDP ports) created, scaled and deleted in two
namespaces, their pods deleted, NetworkPolicies added and removed, requests
sent to churn Services; and on a schedule, per cycle: a stable pod deleted
gracefully, the proxy agent of the probing node and the policy agent of
ip-172-31-0-12 killed (the lab's supervisor restarts them), and
ip-172-31-0-12 cut off the VPC (its switch port down) and restored.

Afterwards every churn object is deleted and, once the lab has settled
(checks repeated until clean or the settle time is up), it counts leftovers
(experiments/soak_checks.py, soak_monitor.py): rules and chains against
what the current objects need, conntrack entries to deleted Services and
pods, pod hosts, cali* interfaces, namespaces and processes against the
pods, API objects and API connections against the start, and the memory of
the daemon and agents (start, peak, end).  Probe failures outside the
windows of the faults that can explain them are "unexplained" (the windows
are defined in soak_schedule.py).  docs/soak.md has the details.

Writes soak_probes.csv, soak_events.csv, soak_samples.csv, soak_result.json,
soak_timeline.png, soak_memory.png.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import yaml

from base.errors import CommandError, LabError
from base.kube.client import ApiError
from experiments import cluster_ops as kube
from experiments import soak_checks, soak_monitor, soak_report
from experiments.framework import Context, Summary
from experiments.soak_probes import ChurnTraffic, ProbeTarget, StableProbes
from experiments.soak_schedule import (
    CHURN_NAMESPACES,
    Action,
    Limits,
    StableTarget,
    World,
    apply_to_world,
    churn_deployment,
    churn_service,
    classify,
    fault_schedule,
    namespace_of,
    next_action,
    policy,
    window,
)
from topo.netns import run_in
from topo.spec import default_spec_path
from topo.state import LabPaths, read_state

NAME = "soak"
TITLE = "Soak: continuous change under probes, then every kind of leftover counted"
STABLE = "stable"
PROBER, CALLER = "prober", "churn-caller"
CUT_NODE = kube.N12
HEALTH_PORTS = {"proxy": 10256, "policy": 9099}
TARGETS = (StableTarget("stable-web", PROBER, kube.N11, frozenset({kube.N10, kube.N11})),
           StableTarget("stable-spread", PROBER, kube.N11, frozenset({kube.N11, kube.N12})),
           StableTarget("stable-web-nodeport", "client", kube.N11,
                        frozenset({kube.N10, kube.N11})))
PLACEMENT = {"stable-web": (kube.N10, kube.N11), "stable-spread": (kube.N11, kube.N12)}


def plan(quick: bool, duration: float | None = None) -> dict:
    return {"churn_s": float(duration or (45 if quick else 1800)),
            "tick_s": 0.5 if quick else 1.0, "rate": 10.0, "probe_timeout": 1.0,
            "node_grace_s": 6 if quick else 40, "cut_s": 10.0 if quick else 60.0,
            "limits": Limits(5, 3, 3) if quick else Limits(8, 4, 4),
            "sample_s": 1.0 if quick else 5.0, "settle_s": 30.0 if quick else 90.0}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick, ctx.duration)
    data = yaml.safe_load(default_spec_path().read_text())
    data["nodeMonitorGracePeriod"] = settings["node_grace_s"]
    spec_file = ctx.out / "soak-cluster.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with ctx.lab(spec_file=str(spec_file)) as lab:
        mode = read_state(LabPaths(lab.name)).proxy_mode
        result = Soak(lab, settings, ctx.rng, mode).run()
    return soak_report.write(ctx, TITLE, settings, result)


# --- the lab side ------------------------------------------------------------------

def setup_stable(lab) -> dict[str, str]:
    """Namespaces, the stable services, the prober and the churn caller; their IPs."""
    for ns in (STABLE, *CHURN_NAMESPACES):
        lab.api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}})
    for app, nodes in PLACEMENT.items():
        for i, node in enumerate(nodes):
            manifest = kube.deployment(f"{app}-{i}", 1, {"app": app, "part": str(i)},
                                       node=node, grace_seconds=5)
            lab.api.create("deployments", manifest, namespace=STABLE)
        lab.api.create("services", kube.service(
            app, {"app": app}, type="NodePort" if app == "stable-web" else "ClusterIP"),
            namespace=STABLE)
    for pod in (PROBER, CALLER):
        lab.api.create("pods", kube.pod(pod, kube.N11), namespace=STABLE)
        kube.running_pod(lab, pod, STABLE)
    for app in PLACEMENT:
        kube.wait_for(f"2 ready endpoints of {app}", lambda app=app: len(
            kube.ready_endpoints(lab, app, STABLE)) == 2, timeout=60)
    warm_up(lab)
    web = lab.api.get("services", "stable-web", STABLE)["spec"]
    return {"stable-web": web["clusterIP"], "nodeport": str(web["ports"][0]["nodePort"]),
            "stable-spread": lab.api.get("services", "stable-spread", STABLE)["spec"][
                "clusterIP"]}


def warm_up(lab) -> None:
    """One churn step of each kind that makes the daemon grow once (the
    scheduler's and controllers' first keep-alive connections and threads),
    done and undone before the counts start: growth after it is the churn's."""
    ns = CHURN_NAMESPACES[0]
    lab.api.create("deployments", churn_deployment("warm-up", 2), ns)
    lab.api.create("services", churn_service("warm-up"), ns)
    lab.api.create("networkpolicies", policy("warm-up", "warm-up", True), ns)
    kube.wait_for("warm-up pods running", lambda: len(
        [p for p in lab.api.list("pods", ns)[0]
         if (p.get("status") or {}).get("phase") == "Running"]) == 2, timeout=60)
    lab.api.patch("deployments", "warm-up", {"spec": {"replicas": 1}}, ns)
    for kind in ("networkpolicies", "services", "deployments"):
        lab.api.delete(kind, "warm-up", ns)
    kube.wait_for("warm-up pods gone", lambda: not lab.api.list("pods", ns)[0], timeout=60)


class Soak:
    """One soak in one lab: setup, churn with faults, cleanup, the counts."""

    def __init__(self, lab, settings: dict, rng: random.Random, mode: str):
        self.lab, self.settings, self.rng, self.mode = lab, settings, rng, mode
        self.world = World()
        self.events: list[dict] = []
        self.windows = []
        self.vips: set[str] = set()
        self.pod_ips: set[str] = set()
        self.policy_ns: dict[str, str] = {}       # policy name -> its namespace
        self.traffic: ChurnTraffic | None = None
        self.fault_error: BaseException | None = None
        self._lock = threading.Lock()

    def event(self, kind: str, name: str = "", ok: bool = True, detail: str = "") -> float:
        t = time.time()
        with self._lock:
            self.events.append({"t": round(t, 3), "kind": kind, "name": name, "ok": ok,
                                "detail": detail[:200]})
        return t

    def nodes(self) -> dict[str, int]:
        state = read_state(LabPaths(self.lab.name))
        return {r.name: r.pid for r in state.hosts.values() if r.kind == "node"}

    def run(self) -> dict:
        s = self.settings
        ips = setup_stable(self.lab)
        state = read_state(LabPaths(self.lab.name))
        start = {"objects": soak_monitor.object_counts(self.lab.api),
                 "api_connections": soak_monitor.api_connections(state),
                 "api_clients": soak_monitor.api_connection_owners(state),
                 "processes": soak_monitor.process_baseline(self.lab.name, self.lab.api)}
        public = kube.PUBLIC_IPS[kube.N11]
        targets = [ProbeTarget("stable-web", PROBER, STABLE, ips["stable-web"], 80),
                   ProbeTarget("stable-spread", PROBER, STABLE, ips["stable-spread"], 80),
                   ProbeTarget("stable-web-nodeport", "client", None, public,
                               int(ips["nodeport"]))]
        with soak_monitor.Sampler(self.lab, s["sample_s"]) as sampler:
            with StableProbes(self.lab, targets, s["rate"], s["probe_timeout"]) as probes, \
                    ChurnTraffic(self.lab, CALLER, STABLE) as self.traffic:
                time.sleep(2 * s["probe_timeout"])
                churn_start = self.event("churn-start")
                faults = threading.Thread(target=self.run_faults, args=(churn_start,),
                                          name="soak-faults", daemon=True)
                faults.start()
                while time.time() - churn_start < s["churn_s"]:
                    self.step()
                    probes.rotate()
                    time.sleep(s["tick_s"])
                faults.join(timeout=s["cut_s"] + 120)
                if self.fault_error is not None:
                    raise self.fault_error
                churn_end = self.event("churn-end")
                self.clean_churn()
            # The probes' and the traffic's own processes have ended: count now.
            records = probes.records
            leftovers = self.settle(start)
            end = self.event("checks-done")
        return {"mode": self.mode, "events": self.events, "samples": sampler.samples,
                "probes": classify(records, self.windows), "windows": self.windows,
                "start": start, "leftovers": leftovers, "traffic": dict(self.traffic.answers),
                "churn_start": churn_start, "churn_end": churn_end, "end": end,
                "memory": soak_monitor.memory_summary(sampler.samples, churn_start, end)}

    # --- churn ----------------------------------------------------------------

    def step(self) -> None:
        if self.rng.random() < 0.2:
            self.refresh_pods()
        action = next_action(self.rng, self.world, self.settings["limits"])
        try:
            self.act(action)
        except ApiError as err:     # e.g. a pod that just went: recorded, not fatal
            self.event(action.kind, action.name, ok=False, detail=str(err))
            return
        apply_to_world(self.world, action)
        self.event(action.kind, action.name, detail=action.detail or str(action.replicas))

    def act(self, action: Action) -> None:
        api = self.lab.api
        if action.kind == "create":
            ns = namespace_of(action.name)
            api.create("deployments", churn_deployment(action.name, action.replicas), ns)
            self.vips.add(api.create("services", churn_service(action.name), ns)
                          ["spec"]["clusterIP"])
        elif action.kind == "scale":
            api.patch("deployments", action.name, {"spec": {"replicas": action.replicas}},
                      namespace_of(action.name))
        elif action.kind == "delete":
            # its policies stay, selecting nothing, until the churn removes them
            api.delete("services", action.name, namespace_of(action.name))
            api.delete("deployments", action.name, namespace_of(action.name))
        elif action.kind == "kill-pod":
            ns, name = action.name.split("/", 1)
            api.delete("pods", name, ns)
            self.world.pods.remove(action.name)
        elif action.kind == "policy-add":
            shape, app = action.detail.split(":", 1)
            ns = namespace_of(app)
            api.create("networkpolicies", policy(action.name, app, shape != "deny-all"), ns)
            self.policy_ns[action.name] = ns
        elif action.kind == "policy-delete":
            api.delete("networkpolicies", action.name, self.policy_ns.pop(action.name))
        elif action.kind == "traffic":
            vip = api.get("services", action.name, namespace_of(action.name))["spec"][
                "clusterIP"]
            self.traffic.send(action.detail, vip, 80 if action.detail == "tcp" else 8080)

    def refresh_pods(self) -> None:
        running = []
        for ns in CHURN_NAMESPACES:
            for pod in self.lab.api.list("pods", ns)[0]:
                ip = (pod.get("status") or {}).get("podIP")
                if ip:
                    self.pod_ips.add(ip)
                if (pod.get("status") or {}).get("phase") == "Running" and not \
                        pod["metadata"].get("deletionTimestamp"):
                    running.append(f"{ns}/{pod['metadata']['name']}")
        self.world.pods = sorted(running)

    # --- faults ---------------------------------------------------------------

    def run_faults(self, churn_start: float) -> None:
        """The fault schedule, in a thread of its own; its error is raised in
        the main thread once the churn ends."""
        try:
            self._run_faults(churn_start)
        except BaseException as err:    # handed to the main thread
            self.fault_error = err

    def _run_faults(self, churn_start: float) -> None:
        s = self.settings
        for fault in fault_schedule(s["churn_s"], cut_s=s["cut_s"], cut_node=CUT_NODE,
                                    probe_node=kube.N11, other_node=kube.N12,
                                    stable_pod_of="stable-web"):
            delay = churn_start + fault.at - time.time()
            if delay > 0:
                time.sleep(delay)
            started = self.event(fault.kind, fault.target)
            try:
                getattr(self, "fault_" + fault.kind.replace("-", "_"))(fault)
            finally:
                ended = self.event(fault.kind + "-end", fault.target)
                self.windows.append(window(fault.kind, fault.target, started, ended,
                                           s["probe_timeout"], TARGETS))

    def fault_stable_pod_delete(self, fault) -> None:
        pods = self.lab.api.list("pods", STABLE, label_selector=f"app={fault.target}")[0]
        first = sorted(pods, key=lambda p: p["metadata"]["name"])[0]
        victim = first["metadata"]["name"]
        self.pod_ips.add((first.get("status") or {}).get("podIP") or "")
        self.lab.api.delete("pods", victim, STABLE)
        kube.wait_for(f"{fault.target} has 2 ready endpoints again", lambda: len(
            [e for e in kube.ready_endpoints(self.lab, fault.target, STABLE)
             if e["pod"] != victim]) == 2, timeout=60)

    def fault_proxy_restart(self, fault) -> None:
        self.restart_agent("proxy", fault.target)

    def fault_policy_restart(self, fault) -> None:
        self.restart_agent("policy", fault.target)

    def restart_agent(self, kind: str, node: str) -> None:
        """SIGKILL the agent by the pid the lab recorded; wait for the
        supervisor's new one to answer healthz (it has synced)."""
        key = f"{kind}/{node}"
        old = read_state(LabPaths(self.lab.name)).agents[key]["pid"]
        os.kill(old, signal.SIGKILL)
        kube.wait_for(f"{key} restarted", lambda: read_state(LabPaths(
            self.lab.name)).agents[key]["pid"] not in (None, old), timeout=30, every=0.05)
        pid = self.nodes()[node]
        kube.wait_for(f"{key} healthy", lambda: self._healthy(pid, HEALTH_PORTS[kind]),
                      timeout=30, every=0.1)

    @staticmethod
    def _healthy(pid: int, port: int) -> bool:
        try:
            run_in(pid, ["curl", "-sf", "-o", "/dev/null", "--max-time", "1",
                         f"http://127.0.0.1:{port}/healthz"], timeout=5)
        except (CommandError, LabError):      # not answering (yet)
            return False
        return True

    def fault_node_cut(self, fault) -> None:
        pid, port = kube.switch_port_of(self.lab, fault.target)
        kube.set_link(pid, port, up=False)
        try:
            time.sleep(fault.duration)
        finally:
            kube.set_link(pid, port, up=True)

    # --- after the churn ----------------------------------------------------------

    def clean_churn(self) -> None:
        """Delete every churn object; wait until their pods are gone."""
        for ns in CHURN_NAMESPACES:
            for kind in ("networkpolicies", "services", "deployments"):
                for obj in self.lab.api.list(kind, ns)[0]:
                    try:
                        self.lab.api.delete(kind, obj["metadata"]["name"], ns)
                    except ApiError as err:
                        if not err.not_found:
                            raise
        self.refresh_pods()
        kube.wait_for("churn pods gone", lambda: not any(
            self.lab.api.list("pods", ns)[0] for ns in CHURN_NAMESPACES), timeout=120)
        self.event("churn-cleaned")

    def settle(self, start: dict) -> dict:
        """The leftover counts, repeated until clean or the settle time is up."""
        began = time.time()
        deadline, tries = began + self.settings["settle_s"], []
        while True:
            found = self.leftovers(start)
            tries.append({"after_s": round(time.time() - began, 1),
                          **{k: v for k, v in found["counts"].items() if v}})
            if any(c["leftover"] for c in found["details"]["conntrack"].values()):
                tries[-1]["conntrack"] = found["details"]["conntrack"]
            if found["total"] == 0 or time.time() > deadline:
                found["settling"] = tries
                return found
            time.sleep(2.0)

    def leftovers(self, start: dict) -> dict:
        api, nodes = self.lab.api, self.nodes()
        live_pods = {(p.get("status") or {}).get("podIP") for p in api.list("pods")[0]}
        live_vips = {s["spec"].get("clusterIP") for s in api.list("services")[0]}
        rules = soak_checks.rule_report(api, nodes, self.mode)
        conntrack = soak_checks.conntrack_report(nodes, self.vips - live_vips,
                                                 self.pod_ips - live_pods)
        hosts = soak_monitor.host_report(self.lab.name, api, start["processes"])
        objects = soak_monitor.object_counts(api)
        state = read_state(LabPaths(self.lab.name))
        found = soak_report.leftover_totals(rules, conntrack, hosts, start, objects,
                                            soak_monitor.api_connections(state))
        found["details"]["api_clients"] = {"before": start["api_clients"],
                                           "after": soak_monitor.api_connection_owners(state)}
        return found
