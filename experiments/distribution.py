"""Distribution: how evenly a ClusterIP spreads new connections, and affinity.

kube-proxy picks an endpoint per new connection with probability 1/n
(iptables: a chain of `statistic --probability 1/(n-i)` rules; nftables:
`numgen random mod n`).  With sessionAffinity ClientIP every connection from
one client address goes to the endpoint it got first.  For each proxy mode
and each n, this experiment scales one Deployment to n replicas, then

  * opens PER_ENDPOINT*n connections from a pod to a plain ClusterIP and
    tests the per-endpoint counts against uniform (chi-square), and
  * opens AFFINITY_CONNECTIONS connections from each of three sources (a pod
    on each worker, the control-plane node) to a ClientIP-affinity ClusterIP
    over the same pods, and reports the share of each source's top endpoint.

Writes distribution_endpoints.csv (one row per endpoint and run),
distribution_runs.csv (one row per run), distribution_shares.png and
distribution_pvalues.png.
"""
from __future__ import annotations

from experiments import cluster_ops as kube
from experiments.framework import Context, Summary, table
from probes.spread.probe import UNIFORM_ALPHA, spread

NAME = "distribution"
TITLE = "Spread over 2..20 endpoints, both proxy modes, with and without session affinity"
MODES = ("iptables", "nftables")
SOURCES = ("caller-11", "caller-12", kube.N10)       # two pods, one node (masqueraded)


def plan(quick: bool) -> dict:
    return {"sizes": (2, 5) if quick else (2, 3, 5, 10, 15, 20),
            "per_endpoint": 200 if quick else 400,
            "affinity_connections": 30 if quick else 100}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    runs, endpoint_rows = [], []
    for mode in MODES:
        with ctx.lab(proxy_mode=mode) as lab:
            measure_mode(lab, mode, settings, runs, endpoint_rows)
    ctx.write_csv("distribution_runs.csv", runs)
    ctx.write_csv("distribution_endpoints.csv", endpoint_rows)
    figures = [ctx.figure("distribution_shares.png", lambda ax: draw_shares(ax, endpoint_rows)),
               ctx.figure("distribution_pvalues.png", lambda ax: draw_pvalues(ax, runs))]
    return Summary(TITLE, findings(runs), tables(runs), figures)


def measure_mode(lab, mode: str, settings: dict, runs: list, endpoint_rows: list) -> None:
    labels = {"app": "web"}
    lab.api.create("deployments", kube.deployment("web", settings["sizes"][0], labels),
                   namespace="default")
    lab.api.create("services", kube.service("web", labels), namespace="default")
    lab.api.create("services", kube.service(
        "sticky", labels, sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}), namespace="default")
    for name, node in (("caller-11", kube.N11), ("caller-12", kube.N12)):
        lab.api.create("pods", kube.pod(name, node), namespace="default")
    for name in ("caller-11", "caller-12"):
        kube.running_pod(lab, name)
    plain, sticky = kube.cluster_ip(lab, "web"), kube.cluster_ip(lab, "sticky")
    for n in settings["sizes"]:
        lab.kubectl("scale", "deployment/web", f"--replicas={n}")
        endpoints = kube.wait_endpoints(lab, "web", n)
        kube.wait_endpoints(lab, "sticky", n)
        settle(lab, plain, n)
        uniform = {e["ip"]: 1.0 / n for e in endpoints}
        result = spread(lab.name, "caller-11", None, plain, 80, "tcp",
                        settings["per_endpoint"] * n, 2.0, 100, expected=uniform)
        record(runs, endpoint_rows, mode, n, False, "caller-11", result, endpoints)
        for source in SOURCES:
            result = spread(lab.name, source, None, sticky, 80, "tcp",
                            settings["affinity_connections"], 2.0, 1, expected=uniform)
            record(runs, endpoint_rows, mode, n, True, source, result, endpoints)


def settle(lab, vip: str, n: int) -> None:
    """Until every endpoint answers from both callers (the agents have synced)."""
    def all_answer():
        for source in ("caller-11", "caller-12"):
            got = spread(lab.name, source, None, vip, 80, "tcp", 30 * n, 2.0, 50)
            if len(got.endpoints) != n or got.failures:
                return False
        return True
    kube.wait_for(f"all {n} endpoints answering", all_answer, timeout=20, every=0.2)


