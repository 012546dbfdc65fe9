"""Traffic policy: externalTrafficPolicy Cluster vs Local, internalTrafficPolicy Local.

Four pods placed unevenly with spec.nodeName: three on ip-172-31-0-11, one
on ip-172-31-0-12, none on the control plane ip-172-31-0-10.  Three
Services select them all: `cluster` and `local` (type LoadBalancer behind
an NLB, which keeps the client's address, with externalTrafficPolicy Cluster
and Local) and `itp-local` (ClusterIP, internalTrafficPolicy Local).  From
the outside client and from pods on every node the experiment measures

  * the source address each pod saw (client IP kept under Local, the
    node's under Cluster),
  * the per-pod share via the NodePort on each worker and via the ELB,
    against what the policy predicts (Local via the ELB: the lone pod gets
    half, the three others a sixth each),
  * traffic to a node without local endpoints (dropped under Local) and
    iTP Local from a pod on such a node (dropped),
  * the ELB's health checks: healthy nodes, then -- after the lone pod's
    Deployment is scaled to 0 -- the emptied node marked unhealthy under
    Local only, and how long that took.

Writes traffic_policy_spread.csv (per pod and path), traffic_policy_checks.json,
traffic_policy_shares.png.
"""
from __future__ import annotations

import time

from experiments import cluster_ops as kube
from experiments.framework import Context, Summary, table
from labd.lb_status import lb_status
from probes.reach import Probe
from probes.runner import probe_from
from probes.spread.probe import UNIFORM_ALPHA, spread

NAME = "traffic-policy"
TITLE = "externalTrafficPolicy Cluster vs Local, internalTrafficPolicy Local"
PLACEMENT = {"web-a": (kube.N11, 3), "web-b": (kube.N12, 1)}
CALLERS = {"caller-10": kube.N10, "caller-11": kube.N11, "caller-12": kube.N12}
POLICIES = ("Cluster", "Local")


def plan(quick: bool) -> dict:
    return {"modes": ("iptables",) if quick else ("iptables", "nftables"),
            "connections": 400 if quick else 2000}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    spread_rows, checks = [], []
    for mode in settings["modes"]:
        with ctx.lab(proxy_mode=mode) as lab:
            checks.append(measure(lab, mode, settings["connections"], spread_rows))
    ctx.write_csv("traffic_policy_spread.csv", spread_rows)
    ctx.write_json("traffic_policy_checks.json", checks)
    figure = ctx.figure("traffic_policy_shares.png",
                        lambda ax: draw_shares(ax, spread_rows, settings["modes"][0]))
    return Summary(TITLE, findings(spread_rows, checks), tables(spread_rows, checks), [figure])


# --- the lab ------------------------------------------------------------------

def setup(lab) -> dict:
    for name, (node, replicas) in PLACEMENT.items():
        lab.api.create("deployments", kube.deployment(
            name, replicas, {"app": "web", "part": name}, node=node), namespace="default")
    for name, node in CALLERS.items():
        lab.api.create("pods", kube.pod(name, node), namespace="default")
    for policy in POLICIES:
        lab.api.create("services", kube.service(
            policy.lower(), {"app": "web"}, type="LoadBalancer", annotations=kube.NLB,
            externalTrafficPolicy=policy), namespace="default")
    lab.api.create("services", kube.service("itp-local", {"app": "web"},
                                            internalTrafficPolicy="Local"), namespace="default")
    for name in CALLERS:
        kube.running_pod(lab, name)
    for name in ("cluster", "local", "itp-local"):
        kube.wait_endpoints(lab, name, 4)
    for name in ("cluster", "local"):
        wait_health(lab, name, {kube.N11: "healthy", kube.N12: "healthy"})
    pods = {e["ip"]: e["node"] for e in kube.ready_endpoints(lab, "cluster")}
    return {"pods": pods, "nodeports": {p: kube.node_port(lab, p.lower()) for p in POLICIES},
            "vips": {p: lb_of(lab, p.lower())["vip"] for p in POLICIES},
            "itp": kube.cluster_ip(lab, "itp-local")}


