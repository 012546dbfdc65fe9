"""Failover: pod deletion, node failure and agent restart under a steady load.

Four pods (two pinned to each worker with spec.nodeName) behind a ClusterIP;
a loader pod on ip-172-31-0-11 opens new connections to it at a fixed rate
(experiments/load/worker.py) and records, per connection, when it started,
which pod answered or how it failed.  Three things happen in turn:

  pod deletion   `kubectl delete pod` of one pod (chosen with the seeded rng):
                 do connections fail, and how long do new connections still
                 reach it?  When does its replacement get traffic?
  node failure   the vpc switch port of ip-172-31-0-12 goes down for a while
                 and comes back (the node's own eth0 is left alone: downing
                 it would flush the node's static routes).  Connections sent
                 to its pods time out until the node misses its heartbeats
                 for the node grace period (the spec's nodeMonitorGracePeriod:
                 kube's default 40 s in a full run, 6 s in quick mode so its
                 10 s outage converges), goes Unknown and its pods' endpoints
                 are removed.  The node's Ready condition and the ready
                 endpoints are sampled to show when; stale SYN_SENT conntrack
                 entries to the dead pods are counted at the end, and late
                 failures are matched to source ports that failed before.
  agent restart  SIGKILL to the proxy agent of the loader's node (its pid as
                 the lab recorded it); the supervisor restarts it.  The rules
                 stay in the kernel meanwhile: no connection should fail.

Writes failover_connections.csv (every connection), failover_events.csv,
failover_samples.csv (node Ready / endpoints during the outage),
failover_timeline.png.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import yaml

from base.errors import CommandError
from experiments import cluster_ops as kube
from experiments.framework import Context, Summary, table
from experiments.load.steady import SteadyLoad
from topo.netns import run_in
from topo.spec import default_spec_path

NAME = "failover"
TITLE = "Pod deletion, node failure and agent restart under a steady client load"
PLACEMENT = {"web-a": kube.N11, "web-b": kube.N12}
METRICS = ("import urllib.request; print(urllib.request.urlopen("
           "'http://127.0.0.1:10249/metrics', timeout=2).read().decode())")


def plan(quick: bool) -> dict:
    """Quick: a 6 s node grace period (the spec's nodeMonitorGracePeriod) so a
    10 s outage converges; full: kube-controller-manager's default 40 s."""
    return {"modes": ("iptables",) if quick else ("iptables", "nftables"),
            "rate": 40 if quick else 50, "baseline_s": 2.0 if quick else 5.0,
            "observe_s": 4.0 if quick else 10.0, "outage_s": 10.0 if quick else 50.0,
            "node_grace_s": 6 if quick else 40}


def cluster_spec(ctx: Context, grace: float) -> str:
    """The default cluster with the node grace period set; kept with the results."""
    data = yaml.safe_load(default_spec_path().read_text())
    data["nodeMonitorGracePeriod"] = grace
    path = ctx.out / "failover-cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    spec_file = cluster_spec(ctx, settings["node_grace_s"])
    connections, events, samples, results = [], [], [], []
    for mode in settings["modes"]:
        with ctx.lab(spec_file=spec_file, proxy_mode=mode) as lab:
            results.append(measure(lab, mode, settings, ctx.rng, connections, events, samples))
    ctx.write_csv("failover_connections.csv", connections)
    ctx.write_csv("failover_events.csv", events)
    ctx.write_csv("failover_samples.csv", samples)
    ctx.write_json("failover_results.json", results)
    figure = ctx.figure("failover_timeline.png",
                        lambda ax: draw_timeline(ax, connections, events, settings["modes"][0]))
    return Summary(TITLE, findings(results, settings), tables(results), [figure])


def setup(lab) -> str:
    for name, node in PLACEMENT.items():
        lab.api.create("deployments", kube.deployment(
            name, 2, {"app": "web", "part": name}, node=node, grace_seconds=5),
            namespace="default")
    lab.api.create("pods", kube.pod("loader", kube.N11), namespace="default")
    lab.api.create("services", kube.service("web", {"app": "web"}), namespace="default")
    kube.running_pod(lab, "loader")
    kube.wait_endpoints(lab, "web", 4)
    vip = kube.cluster_ip(lab, "web")
    kube.wait_for("every pod answering through the ClusterIP", lambda: len({
        r["pod"] for r in quick_load(lab, vip)} - {None}) == 4, timeout=20, every=0.2)
    return vip


def quick_load(lab, vip: str) -> list[dict]:
    with SteadyLoad(lab, "loader", vip, 80, rate=100) as load:
        time.sleep(0.5)
    return load.records


def measure(lab, mode, settings, rng, connections, events, samples) -> dict:
    vip = setup(lab)
    pods = {e["pod"]: e["node"] for e in kube.ready_endpoints(lab, "web")}
    victim = rng.choice(sorted(pods, key=lambda p: (pods[p], p)))
    marks: dict[str, float] = {}

    def mark(event: str) -> None:
        marks[event] = time.time()
        events.append({"mode": mode, "t": round(marks[event], 4), "event": event})

    with SteadyLoad(lab, "loader", vip, 80, settings["rate"]) as load:
        mark("start")
        time.sleep(settings["baseline_s"])
        mark("pod deleted")
        lab.kubectl("delete", "pod", victim, "--wait=false")
        kube.wait_endpoints(lab, "web", 4, where=lambda e: e["pod"] != victim)
        time.sleep(settings["observe_s"])
        after_delete = {e["pod"]: e["node"] for e in kube.ready_endpoints(lab, "web")}

        pid, port = kube.switch_port_of(lab, kube.N12)
        mark("link down")
        kube.set_link(pid, port, up=False)
        failed_ips = [e["ip"] for e in kube.ready_endpoints(lab, "web")
                      if e["node"] == kube.N12]
        try:
            stale = watch_outage(lab, mode, settings["outage_s"], marks["link down"],
                                 samples, vip, failed_ips)
        finally:
            kube.set_link(pid, port, up=True)
        mark("link up")
        for label, hit in (("node not Ready", lambda x: x["node_ready"] != "True"),
                           ("its endpoints removed", lambda x: x["on_failed_node"] == 0)):
            first = next((x for x in samples if x["mode"] == mode and hit(x)), None)
            if first is not None:
                events.append({"mode": mode, "t": first["t"], "event": label})
        time.sleep(settings["observe_s"])

        agent_pid = kube.agent(lab, kube.N11)["pid"]
        mark("agent killed")
        os.kill(agent_pid, signal.SIGKILL)
        restarted, synced = wait_agent_back(lab, agent_pid, marks["agent killed"])
        time.sleep(settings["observe_s"])
        mark("end")
    records = load.records
    for record in records:
        connections.append({"mode": mode, "t": record["t"],
                            "since_start_s": round(record["t"] - marks["start"], 4),
                            "pod": record["pod"] or "", "node": (
                                pods.get(record["pod"]) or after_delete.get(record["pod"])
                                or "") if record["pod"] else "",
                            "error": record["err"] or "", "ms": record["ms"],
                            "source_port": record.get("port") or ""})
    result = analyse(mode, records, marks, victim, pods, after_delete, settings, samples,
                     restarted, synced)
    result["node"]["stale_syn_sent_conntrack_entries"] = stale
    return result


def watch_outage(lab, mode, seconds, since, samples, vip, failed_ips) -> int:
    """While the link is down: the node's Ready condition and ready endpoints.

    Returns how many SYN_SENT conntrack entries on the loader's node still
    point at the cut-off pods when the link comes back: a new connection
    whose source port matches one is sent to a dead pod, whatever the rules
    say, until the entry expires (nf_conntrack_tcp_timeout_syn_sent, 120 s)."""
    deadline = since + seconds
    while time.time() < deadline:
        endpoints = kube.ready_endpoints(lab, "web")
        samples.append({"mode": mode, "t": round(time.time(), 3),
                        "since_link_down_s": round(time.time() - since, 2),
                        "node_ready": kube.node_ready(lab, kube.N12),
                        "ready_endpoints": len(endpoints),
                        "on_failed_node": len([e for e in endpoints
                                               if e["node"] == kube.N12])})
        time.sleep(min(0.5, max(0.0, deadline - time.time())))
    listing = run_in(kube.host_pid(lab, kube.N11), [
        "conntrack", "-L", "-p", "tcp", "--state", "SYN_SENT", "-d", vip], timeout=30)
    return sum(1 for line in listing.splitlines()
               if any(f" src={ip} " in line for ip in failed_ips))


def wait_agent_back(lab, old_pid: int, killed_at: float) -> tuple[float, float]:
    """Seconds until the supervisor recorded a new agent, and until it synced."""
    kube.wait_for("the proxy agent restarted",
                  lambda: kube.agent(lab, kube.N11)["pid"] not in (None, old_pid), timeout=30,
                  every=0.05)
    restarted = time.time() - killed_at
    node_pid = kube.host_pid(lab, kube.N11)

    def last_sync() -> float:
        try:
            text = run_in(node_pid, [sys.executable, "-c", METRICS], timeout=5)
        except CommandError:       # not listening yet: keep polling
            return 0.0
        for line in text.splitlines():
            if line.startswith("kubeproxy_sync_proxy_rules_last_timestamp_seconds "):
                return float(line.split()[1])
        return 0.0
    synced_at = kube.wait_for("the restarted agent's first sync",
                              lambda: (lambda t: t if t > killed_at else None)(last_sync()),
                              timeout=30, every=0.05)
    return restarted, synced_at - killed_at


# --- results (pure) ---------------------------------------------------------------

def analyse(mode, records, marks, victim, pods, after_delete, settings, samples,
            restarted, synced) -> dict:
    def window(start, end):
        return [r for r in records if marks[start] <= r["t"] < marks[end]]
    deletion = window("pod deleted", "link down")
    outage = window("link down", "link up")
    recovery = window("link up", "agent killed")
    restart = window("agent killed", "end")
    to_victim = [r["t"] - marks["pod deleted"] for r in deletion if r["pod"] == victim]
    replacement = sorted(set(after_delete) - set(pods))
    first_new = [r["t"] - marks["pod deleted"] for r in deletion if r["pod"] in replacement]
    on_failed = {p for p, n in {**pods, **after_delete}.items() if n == kube.N12}
    back = [r["t"] - marks["link up"] for r in recovery if r["pod"] in on_failed]
    failed_after_up = [r["t"] - marks["link up"] for r in recovery if r["err"]]
    mine = [s for s in samples if s["mode"] == mode]
    return {
        "mode": mode, "rate": settings["rate"], "victim_node": pods[victim],
        "node_grace_s": settings["node_grace_s"],
        "baseline_failed": sum(1 for r in window("start", "pod deleted") if r["err"]),
        "delete": {"connections": len(deletion), "failed": fails(deletion),
                   "last_new_connection_to_deleted_pod_s": round(max(to_victim), 3)
                   if to_victim else None,
                   "replacement_first_connection_s": round(min(first_new), 3)
                   if first_new else None},
        "node": {"connections": len(outage), "failed": fails(outage),
                 **convergence(outage, mine, marks["link down"]),
                 "failed_share": round(len([r for r in outage if r["err"]]) / len(outage), 3)
                 if outage else None,
                 "expected_failed_share": round(len(on_failed & set(after_delete))
                                                / len(after_delete), 3),
                 "outage_s": round(marks["link up"] - marks["link down"], 2),
                 "node_ready_seen": sorted({s["node_ready"] for s in mine}),
                 "min_ready_endpoints": min((s["ready_endpoints"] for s in mine), default=None),
                 "min_endpoints_on_failed_node": min((s["on_failed_node"] for s in mine),
                                                     default=None),
                 "failed_after_link_up": len(failed_after_up),
                 "first_success_from_failed_node_after_up_s": round(min(back), 3)
                 if back else None},
        "agent": {"connections": len(restart), "failed": fails(restart),
                  "restarted_after_s": round(restarted, 3),
                  "first_sync_after_s": round(synced, 3)}}


def convergence(outage: list[dict], samples: list[dict], down: float) -> dict:
    """When the node left Ready, when its endpoints left, failure shares around that."""
    unknown = next((s["since_link_down_s"] for s in samples if s["node_ready"] != "True"), None)
    removed = next((s["since_link_down_s"] for s in samples if s["on_failed_node"] == 0), None)
    cut = down + removed if removed is not None else float("inf")
    before = [r for r in outage if r["t"] < cut]
    after = [r for r in outage if r["t"] >= cut]
    stale_ports = {r["port"] for r in before if r["err"]}
    late = [r for r in after if r["err"]]

    def share(records):
        return round(sum(1 for r in records if r["err"]) / len(records), 3) if records \
            else None
    return {"not_ready_after_s": unknown, "endpoints_removed_after_s": removed,
            "failed_share_before_removal": share(before),
            "failed_share_after_removal": share(after),
            "failed_after_removal": len(late),
            "failed_after_removal_on_a_stale_port": sum(1 for r in late
                                                        if r["port"] in stale_ports)}


def fails(records: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for record in records:
        if record["err"]:
            kinds[record["err"]] = kinds.get(record["err"], 0) + 1
    return kinds


def tables(results: list[dict]) -> list[str]:
    rows = []
    for r in results:
        rows.append([r["mode"], "pod deletion (kubectl delete pod)",
                     "none" if not r["delete"]["failed"] else "some",
                     "deleted pod's endpoint removed, replacement added"])
        rows.append([r["mode"], "node failure (switch port down)",
                     "none" if not r["node"]["failed"] else "some",
                     f"none: the node stayed Ready, its "
                     f"{r['node']['min_endpoints_on_failed_node']} endpoints stayed"
                     if r["node"]["endpoints_removed_after_s"] is None else
                     "its endpoints removed once the node went "
                     f"{'/'.join(x for x in r['node']['node_ready_seen'] if x != 'True')}"])
        rows.append([r["mode"], "agent restart (SIGKILL)",
                     "none" if not r["agent"]["failed"] else "some",
                     "none (rules stay in the kernel)"])
    return [table(["mode", "scenario", "failed connections", "endpoint changes"], rows)]


def findings(results: list[dict], settings: dict) -> list[str]:
    out = []
    for r in results:
        d, n, a = r["delete"], r["node"], r["agent"]
        total = lambda kinds: sum(kinds.values())       # noqa: E731
        out.append(
            f"{r['mode']}, pod deletion ({r['rate']} new connections/s): "
            f"{total(d['failed'])} of {d['connections']} connections failed; "
            + (f"new connections still reached the deleted pod up to "
               f"{d['last_new_connection_to_deleted_pod_s'] * 1e3:.0f} ms after the delete"
               if d["last_new_connection_to_deleted_pod_s"] is not None else
               "no new connection reached the deleted pod after the delete")
            + (f"; its replacement got its first connection after "
               f"{d['replacement_first_connection_s']:.2f} s"
               if d["replacement_first_connection_s"] is not None else ""))
        out.append(node_finding(r["mode"], n, r["node_grace_s"]))
        out.append(
            f"{r['mode']}, agent restart: {total(a['failed'])} of {a['connections']} "
            f"connections failed; the supervisor restarted the agent after "
            f"{a['restarted_after_s']:.2f} s and its first sync finished "
            f"{a['first_sync_after_s']:.2f} s after the kill")
    return out


def node_finding(mode: str, n: dict, grace: float) -> str:
    text = (f"{mode}, node failure ({n['outage_s']:.0f} s with ip-172-31-0-12's switch port "
            f"down): {sum(n['failed'].values())} of {n['connections']} connections failed "
            f"({n['failed_share']:.0%}; the node's pods are {n['expected_failed_share']:.0%} "
            f"of the endpoints) as {', '.join(n['failed']) or 'nothing'}; ")
    if n["endpoints_removed_after_s"] is None:
        text += ("the node stayed Ready and kept its endpoints for the whole outage (node "
                 f"grace period {grace:g} s): nothing converged until the link came back")
    else:
        text += (f"the node went {'/'.join(x for x in n['node_ready_seen'] if x != 'True')} "
                 f"{n['not_ready_after_s']:.1f} s after the link went down (node grace period "
                 f"{grace:g} s after its last heartbeat, posted every {min(5, grace / 4):g} s) "
                 "and its endpoints were removed "
                 f"by {n['endpoints_removed_after_s']:.1f} s; "
                 f"failures {n['failed_share_before_removal']:.0%} of connections before "
                 f"that, {n['failed_share_after_removal'] or 0:.0%} after")
        late, stale = n["failed_after_removal"], n["failed_after_removal_on_a_stale_port"]
        if late:
            text += (f"; {stale} of those {late} late failures reused a source port that had "
                     "failed during the outage: a stale SYN_SENT conntrack entry still DNAT-ed "
                     "to a dead pod (kept 120 s, kube-proxy flushes conntrack for UDP only; "
                     f"{n['stale_syn_sent_conntrack_entries']} such entries at link up)")
            if late - stale:
                text += (f", the other {late - stale} started before the loader's node had "
                         "applied the change")
    if n["first_success_from_failed_node_after_up_s"] is not None:
        text += (f"; after link up the node's pods answered again within "
                 f"{n['first_success_from_failed_node_after_up_s'] * 1e3:.0f} ms")
        if n["endpoints_removed_after_s"] is not None:
            text += " (its next heartbeat makes it Ready and brings its endpoints back)"
    return text


def draw_timeline(ax, connections: list[dict], events: list[dict], mode: str) -> None:
    mine = [c for c in connections if c["mode"] == mode]
    order = sorted({(c["node"], c["pod"]) for c in mine if c["pod"]})
    rows = {pod: i + 1 for i, (_, pod) in enumerate(order)}
    ok = [c for c in mine if c["pod"]]
    bad = [c for c in mine if not c["pod"]]
    ax.scatter([c["since_start_s"] for c in ok], [rows[c["pod"]] for c in ok], s=4,
               color="tab:green", label="answered (row: pod)")
    ax.scatter([c["since_start_s"] for c in bad], [0] * len(bad), s=10, marker="x",
               color="tab:red", label="failed")
    start = next(e["t"] for e in events if e["mode"] == mode and e["event"] == "start")
    shown = sorted((e for e in events if e["mode"] == mode and e["event"] not in (
        "start", "end")), key=lambda e: e["t"])
    for index, event in enumerate(shown):
        ax.axvline(event["t"] - start, color="gray", linestyle="--", linewidth=0.8)
        ax.text(event["t"] - start, 0.99 if index % 2 == 0 else 0.55, f"{event['event']} ",
                rotation=90, fontsize=7, va="top", ha="right", color="dimgray",
                transform=ax.get_xaxis_transform())
    ax.set_yticks([0] + list(rows.values()),
                  ["failed"] + [f"{pod[-11:]} ({node[-2:]})" for node, pod in order],
                  fontsize=7)
    ax.set_xlabel("seconds since the load started")
    ax.set_title(f"New connections from a pod to a ClusterIP ({mode})")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
