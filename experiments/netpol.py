"""NetworkPolicy: the evaluator's truth table against real packets, case by case.

The upstream network-policy e2e model (experiments/netpol_cases.py): pods
a, b, c in namespaces x, y, z, one pod per node.  For each case of the
catalogue the policies are created, then every (source, destination, port)
cell is probed from inside the source pod (probes/matrix/policy.py) and
compared with agents.policy.evaluate.  Policies take effect when every
node's policy agent has synced, so a case is probed again (as the upstream
suite retries) until every cell agrees or CONVERGE_S passes; the attempts
and the time are recorded.  Two special cases:

  * update-under-traffic: a connection held open through a policy that is
    then replaced survives (conntrack: established flows are accepted at the
    top of cali-FORWARD), while new connections follow the new policy;
  * service-interplay: a NodePort (externalTrafficPolicy Cluster vs Local)
    with an ipBlock policy admitting the client's address.  The policy is
    judged on the endpoint's node, after DNAT; under Cluster a packet that
    entered another node arrives SNATed to that node's IP and the ipBlock
    no longer matches; under Local the client IP survives (or the node
    drops it when it has no local endpoint).

Both proxy modes run (also with --quick, which runs fewer cases).  Writes
netpol_cells.csv (every cell), netpol_cases.json, netpol_matrices.md
(expected and observed tables per case), netpol_interplay.csv,
netpol_agreement.png.
"""
from __future__ import annotations

from experiments import netpol_cases as catalogue
from experiments import netpol_lab as nl
from experiments.framework import Context, Summary, table
from experiments.netpol_cases import UpdateCase

NAME = "netpol"
TITLE = "NetworkPolicy: expected (evaluator) vs observed (packets), case by case"
MODES = ("iptables", "nftables")


def run(ctx: Context) -> Summary:
    results, interplay, updates = [], [], []
    for mode in MODES:
        with ctx.lab(proxy_mode=mode) as lab:
            nl.setup(lab)
            for case in catalogue.cases(ctx.quick):
                results.append(nl.run_case(lab, mode, case))
            update = UpdateCase()
            if update.quick or not ctx.quick:
                updates.append(nl.run_update(lab, mode, update))
            interplay += nl.run_interplay(lab, mode)
    write_outputs(ctx, results, updates, interplay)
    figure = ctx.figure("netpol_agreement.png", lambda ax: draw(ax, results, updates))
    return Summary(TITLE, findings(results, updates, interplay),
                   tables(results, updates, interplay), [figure])


# --- outputs ------------------------------------------------------------------------

def all_matrices(results: list[dict], updates: list[dict]) -> list[dict]:
    """Every probed matrix: the cases, then the update's before and after."""
    found = list(results)
    for update in updates:
        found += [update["before"], update["after"]]
    return found


def write_outputs(ctx: Context, results: list[dict], updates: list[dict],
                  interplay: list[dict]) -> None:
    rows = []
    for result in all_matrices(results, updates):
        for cell in result["matrix"].cells:
            data = cell.to_json()
            rows.append({"mode": result["mode"], "case": result["case"],
                         "source": data["source"], "target": data["target"],
                         "port": data["port"], "protocol": data["protocol"],
                         "expected": data["expected"], "observed": data["observed"],
                         "outcome": data["outcome"], "agree": data["agree"],
                         "egress": data["reasons"]["egress"],
                         "ingress": data["reasons"]["ingress"]})
        for lookup in result.get("lookups", []):
            rows.append({"mode": result["mode"], "case": result["case"], **lookup})
    ctx.write_csv("netpol_cells.csv", rows)
    ctx.write_json("netpol_cases.json", [case_record(r) for r in all_matrices(results, updates)]
                   + [{k: v for k, v in u.items() if k not in ("before", "after")}
                      for u in updates])
    ctx.write_csv("netpol_interplay.csv", interplay)
    (ctx.out / "netpol_matrices.md").write_text(nl.matrices_markdown(
        all_matrices(results, updates)))


def case_record(result: dict) -> dict:
    matrix = result["matrix"]
    lookups = result.get("lookups", [])
    return {"mode": result["mode"], "case": result["case"], "about": result["about"],
            "agree": matrix.agree + sum(1 for x in lookups if x["agree"]),
            "total": len(matrix.cells) + len(lookups), "attempts": result["attempts"],
            "seconds": round(result["seconds"], 2), "policies": result["policies"]}