def lb_of(lab, name: str) -> dict | None:
    return next((r for r in lb_status(lab.name) if r["key"] == f"default/{name}"), None)


def health(lab, name: str) -> dict:
    lb = lb_of(lab, name)
    return {t["node"]: t["state"] for t in lb["targets"]} if lb else {}


def wait_health(lab, name: str, wanted: dict, timeout: float = 40.0) -> None:
    kube.wait_for(f"ELB targets of {name} {wanted}", lambda: health(lab, name) == wanted,
                  timeout, every=0.2)


def measure(lab, mode: str, connections: int, spread_rows: list) -> dict:
    info = setup(lab)
    pods = info["pods"]
    kube.wait_for("the NodePorts answering", lambda: all(
        r.outcome == "open" for r in probe_from(lab.name, "client", [
            Probe(kube.PUBLIC_IPS[node], info["nodeports"][p])
            for node in kube.WORKERS for p in POLICIES], timeout=0.5)), timeout=20)
    for policy in POLICIES:
        paths = [(f"NodePort on {node}", kube.PUBLIC_IPS[node], info["nodeports"][policy])
                 for node in kube.WORKERS] + [("ELB (nlb)", info["vips"][policy], 80)]
        for path, address, port in paths:
            expected = expected_shares(policy, path, pods)
            result = spread(lab.name, "client", None, address, port, "tcp", connections,
                            2.0, 100, expected=testable(expected))
            add_rows(spread_rows, mode, "external", policy, path, "client", result, pods,
                     expected)
    for caller, node in CALLERS.items():
        local = {ip: 1.0 for ip, where in pods.items() if where == node}
        result = spread(lab.name, caller, None, info["itp"], 80, "tcp",
                        connections // 4 if local else 20, 1.0, 20,
                        expected=testable(local))
        add_rows(spread_rows, mode, "internal", "iTP Local", f"ClusterIP from a pod on {node}",
                 caller, result, pods, local)
    dropped = probe_from(lab.name, "client", [Probe(kube.PUBLIC_IPS[kube.N10],
                                                    info["nodeports"][p]) for p in POLICIES],
                         timeout=1.0)
    checks = {"mode": mode, "nodeports": info["nodeports"], "vips": info["vips"],
              "pods": pods,
              "control_plane_nodeport": {p: r.outcome for p, r in zip(POLICIES, dropped)},
              "health_before": {p: health(lab, p.lower()) for p in POLICIES}}
    checks.update(empty_a_node(lab, info, connections, spread_rows, mode, pods))
    return checks


def empty_a_node(lab, info, connections, spread_rows, mode, pods) -> dict:
    """Scale the lone pod on ip-172-31-0-12 away; watch the ELB and the NodePort."""
    scaled_at = time.time()
    lab.kubectl("scale", "deployment/web-b", "--replicas=0")
    wait_health(lab, "local", {kube.N11: "healthy", kube.N12: "unhealthy"})
    took = next(t["at"] for t in next(t for t in lb_of(lab, "local")["targets"]
                                      if t["node"] == kube.N12)["transitions"]
                if t["state"] == "unhealthy" and t["at"] > scaled_at) - scaled_at
    remaining = {ip: node for ip, node in pods.items() if node == kube.N11}
    result = spread(lab.name, "client", None, info["vips"]["Local"], 80, "tcp", connections,
                    2.0, 100, expected=dict.fromkeys(remaining, 1.0))
    add_rows(spread_rows, mode, "external", "Local", "ELB (nlb), pod on N12 scaled away",
             "client", result, pods, dict.fromkeys(remaining, 1.0))
    probes = probe_from(lab.name, "client", [Probe(kube.PUBLIC_IPS[kube.N12],
                                                   info["nodeports"][p]) for p in POLICIES],
                        timeout=1.0)
    return {"health_after_scale_down": {p: health(lab, p.lower()) for p in POLICIES},
            "unhealthy_after_s": round(took, 2),
            "health_check": lb_of(lab, "local")["healthCheck"],
            "emptied_nodeport": {p: r.outcome for p, r in zip(POLICIES, probes)}}


