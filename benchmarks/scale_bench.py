"""Scale of the node proxy in both modes (issue 6: "Scale benchmark").

For each N (default 100, 1000, 10000) services x 3 endpoints and each mode
(iptables, nftables), in a child process of its own (so its peak RSS is its
own) and in throwaway namespaces (svtest-scale-<pid>-*, deleted afterwards):

  node     the rules, ip_forward on; veths to the three below
  client   192.168.250.2, a pod-like source (no masquerade)
  ep1/ep2  a tiny TCP server on :8080 (ep1 holds two endpoint IPs)

it measures the full sync (compute + backend.sync with GC paused, as the
agent's sync_rules runs it; turning the API objects into models, which the
agent does as watch events arrive, is the `parse s` column), a
single-service add, a single-endpoint change and a service delete (partial
syncs: only that service computed and rewritten), a full resync of the
filled table (`resync`, the agent's periodic one), the child's peak RSS
(agent-like: objects, rule set and backend in one process), and the
first-packet latency of many new TCP
connections from the client to one ClusterIP (the service in the middle of
the sorted list; p50/p99 of connect() with plain sockets).

Writes scale.csv and scale.png (latency vs N per mode, the shape of the
Kubernetes blog's chart, with its published points dashed) and prints a
table.  A benchmark, not a test: it asserts nothing about timings.

Run as root:  .venv/bin/python benchmarks/scale_bench.py [--sizes 100,1000,10000]
              [--connects 2000] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.scale_measurement import MODES, ScaleError, draw_latency, measure, targets


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
    head = (f"{'mode':<9} {'N':>6} {'full s':>7} {'resync':>7} {'parse s':>7}"
            f" {'add ms':>7}"
            f" {'chg ms':>7} {'del ms':>7} {'RSS MiB':>8} {'p50 µs':>7}"
            f" {'p99 µs':>7} {'lines':>7}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(
            f"{r['mode']:<9} {r['services']:>6} {r['full_sync_s']:>7.2f} "
            f"{r['resync_s']:>7.2f} {r['parse_s']:>7.2f} "
            f"{r['add_sync_s'] * 1e3:>7.1f} "
            f"{r['change_sync_s'] * 1e3:>7.1f} "
            f"{r['delete_sync_s'] * 1e3:>7.1f} {r['peak_rss_mib']:>8.1f} "
            f"{r['p50_us']:>7.1f} {r['p99_us']:>7.1f} {r['full_lines']:>7}")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--out-dir", default="/tmp/svclab-scale-bench")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in args.modes.split(","):
            try:
                rows.append(measure(n, mode, args.connects))
            except ScaleError as err:
                print(f"{mode} N={n} failed:\n{err}", file=sys.stderr)
                return 1
            print(f"done: {mode} N={n}", file=sys.stderr)
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
