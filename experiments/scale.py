"""Scale: nftables vs iptables mode, sync time and first-packet latency vs N services.

The benchmark of issues 6 and 22 (experiments/scale_measurement.py, shared
with benchmarks/scale_bench.py) as an experiment, with iptables mode through
both iptables backends (issue 19: a spec's iptablesBackend): for N in {100,
1000, 10000, 30000} services x 3 endpoints in nftables mode and in iptables
mode through iptables-legacy, and {100, 1000, 5000} through iptables-nft
(its --noflush restore grows with every chain present: a 10k full sync
takes 25 s to minutes here, and each of the 60 partial syncs ~2 s, so it
stops at 5k; quick: 100, 1000 for all three) it measures, on one node namespace of its own
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
from experiments.scale_measurement import (
    COLOURS,
    VARIANTS,
    draw_latency,
    measure,
    targets,
    variant,
)

NAME = "scale"
TITLE = "nftables vs iptables: sync time and first-packet latency vs number of Services"
# kubernetes PR #126013 (kind): adding one Service on top of 10k with nftables
# partial sync, ~141 ms (performance-anchors.md, "Rule programming").
PUBLISHED_PARTIAL_SYNC_MS = {10000: 141}


# The largest N iptables mode runs through iptables-nft in a full run (see above).
IPTABLES_NFT_MAX = 5000


def plan(quick: bool) -> dict:
    """Sizes per (mode, iptables backend)."""
    if quick:
        sizes = dict.fromkeys(VARIANTS, (100, 1000))
    else:
        full = (100, 1000, 10000, 30000)
        sizes = {key: tuple(n for n in full if key != ("iptables", "nft")
                            or n <= IPTABLES_NFT_MAX) for key in VARIANTS}
        sizes[("iptables", "nft")] += (IPTABLES_NFT_MAX,)
    return {"sizes": sizes, "connects": 500 if quick else 2000,
            "reps": 5 if quick else 20}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    every = sorted({n for sizes in settings["sizes"].values() for n in sizes})
    rows = [measure(n, mode, settings["connects"], settings["reps"], backend=backend or "nft")
            for n in every for mode, backend in VARIANTS
            if n in settings["sizes"][(mode, backend)]]
    ctx.write_csv("scale.csv", rows)
    figures = [ctx.figure("scale_latency_p50.png", lambda ax: draw_latency(ax, rows, "p50")),
               ctx.figure("scale_latency_p99.png", lambda ax: draw_latency(ax, rows, "p99")),
               ctx.figure("scale_sync.png", lambda ax: draw_sync(ax, rows))]
    return Summary(TITLE, findings(rows), tables(rows), figures)


def tables(rows: list[dict]) -> list[str]:
    shape = [[variant(r), r["services"], r["endpoints_per_service"], r["full_lines"],
              r["reps"], "skipped" if r["resync_noop_skipped"] else "rewritten"]
             for r in rows]
    timing = [[variant(r), r["services"], f"{r['full_sync_s']:.2f}",
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
    by = {(variant(r), r["services"]): r for r in rows}
    names = [v for v in ("iptables-nft", "iptables-legacy", "nftables")
             if any(variant(r) == v for r in rows)]
    out = []
    for mode in names:
        sizes = sorted(r["services"] for r in rows if variant(r) == mode)
        small, big = sizes[0], sizes[-1]
        a, b = by[(mode, small)], by[(mode, big)]
        out.append(f"{mode}: full sync {a['full_sync_s']:.2f} s at {small} services, "
                   f"{b['full_sync_s']:.2f} s at {big} ({b['full_lines']} rule lines); "
                   f"one endpoint change p99 {a['change_p99_ms']:.0f} -> "
                   f"{b['change_p99_ms']:.0f} ms; first-packet p50 "
                   f"{a['p50_us']:.0f} -> {b['p50_us']:.0f} µs "
                   f"({b['p50_us'] / a['p50_us']:.2f}x), p99 {a['p99_us']:.0f} -> "
                   f"{b['p99_us']:.0f} µs")
    out += backend_comparison(by)
    out += targets(rows)
    out.append("Reference lines: Kubernetes blog 'NFTables mode for kube-proxy' (2025) "
               "first-packet p50 iptables ~49/61/274 µs at 5k/10k/30k services, nftables "
               "~14 µs flat; kube-proxy nftables partial sync ~141 ms on top of 10k services "
               "(PR #126013). Published on other hardware: compare shapes and ratios only.")
    return out


def backend_comparison(by: dict) -> list[str]:
    """iptables mode through iptables-nft vs iptables-legacy at each N both ran."""
    common = sorted(n for v, n in by if v == "iptables-nft" and ("iptables-legacy", n) in by)
    out = []
    for n in common:
        nft, legacy = by[("iptables-nft", n)], by[("iptables-legacy", n)]
        out.append(f"iptables mode at {n} services, iptables-nft vs iptables-legacy: full sync "
                   f"{nft['full_sync_s']:.2f} vs {legacy['full_sync_s']:.2f} s, one endpoint "
                   f"change p50 {nft['change_p50_ms']:.0f} vs {legacy['change_p50_ms']:.0f} ms, "
                   f"forced resync {nft['resync_s']:.2f} vs {legacy['resync_s']:.2f} s, "
                   f"first packet p50 {nft['p50_us']:.0f} vs {legacy['p50_us']:.0f} µs")
    nft_max = max((n for v, n in by if v == "iptables-nft"), default=None)
    beyond = sorted(n for v, n in by if v == "iptables-legacy"
                    and nft_max is not None and n > nft_max)
    if beyond:
        out.append(f"iptables-nft stops at {nft_max} services in this run (its restore "
                   "grows with the chains present: minutes at 10k); iptables-legacy "
                   f"continues to {beyond[-1]}")
    return out


def draw_sync(ax, rows: list[dict]) -> None:
    for mode in sorted({variant(r) for r in rows}):
        mine = sorted((r["services"], r) for r in rows if variant(r) == mode)
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