def testable(expected: dict) -> dict | None:
    """Expected shares for chi-square, which needs two categories (else None)."""
    return expected if len(expected) >= 2 else None


def expected_shares(policy: str, path: str, pods: dict) -> dict:
    """Pure: the share each pod should get on a path under a policy."""
    if policy == "Cluster":
        return {ip: 1.0 / len(pods) for ip in pods}
    by_node: dict[str, list[str]] = {}
    for ip, node in pods.items():
        by_node.setdefault(node, []).append(ip)
    if path.startswith("NodePort on "):
        local = by_node.get(path.removeprefix("NodePort on "), [])
        return {ip: 1.0 / len(local) for ip in local}
    healthy = [node for node in kube.WORKERS if by_node.get(node)]   # ELB: per node, then pod
    return {ip: 1.0 / len(healthy) / len(by_node[node]) for node in healthy
            for ip in by_node[node]}


def add_rows(rows, mode, kind, policy, path, source, result, pods, expected) -> None:
    counts = {e.ip: e for e in result.endpoints}
    total = sum(expected.values()) if expected else 0
    for index, (ip, node) in enumerate(sorted(pods.items(), key=lambda item: (
            item[1], tuple(int(x) for x in item[0].split("."))))):
        got = counts.get(ip)
        rows.append({"mode": mode, "kind": kind, "policy": policy, "path": path,
                     "from": source, "pod_index": index, "pod_ip": ip, "pod_node": node,
                     "count": got.count if got else 0,
                     "share": round(got.count / result.ok, 4) if got and result.ok else 0.0,
                     "expected_share": round(expected.get(ip, 0.0) / total, 4) if total else 0.0,
                     "sources_seen": " ".join(sorted(got.sources)) if got else "",
                     "connections": result.requested, "ok": result.ok,
                     "failures": " ".join(f"{k}={v}" for k, v in result.failures.items()),
                     "p_value": result.p_value if result.fit else ""})


# --- results (pure) -------------------------------------------------------------

def paths_of(rows: list[dict]) -> list[list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["kind"], row["policy"], row["path"], row["from"]),
                          []).append(row)
    return list(groups.values())


def seen_class(addresses: set[str]) -> str:
    names = {kube.CLIENT_IP: "client IP"} | {ip: f"node {node[-2:]}" for node, ip in
                                             kube.NODE_IPS.items()}
    return ", ".join(sorted(names.get(a, "pod IP" if a.startswith("192.168.") else a)
                            for a in addresses)) or "-"


def tables(rows: list[dict], checks: list[dict]) -> list[str]:
    spread_table = []
    for group in paths_of(rows):
        first = group[0]
        seen = {s for r in group for s in r["sources_seen"].split()}
        reached = [r for r in group if r["expected_share"] > 0]
        fits = (first["p_value"] >= UNIFORM_ALPHA if first["p_value"] != "" else
                len(reached) == 1 and first["ok"] > 0 and reached[0]["count"] == first["ok"])
        spread_table.append([
            first["mode"], first["policy"], first["path"], first["from"], seen_class(seen),
            " / ".join(f"{r['expected_share']:.0%}" for r in group),
            "yes" if fits else ("n/a" if not reached else "no"),
            failed_text(first)])
    health_table, drop_table = [], []
    for check in checks:
        for policy in POLICIES:
            for phase, key in (("3+1 pods", "health_before"),
                               ("3+0 pods", "health_after_scale_down")):
                states = check[key][policy]
                health_table.append([check["mode"], policy, phase, states.get(kube.N11),
                                     states.get(kube.N12)])
            drop_table.append([check["mode"], policy, "client -> NodePort on ip-172-31-0-10 "
                               "(no pods)", check["control_plane_nodeport"][policy]])
            drop_table.append([check["mode"], policy, "client -> NodePort on ip-172-31-0-12 "
                               "(pod scaled away)", check["emptied_nodeport"][policy]])
    return [table(["mode", "policy", "path", "from", "source the pods saw",
                   "expected share per pod (3 on N11 / 1 on N12)",
                   f"split as expected (p >= {UNIFORM_ALPHA})", "failed"], spread_table),
            table(["mode", "eTP", "endpoints", "ELB target ip-172-31-0-11",
                   "ELB target ip-172-31-0-12"], health_table),
            table(["mode", "eTP", "probe", "outcome"], drop_table)]


