"""Scale: nftables vs iptables mode, sync time and first-packet latency vs N services.

The benchmark of issues 6 and 22 (experiments/scale_measurement.py, shared
with benchmarks/scale_bench.py) as an experiment: for N in {100, 1000,
10000, 30000} services x 3 endpoints in nftables mode and {100, 1000,
10000} in iptables mode (iptables-nft's restore at 30k takes minutes;
quick: 100, 1000 in both) it measures, on one node namespace of its own
with the agent's real backends and its sync function, the full sync into
an empty table, 20 each of a single-service add, a single-endpoint change
and a service delete (partial syncs; p50/p99), the periodic resync with
nothing changed (the generation check) and a forced one, the peak RSS, and
p50/p99 of new TCP connections to one ClusterIP.  It needs no
lab: the rules of one node and a client are all the measurement touches, as
the issue asks ("on one node namespace").

Plots ours beside the Kubernetes blog's first-packet points (2025, read off
its chart; docs/performance-anchors.md) and kube-proxy's
published nftables partial sync at 10k services -- measured on other
hardware, so compare shapes and ratios, not absolute values.

Writes scale.csv, scale_latency_p50.png, scale_latency_p99.png, scale_sync.png.
"""
from __future__ import annotations

from experiments.framework import Context, Summary, table
from experiments.scale_measurement import COLOURS, MODES, draw_latency, measure, targets

NAME = "scale"
TITLE = "nftables vs iptables: sync time and first-packet latency vs number of Services"
# kubernetes PR #126013 (kind): adding one Service on top of 10k with nftables
# partial sync, ~141 ms (performance-anchors.md, "Rule programming").
PUBLISHED_PARTIAL_SYNC_MS = {10000: 141}


def plan(quick: bool) -> dict:
    if quick:
        sizes = {"iptables": (100, 1000), "nftables": (100, 1000)}
    else:
        sizes = {"iptables": (100, 1000, 10000),
                 "nftables": (100, 1000, 10000, 30000)}
    return {"sizes": sizes, "connects": 500 if quick else 2000,
            "reps": 5 if quick else 20}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    every = sorted({n for sizes in settings["sizes"].values() for n in sizes})
    rows = [measure(n, mode, settings["connects"], settings["reps"])
            for n in every for mode in MODES if n in settings["sizes"][mode]]
    ctx.write_csv("scale.csv", rows)
    figures = [ctx.figure("scale_latency_p50.png", lambda ax: draw_latency(ax, rows, "p50")),
               ctx.figure("scale_latency_p99.png", lambda ax: draw_latency(ax, rows, "p99")),
               ctx.figure("scale_sync.png", lambda ax: draw_sync(ax, rows))]
    return Summary(TITLE, findings(rows), tables(rows), figures)


def tables(rows: list[dict]) -> list[str]:
    shape = [[r["mode"], r["services"], r["endpoints_per_service"], r["full_lines"],
              r["reps"], "skipped" if r["resync_noop_skipped"] else "rewritten"]
             for r in rows]
    timing = [[r["mode"], r["services"], f"{r['full_sync_s']:.2f}",
               f"{r['resync_noop_p99_ms']:.2f}", f"{r['resync_s']:.2f}",
               *(f"{r[f'{op}_p50_ms']:.0f} / {r[f'{op}_p99_ms']:.0f}"
                 for op in ("add", "change", "delete")),
               f"{r['peak_rss_mib']:.0f}", f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}"]
              for r in rows]
    return [table(["mode", "services", "endpoints each", "rule lines (full sync)",
                   "partial syncs of each kind", "periodic resync, nothing changed"],
                  shape),
            table(["mode", "services", "full sync s", "noop resync p99 ms",
                   "forced resync s", "add p50/p99 ms", "change p50/p99 ms",
                   "delete p50/p99 ms", "peak RSS MiB", "first packet p50 µs",
                   "p99 µs"], timing)]


def findings(rows: list[dict]) -> list[str]:
    by = {(r["mode"], r["services"]): r for r in rows}
    out = []
    for mode in MODES:
        sizes = sorted(r["services"] for r in rows if r["mode"] == mode)
        small, big = sizes[0], sizes[-1]
        a, b = by[(mode, small)], by[(mode, big)]
        out.append(f"{mode}: full sync {a['full_sync_s']:.2f} s at {small} services, "
                   f"{b['full_sync_s']:.2f} s at {big} ({b['full_lines']} rule lines); "
                   f"one endpoint change p99 {a['change_p99_ms']:.0f} -> "
                   f"{b['change_p99_ms']:.0f} ms; first-packet p50 "
                   f"{a['p50_us']:.0f} -> {b['p50_us']:.0f} µs "
                   f"({b['p50_us'] / a['p50_us']:.2f}x), p99 {a['p99_us']:.0f} -> "
                   f"{b['p99_us']:.0f} µs")
    out += targets(rows)
    out.append("Reference lines: Kubernetes blog 'NFTables mode for kube-proxy' (2025) "
               "first-packet p50 iptables ~49/61/274 µs at 5k/10k/30k services, nftables "
               "~14 µs flat; kube-proxy nftables partial sync ~141 ms on top of 10k services "
               "(PR #126013). Published on other hardware: compare shapes and ratios only.")
    return out


def draw_sync(ax, rows: list[dict]) -> None:
    for mode in MODES:
        mine = sorted((r["services"], r) for r in rows if r["mode"] == mode)
        xs = [n for n, _ in mine]
        ax.plot(xs, [r["full_sync_s"] * 1e3 for _, r in mine], marker="o",
                color=COLOURS[mode], label=f"svclab {mode}: full sync")
        ax.plot(xs, [r["change_p99_ms"] for _, r in mine], marker="s", linestyle=":",
                color=COLOURS[mode], label=f"svclab {mode}: one endpoint change (p99)")
        ax.plot(xs, [r["delete_p99_ms"] for _, r in mine], marker="v", linestyle="-.",
                color=COLOURS[mode], label=f"svclab {mode}: delete one service (p99)")
    ref = sorted(PUBLISHED_PARTIAL_SYNC_MS.items())
    ax.scatter(*zip(*ref), marker="x", s=60, color=COLOURS["nftables"], alpha=0.6,
               label="kube-proxy nftables add one service (PR #126013, other hardware)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of Services (x 3 endpoints)")
    ax.set_ylabel("sync time (ms)")
    ax.set_title("Rule programming cost vs number of Services")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)

