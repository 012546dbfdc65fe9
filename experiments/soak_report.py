"""The soak's results: leftover totals, files, plots and the summary.

`leftover_totals` turns the raw reports of soak_checks and soak_monitor into
one count per kind of leftover (every one must be 0) plus the details; the
rest writes soak_probes.csv, soak_events.csv, soak_samples.csv,
soak_result.json, soak_timeline.png and soak_memory.png and the Summary.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import asdict

from experiments.framework import Context, Summary, table
from experiments.soak_schedule import probe_totals

FAULT_COLOURS = {"node-cut": "tab:red", "proxy-restart": "tab:orange",
                 "policy-restart": "tab:purple", "stable-pod-delete": "tab:green"}


def leftover_totals(rules: dict, conntrack: dict, hosts: dict, start: dict,
                    objects: dict, connections: dict) -> dict:
    def chains(agent: str, *keys: str) -> int:
        return sum(len(node[agent][k]) for node in rules.values() for k in keys)
    before = start["api_connections"]
    changed = {k: objects[k] - start["objects"].get(k, 0) for k in objects
               if objects[k] != start["objects"].get(k, 0)}
    counts = {
        "proxy chains no object needs": chains("proxy", "leftover"),
        "proxy chains missing or with other rules": chains("proxy", "missing", "differs"),
        "policy chains no object needs": chains("policy", "leftover"),
        "policy chains missing or with other rules": chains("policy", "missing", "differs"),
        "conntrack entries to deleted Services/pods (UDP, established TCP)":
            sum(c["leftover"] for c in conntrack.values()),
        "pod hosts without a pod": len(hosts["pod_hosts_without_pod"]),
        "Running pods without a host": len(hosts["running_pods_without_host"]),
        "cali interfaces without a pod": hosts["cali_interfaces_extra"],
        "network namespaces without a host": hosts["namespaces_without_host"],
        "processes in those namespaces": hosts["processes_in_those_namespaces"],
        "recorded processes gone or without a host": hosts["recorded_processes_gone_or_hostless"],
        "pods with more processes than a fresh one": len(
            hosts["pods_with_more_processes_than_at_start"]),
        "API objects more or fewer than before the churn": sum(abs(v) for v in changed.values()),
        "API server connections more than before the churn": max(0, sum(connections.values())
                                                                 - sum(before.values())),
    }
    return {"counts": counts, "total": sum(counts.values()),
            "details": {"rules": rules, "conntrack": conntrack, "hosts": hosts,
                        "objects_changed": changed, "objects": objects,
                        "api_connections": {"before": before, "after": connections},
                        "conntrack_expiring": sum(c["expiring"] for c in conntrack.values())}}


def write(ctx: Context, title: str, settings: dict, result: dict) -> Summary:
    t0 = result["churn_start"]
    probes = [{**r, "since_s": round(r["t"] - t0, 3)} for r in result["probes"]]
    events = [{**e, "since_s": round(e["t"] - t0, 3)} for e in result["events"]]
    write_rows(ctx, "soak_probes.csv", probes)
    write_rows(ctx, "soak_events.csv", events)
    write_rows(ctx, "soak_samples.csv", result["samples"])
    totals = probe_totals(result["probes"])
    actions = Counter(e["kind"] for e in result["events"] if e["ok"])
    failed_actions = Counter(e["kind"] for e in result["events"] if not e["ok"])
    data = {"mode": result["mode"], "settings": {**settings, "limits": asdict(
        settings["limits"])}, "probes": totals, "leftovers": result["leftovers"],
            "memory": result["memory"], "windows": [{**asdict(w), "affects": sorted(w.affects)}
                                    for w in result["windows"]],
            "unexplained_failures": [  # the first few, to look at
                {k: r.get(k) for k in ("target", "t", "ms", "err", "pod")}
                for r in result["probes"] if r["failed"] and not r["explained_by"]][:20],
            "actions": dict(actions), "actions_refused": dict(failed_actions),
            "traffic_answers": result["traffic"],
            "churn_seconds": round(result["churn_end"] - t0, 1)}
    ctx.write_json("soak_result.json", data)
    figures = [ctx.figure("soak_timeline.png", lambda ax: draw_timeline(ax, result)),
               ctx.figure("soak_memory.png", lambda ax: draw_memory(ax, result))]
    return Summary(title, findings(data), tables(data), figures)


def write_rows(ctx: Context, name: str, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(ctx.out / name, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def findings(data: dict) -> list[str]:
    probes = data["probes"]
    total = sum(t["probes"] for t in probes.values())
    failed = sum(t["failed"] for t in probes.values())
    unexplained = sum(t["unexplained"] for t in probes.values())
    kinds = Counter(w["kind"] for w in data["windows"])
    leftovers = data["leftovers"]
    nonzero = {k: v for k, v in leftovers["counts"].items() if v}
    out = [f"{data['mode']} mode, {data['churn_seconds']:.0f} s of churn: "
           + ", ".join(f"{n} {k}" for k, n in sorted(data["actions"].items())
                       if k not in ("churn-start", "churn-end", "checks-done",
                                    "churn-cleaned") and not k.endswith("-end"))
           + "; faults: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
           f"{total} probes of {len(probes)} stable targets: {failed} failed, "
           f"{failed - unexplained} inside the window of a fault that explains them, "
           f"{unexplained} unexplained",
           "leftovers after the churn: " + ("none of any kind" if not nonzero else
                                            "; ".join(f"{k}: {v}" for k, v in nonzero.items())),
           f"conntrack entries to deleted Services/pods still closing (TCP, expire by "
           f"themselves): {leftovers['details']['conntrack_expiring']}"]
    memory = data["memory"]
    if memory:
        out.append("RSS MiB start/peak/end: " + "; ".join(
            f"{k} {m['start_mib']}/{m['peak_mib']}/{m['end_mib']}"
            for k, m in sorted(memory.items())))
    return out


def tables(data: dict) -> list[str]:
    probes = table(["stable target", "probes", "failed", "explained by a fault",
                    "unexplained"],
                   [[k, t["probes"], t["failed"], t["explained"], t["unexplained"]]
                    for k, t in sorted(data["probes"].items())])
    leftovers = table(["leftover", "count"],
                      [[k, v] for k, v in data["leftovers"]["counts"].items()])
    memory = table(["program", "RSS start MiB", "peak MiB", "end MiB"],
                   [[k, m["start_mib"], m["peak_mib"], m["end_mib"]]
                    for k, m in sorted(data["memory"].items())])
    return [probes, leftovers, memory]


def draw_timeline(ax, result: dict) -> None:
    t0 = result["churn_start"]
    for w in result["windows"]:
        ax.axvspan(w.start - t0, w.until - t0, color=FAULT_COLOURS.get(w.kind, "gray"),
                   alpha=0.15 if w.affects else 0.07)
    shown = set()
    for w in result["windows"]:
        if w.kind not in shown:
            shown.add(w.kind)
            ax.plot([], [], color=FAULT_COLOURS.get(w.kind, "gray"), linewidth=6, alpha=0.3,
                    label=f"{w.kind} window")
    per_second: dict[tuple[str, str], Counter] = {}
    for r in result["probes"]:
        kind = "ok" if not r["failed"] else ("explained" if r["explained_by"] else "unexplained")
        per_second.setdefault((r["target"], kind), Counter())[math.floor(r["t"] - t0)] += 1
    styles = {"ok": ("-", 1.0), "explained": ("none", 1.0), "unexplained": ("none", 1.0)}
    for (target, kind), counts in sorted(per_second.items()):
        xs = sorted(counts)
        line, _ = styles[kind]
        marker = {"ok": None, "explained": "x", "unexplained": "o"}[kind]
        ax.plot(xs, [counts[x] for x in xs], linestyle=line, marker=marker, markersize=3,
                linewidth=0.8, label=f"{target}: {kind} probes/s")
    ax.set_xlabel("seconds since the churn started")
    ax.set_ylabel("probes per second")
    ax.set_title("Stable services under churn: probes, failures and fault windows")
    twin = ax.twinx()
    samples = result["samples"]
    twin.plot([s["t"] - t0 for s in samples], [s["pods"] for s in samples], color="gray",
              linestyle=":", label="pods (API)")
    twin.set_ylabel("pods")
    ax.legend(fontsize=6, loc="upper left")
    twin.legend(fontsize=6, loc="upper right")


def draw_memory(ax, result: dict) -> None:
    t0 = result["churn_start"]
    samples = result["samples"]
    keys = sorted({k for s in samples for k in s if k.startswith("rss_kib:")})
    for key in keys:
        series = [(s["t"] - t0, s[key] / 1024) for s in samples if s.get(key) not in ("", None)]
        if series:
            ax.plot(*zip(*series), label=key.split(":", 1)[1], linewidth=1)
    ax.axvline(result["churn_end"] - t0, color="gray", linestyle="--", label="churn ends")
    ax.set_xlabel("seconds since the churn started")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Memory of the lab daemon and agents")
    ax.legend(fontsize=6)