def record(runs, endpoint_rows, mode, n, affinity, source, result, endpoints) -> None:
    counts = {e.ip: e.count for e in result.endpoints}
    ok = result.ok
    top = max(counts.values()) if counts else 0
    runs.append({"mode": mode, "endpoints": n, "affinity": affinity, "source": source,
                 "connections": result.requested, "ok": ok,
                 "failed": sum(result.failures.values()),
                 "endpoints_answered": len(counts),
                 "chi_square": round(result.fit.statistic, 3) if result.fit else "",
                 "p_value": result.p_value if result.fit else "",
                 "top_share": round(top / ok, 4) if ok else 0.0,
                 "elapsed_s": round(result.elapsed_s, 3)})
    for index, endpoint in enumerate(endpoints):
        count = counts.get(endpoint["ip"], 0)
        endpoint_rows.append({"mode": mode, "endpoints": n, "affinity": affinity,
                              "source": source, "index": index, "ip": endpoint["ip"],
                              "node": endpoint["node"], "count": count,
                              "share": round(count / ok, 5) if ok else 0.0,
                              "expected_share": round(1.0 / n, 5)})


# --- results (pure) -------------------------------------------------------------

def tables(runs: list[dict]) -> list[str]:
    plain = [[r["mode"], r["endpoints"], r["connections"], f"{r['endpoints_answered']}/"
              f"{r['endpoints']}", r["failed"],
              "yes" if r["p_value"] != "" and r["p_value"] >= UNIFORM_ALPHA else "no"]
             for r in runs if not r["affinity"]]
    sticky = [[r["mode"], r["endpoints"], r["source"], r["connections"],
               r["endpoints_answered"], f"{r['top_share']:.0%}"]
              for r in runs if r["affinity"]]
    return [table(["mode", "endpoints", "connections", "answered", "failed",
                   f"uniform (p >= {UNIFORM_ALPHA})"], plain),
            table(["mode", "endpoints", "source (affinity ClientIP)", "connections",
                   "endpoints reached", "top endpoint share"], sticky)]


def findings(runs: list[dict]) -> list[str]:
    out = []
    for mode in MODES:
        plain = [r for r in runs if r["mode"] == mode and not r["affinity"]]
        sticky = [r for r in runs if r["mode"] == mode and r["affinity"]]
        if not plain:
            continue
        p_values = [r["p_value"] for r in plain if r["p_value"] != ""]
        out.append(f"{mode}: {sum(r['ok'] for r in plain)} connections over "
                   f"{', '.join(str(r['endpoints']) for r in plain)} endpoints reached every "
                   f"endpoint in {sum(r['endpoints_answered'] == r['endpoints'] for r in plain)}"
                   f"/{len(plain)} runs; chi-square p-values vs uniform "
                   f"{min(p_values):.3g}..{max(p_values):.3g} "
                   f"({sum(p >= UNIFORM_ALPHA for p in p_values)}/{len(p_values)} "
                   f"at p >= {UNIFORM_ALPHA}); failed connections: "
                   f"{sum(r['failed'] for r in plain)}")
        tops = [r["top_share"] for r in sticky]
        out.append(f"{mode}, sessionAffinity ClientIP: the top endpoint took "
                   f"{min(tops):.0%}..{max(tops):.0%}"
                   f" of each source's connections ({len(sticky)} source x size runs, "
                   f"{sum(r['ok'] for r in sticky)} connections)")
    return out


def draw_shares(ax, rows: list[dict]) -> None:
    colours = {"iptables": "tab:red", "nftables": "tab:blue"}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode and not r["affinity"]]
        offset = -0.12 if mode == "iptables" else 0.12
        ax.scatter([r["endpoints"] + offset for r in mine], [r["share"] for r in mine],
                   s=12, alpha=0.6, color=colours[mode], label=f"{mode}: one endpoint's share")
    sizes = sorted({r["endpoints"] for r in rows})
    ax.plot(sizes, [1 / n for n in sizes], "k--", label="1/n (uniform)")
    ax.set_xlabel("endpoints n")
    ax.set_ylabel("share of new connections")
    ax.set_title("Per-endpoint share of connections to a ClusterIP")
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def draw_pvalues(ax, runs: list[dict]) -> None:
    markers = {"iptables": "o", "nftables": "s"}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode and not r["affinity"]]
        ax.plot([r["endpoints"] for r in mine], [max(r["p_value"], 1e-300) for r in mine],
                marker=markers[mode], label=f"{mode}, no affinity")
        sticky = [r for r in runs if r["mode"] == mode and r["affinity"] and r["p_value"] != ""]
        ax.scatter([r["endpoints"] for r in sticky], [max(r["p_value"], 1e-300) for r in sticky],
                   marker="x", label=f"{mode}, affinity ClientIP (one source)")
    ax.axhline(UNIFORM_ALPHA, color="gray", linestyle=":", label=f"alpha {UNIFORM_ALPHA}")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["endpoints"] for r in runs}))
    ax.set_xlabel("endpoints n")
    ax.set_ylabel("chi-square p-value vs uniform")
    ax.set_title("Is the split uniform? (affinity: deliberately not)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
