"""Scale of the node proxy in both modes (issues 6 and 22: "Scale benchmark").

For each N (default 100, 1000, 10000, 30000) services x 3 endpoints and each
variant -- nftables mode, iptables mode through iptables-nft and through
iptables-legacy (the two backends a spec's iptablesBackend chooses between;
--iptables-nft-max caps the sizes iptables-nft runs, default 5000: its
--noflush restore grows with every chain present, minutes at 10k with the
partial syncs; 0 lifts the cap) -- in a child
process of its own (so its peak RSS is its own) and in throwaway namespaces
(svtest-scale-<pid>-*, deleted afterwards):

  node     the rules, ip_forward on; veths to the three below
  client   192.168.250.2, a pod-like source (no masquerade)
  ep1/ep2  a tiny TCP server on :8080 (ep1 holds two endpoint IPs)

it measures the full sync (compute + backend.sync with GC paused, as the
agent's sync_rules runs it; turning the API objects into models, which the
agent does as watch events arrive, is the `parse s` column), --reps (20)
each of a single-service add, a single-endpoint change and a service delete
(partial syncs: only that service computed and rewritten; p50/p99), the
periodic resync with nothing changed as the agent runs it (`noop ms`: the
ruleset-generation check that lets it skip), a forced full resync of the
filled table (`resync`: what a resync costs after somebody else's commit),
the child's peak RSS (agent-like: objects, rule set and backend in one
process), and the first-packet latency of many new TCP connections from
the client to one ClusterIP (the service in the middle of the sorted list;
p50/p99 of connect() with plain sockets).

Writes scale.csv and scale.png (latency vs N per mode, the shape of the
Kubernetes blog's chart, with its published points dashed) and prints a
table.  A benchmark, not a test: it asserts nothing about timings.

Run as root:  .venv/bin/python benchmarks/scale_bench.py
              [--sizes 100,1000,10000,30000] [--iptables-nft-max 5000]
              [--variants iptables-nft,iptables-legacy,nftables]
              [--reps 20] [--connects 2000] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.scale_measurement import (
    VARIANTS,
    ScaleError,
    draw_latency,
    measure,
    targets,
    variant,
)

VARIANT_NAMES = {variant({"mode": m, "backend": b}): (m, b) for m, b in VARIANTS}


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for ax, pct in zip(axes, ("p50", "p99")):
        draw_latency(ax, rows, pct)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    head = (f"{'variant':<15} {'N':>6} {'full s':>7} {'noop ms':>8} {'resync':>7}"
            f" {'parse s':>7} {'add p50/p99':>12} {'chg p50/p99':>12}"
            f" {'del p50/p99':>12} {'RSS MiB':>8} {'p50 µs':>7}"
            f" {'p99 µs':>7} {'lines':>7}")
    out = [head, "-" * len(head)]
    for r in rows:
        ops = " ".join(f"{r[f'{op}_p50_ms']:>5.0f}/{r[f'{op}_p99_ms']:<6.0f}"
                       for op in ("add", "change", "delete"))
        out.append(
            f"{variant(r):<15} {r['services']:>6} {r['full_sync_s']:>7.2f} "
            f"{r['resync_noop_p99_ms']:>8.2f} {r['resync_s']:>7.2f} "
            f"{r['parse_s']:>7.2f} {ops} {r['peak_rss_mib']:>8.1f} "
            f"{r['p50_us']:>7.1f} {r['p99_us']:>7.1f} {r['full_lines']:>7}")
    return "\n".join(out) + ("\n(partial syncs in ms, p50/p99 of --reps each; "
                             "noop = periodic resync with nothing changed, p99)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000,30000")
    parser.add_argument("--variants", default=",".join(VARIANT_NAMES),
                        help="of " + ", ".join(VARIANT_NAMES))
    parser.add_argument("--iptables-nft-max", type=int, default=5000,
                        help="largest N iptables mode runs through iptables-nft (0: no cap)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--out-dir", default="/tmp/svclab-scale-bench")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    unknown = set(args.variants.split(",")) - set(VARIANT_NAMES)
    if unknown:
        print(f"--variants: unknown {', '.join(sorted(unknown))}; allowed: "
              + ", ".join(VARIANT_NAMES), file=sys.stderr)
        return 2
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for name in args.variants.split(","):
            mode, backend = VARIANT_NAMES[name]
            if name == "iptables-nft" and args.iptables_nft_max and n > args.iptables_nft_max:
                print(f"skipped: {name} N={n} (> --iptables-nft-max)", file=sys.stderr)
                continue
            try:
                rows.append(measure(n, mode, args.connects, args.reps,
                                    backend=backend or "nft"))
            except ScaleError as err:
                print(f"{name} N={n} failed:\n{err}", file=sys.stderr)
                return 1
            print(f"done: {name} N={n}", file=sys.stderr)
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = os.path.join(args.out_dir, "scale.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    png_path = os.path.join(args.out_dir, "scale.png")
    plot(rows, png_path)
    print(table(rows))
    print("\n".join(targets(rows)))
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