def failed_text(row: dict) -> str:
    if row["ok"] == 0 and row["failures"].startswith("timeout="):
        return "all dropped (timeouts)"
    return "none" if not row["failures"] else row["failures"]


def findings(rows: list[dict], checks: list[dict]) -> list[str]:
    out = []
    for group in paths_of(rows):
        first = group[0]
        shares = " / ".join(f"{r['share']:.1%}" for r in group)
        seen = seen_class({s for r in group for s in r["sources_seen"].split()})
        expected = [r for r in group if r["expected_share"] > 0]
        verdict = (f"p = {first['p_value']:.3g} against the expected split"
                   if first["p_value"] != "" else "one pod expected" if expected
                   else "no pod expected (no local endpoint)")
        out.append(f"{first['mode']}, {first['policy']}, {first['path']} from {first['from']}: "
                   f"{first['ok']}/{first['connections']} connections answered; per-pod share "
                   f"{shares}; the pods saw {seen}; {verdict}")
    for check in checks:
        hc = check["health_check"]
        out.append(f"{check['mode']}: after scaling the lone pod on ip-172-31-0-12 to 0, the "
                   f"ELB marked that node unhealthy for the Local service after "
                   f"{check['unhealthy_after_s']:.1f} s (check every {hc['interval']:g} s, "
                   f"unhealthy threshold {hc['unhealthyThreshold']}: detection "
                   f"{hc['detectionTime']:g} s), and kept it healthy for the Cluster service; "
                   f"NodePort on that node under Local: "
                   f"{check['emptied_nodeport']['Local']}, under Cluster: "
                   f"{check['emptied_nodeport']['Cluster']}")
    return out


def draw_shares(ax, rows: list[dict], mode: str) -> None:
    groups = [g for g in paths_of(rows) if g[0]["mode"] == mode and g[0]["kind"] == "external"]
    width = 0.8 / max(len(groups[0]), 1) if groups else 0.2
    labels = [f"{g[0]['policy']}\n" + g[0]["path"].replace("NodePort on ip-172-31-0-",
                                                           "NodePort, node ")
              .replace(", ", "\n") for g in groups]
    for index in range(len(groups[0]) if groups else 0):
        xs = [i + (index - 1.5) * width for i in range(len(groups))]
        node = groups[0][index]["pod_node"]
        ax.bar(xs, [g[index]["share"] for g in groups], width,
               label=f"pod {index + 1} on {node}",
               color=("tab:blue" if node == kube.N11 else "tab:orange"), alpha=0.4 + 0.2 * (
                   index % 3))
        ax.scatter(xs, [g[index]["expected_share"] for g in groups], marker="_", s=200,
                   color="black")
    ax.set_xticks(range(len(groups)), labels, fontsize=7)
    ax.set_ylabel("share of the client's connections")
    ax.set_title(f"Per-pod share, 3 pods on ip-172-31-0-11 + 1 on ip-172-31-0-12 ({mode}); "
                 "black: expected", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