def agreement(result: dict) -> tuple[int, int]:
    record = case_record(result)
    return record["agree"], record["total"]


def cell_counts(result: dict) -> tuple[int, int, int]:
    """(allowed and agreeing, denied and agreeing, disagreeing) cells of a result."""
    verdicts = [(c.expected, c.ok) for c in result["matrix"].cells]
    verdicts += [(x["expected"] == "allowed", x["agree"]) for x in result.get("lookups", [])]
    return (sum(1 for allowed, ok in verdicts if ok and allowed),
            sum(1 for allowed, ok in verdicts if ok and not allowed),
            sum(1 for _, ok in verdicts if not ok))


def draw(ax, results: list[dict], updates: list[dict]) -> None:
    matrices = all_matrices(results, updates)
    names = list(dict.fromkeys(r["case"] for r in matrices))
    modes = [m for m in MODES if any(r["mode"] == m for r in matrices)]
    width = 0.8 / max(1, len(modes))
    top = max((sum(cell_counts(r)) for r in matrices), default=1)
    for index, mode in enumerate(modes):
        counts = []
        for name in names:
            found = [cell_counts(r) for r in matrices if r["case"] == name and r["mode"] == mode]
            counts.append(found[0] if found else (0, 0, 0))
        xs = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(names))]
        allowed = [c[0] for c in counts]
        denied = [c[1] for c in counts]
        wrong = [c[2] for c in counts]
        hatch = "//" if index else None
        ax.bar(xs, allowed, width, color="tab:green", hatch=hatch, edgecolor="white",
               label=f"{mode}: allowed, as expected")
        ax.bar(xs, denied, width, bottom=allowed, color="tab:gray", hatch=hatch,
               edgecolor="white", label=f"{mode}: denied, as expected")
        ax.bar(xs, wrong, width, bottom=[a + d for a, d in zip(allowed, denied)],
               color="red", label=f"{mode}: disagree" if any(wrong) else None)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=40, ha="right", fontsize=7)
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("cells (source x destination x port)")
    ax.set_title("NetworkPolicy truth tables: observed vs evaluator, per case and proxy mode",
                 fontsize=10)
    ax.legend(fontsize=6, ncol=2)


def findings(results: list[dict], updates: list[dict], interplay: list[dict]) -> list[str]:
    matrices = all_matrices(results, updates)
    counts = [agreement(r) for r in matrices]
    out = [f"{sum(a for a, _ in counts)} of {sum(t for _, t in counts)} cells agree with the "
           f"evaluator, over {len(counts)} truth tables in "
           f"{len({r['mode'] for r in matrices})} proxy mode(s)"]
    for mode in MODES:
        mine = [agreement(r) for r in matrices if r["mode"] == mode]
        if not mine:
            continue
        good, total = sum(a for a, _ in mine), sum(t for _, t in mine)
        slow = max((r["seconds"] for r in matrices if r["mode"] == mode), default=0.0)
        first = sum(1 for r in matrices if r["mode"] == mode and r["attempts"] == 1)
        out.append(f"{mode}: {good} of {total} cells agree over {len(mine)} truth tables; "
                   f"{first} agreed on the first probe (a case is probed again until it "
                   f"agrees or {nl.CONVERGE_S:.0f} s pass; slowest {slow:.1f} s)")
    for update in updates:
        out.append(f"{update['mode']}: policy replaced under traffic: the open connection "
                   f"{'survived' if update['survived'] else 'was cut'} "
                   f"({update['held_detail']}); new connections from "
                   f"{'/'.join(UpdateCase().holder)} were "
                   f"{update['new_from_holder']} after the update")
    out += nl.interplay_findings(interplay)
    return out


def tables(results: list[dict], updates: list[dict], interplay: list[dict]) -> list[str]:
    rows = []
    for result in all_matrices(results, updates):
        good, total = agreement(result)
        rows.append([result["case"], result["mode"], f"{good}/{total}", result["attempts"],
                     f"{result['seconds']:.1f}", result["about"]])
    cases_table = table(["case", "mode", "cells agree", "attempts", "s", "what"], rows)
    return [cases_table, nl.interplay_table(interplay)]


__all__ = ["NAME", "TITLE", "run", "MODES"]
