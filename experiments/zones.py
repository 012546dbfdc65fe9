"""Zones: how much Service traffic crosses Availability Zones, and what keeps it local.

A 3-zone lab (topo/clusters/zones.yaml: the control plane and one worker in
us-east-1a, one worker each in 1b and 1c) runs a Deployment pinned per
worker and one caller pod per worker.  For each case the experiment opens
connections from every caller to the ClusterIP (and, for the ELB cases,
from the outside client to each zone's ELB address of an NLB) and counts
the connections that crossed a zone boundary, against what the rules say
(experiments/zones_model.py):

  * no preference: every endpoint, so most connections cross;
  * trafficDistribution PreferSameZone / PreferSameNode: none cross while
    the zone (node) has an endpoint; a zone without one falls back to all;
  * service.kubernetes.io/topology-mode: Auto: hints allotted by the zones'
    CPU, and none at all (with the controller's Event) when there are
    fewer endpoints than zones;
  * the NLB with cross-zone load balancing off (its default) and on, with
    and without PreferSameZone.

It reports the share that crossed, a chi-square test of it against the
expected share, the endpoints reached (each must be one the rules allow),
and what AWS would bill per TB of such traffic.  Writes zones_spread.csv,
zones_checks.json and zones_cross_share.png.
"""
from __future__ import annotations

import json
import time

from experiments import cluster_ops as kube
from experiments.framework import Context, Summary, table
from experiments.zones_model import (
    AUTO,
    NONE,
    SAME_NODE,
    SAME_ZONE,
    Ep,
    expected_from_pod,
    expected_via_elb,
)
from labd.lb_status import lb_status
from probes.spread.probe import UNIFORM_ALPHA, spread
from probes.spread.zones import INTER_AZ_USD_PER_GB, load_zone_map
from probes.stats import StatsError, chi_square
from topo.spec import default_spec_path, load_spec
from topo.state import LabPaths

NAME = "zones"
TITLE = "Availability Zones: topology-aware routing and the ELB's cross-zone load balancing"
SPEC = default_spec_path().parent / "zones.yaml"
TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
CROSS_ZONE = "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled"
SETTLE_SECONDS = 1.0       # slices changed -> every proxy agent has synced (p99 well below)

# (case, preference, replicas per zone index, ELB cross-zone: None = ClusterIP case)
CASES = (
    ("no preference", NONE, (2, 2, 2), None),
    ("PreferSameZone", SAME_ZONE, (2, 2, 2), None),
    ("PreferSameNode", SAME_NODE, (2, 2, 2), None),
    ("PreferSameZone, zone a empty", SAME_ZONE, (0, 2, 2), None),
    ("topology-mode Auto, 3 per zone", AUTO, (3, 3, 3), None),
    ("topology-mode Auto, 2 endpoints", AUTO, (0, 2, 0), None),
    ("NLB cross-zone off", NONE, (2, 2, 2), False),
    ("NLB cross-zone on", NONE, (2, 2, 2), True),
    ("NLB cross-zone off + PreferSameZone", SAME_ZONE, (2, 2, 2), False),
)


def plan(quick: bool) -> dict:
    return {"modes": ("iptables",) if quick else ("iptables", "nftables"),
            "connections": 150 if quick else 1000}


def run(ctx: Context) -> Summary:
    settings = plan(ctx.quick)
    rows, checks = [], []
    for mode in settings["modes"]:
        with ctx.lab(str(SPEC), proxy_mode=mode) as lab:
            checks += measure(lab, mode, settings["connections"], rows)
    ctx.write_csv("zones_spread.csv", rows)
    ctx.write_json("zones_checks.json", checks)
    figure = ctx.figure("zones_cross_share.png", lambda ax: draw(ax, rows))
    return Summary(TITLE, findings(rows, checks), [summary_table(rows)], [figure])


# --- the lab ------------------------------------------------------------------

class Layout:
    """The zones spec as the experiment uses it: one worker per zone, in zone order."""

    def __init__(self):
        spec = load_spec(SPEC)
        self.zones = tuple(z.name for z in spec.network.zones)
        self.worker = {}
        for node in spec.nodes:
            if not node.is_control_plane and node.zone not in self.worker:
                self.worker[node.zone] = node.name
        missing = [z for z in self.zones if z not in self.worker]
        if missing:
            raise kube.ExperimentError(f"{SPEC}: no worker in zone(s) {', '.join(missing)}")

    def deployment(self, zone: str) -> str:
        return f"web-{zone[-1]}"

    def caller(self, zone: str) -> str:
        return f"caller-{zone[-1]}"


def setup(lab, layout: Layout) -> None:
    for zone in layout.zones:
        lab.api.create("deployments", kube.deployment(
            layout.deployment(zone), 2, {"app": "web", "zone": zone[-1]},
            node=layout.worker[zone]), namespace="default")
        lab.api.create("pods", kube.pod(layout.caller(zone), layout.worker[zone]),
                       namespace="default")
    lab.api.create("services", kube.service("web", {"app": "web"}), namespace="default")
    lab.api.create("services", kube.service(
        "web-lb", {"app": "web"}, type="LoadBalancer",
        annotations={**kube.NLB, CROSS_ZONE: "false"}, externalTrafficPolicy="Cluster"),
        namespace="default")
    for zone in layout.zones:
        kube.running_pod(lab, layout.caller(zone))
    kube.wait_endpoints(lab, "web", 2 * len(layout.zones))


def configure(lab, layout: Layout, preference: str, replicas: tuple[int, ...],
              cross_zone: bool | None) -> None:
    """Scale, set the preference on both Services and the LB's cross-zone flag."""
    for zone, count in zip(layout.zones, replicas):
        lab.api.patch("deployments", layout.deployment(zone), {"spec": {"replicas": count}},
                      namespace="default")
    spec = {"trafficDistribution": preference if preference in (SAME_ZONE, SAME_NODE)
            else None}
    annotations = {TOPOLOGY_MODE: "Auto" if preference == AUTO else None}
    for name in ("web", "web-lb"):
        lab.api.patch("services", name, {"metadata": {"annotations": annotations},
                                          "spec": spec}, namespace="default")
    if cross_zone is not None:
        lab.api.patch("services", "web-lb", {"metadata": {"annotations": {
            CROSS_ZONE: "true" if cross_zone else "false"}}}, namespace="default")
    kube.wait_endpoints(lab, "web", sum(replicas))


def endpoints(lab, service: str) -> list[Ep]:
    slices, _ = lab.api.list("endpointslices", "default",
                             label_selector=f"kubernetes.io/service-name={service}")
    found = []
    for item in slices:
        for e in item.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready"):
                hints = [h["name"] for h in (e.get("hints") or {}).get("forZones") or []]
                found.append(Ep(e["addresses"][0], e.get("nodeName", ""), e.get("zone", ""),
                                tuple(hints)))
    return found


def wait_hints(lab, service: str, preference: str, count: int) -> list[Ep]:
    """Until the slices show the case's endpoints, zoned and hinted as it implies."""
    def settled():
        found = endpoints(lab, service)
        if len(found) != count or not all(e.zone for e in found):
            return None
        hinted = [bool(e.hinted_zones) for e in found]
        if preference in (SAME_ZONE, SAME_NODE) and not all(hinted):
            return None
        if preference == NONE and any(hinted):
            return None
        return found
    found = kube.wait_for(f"endpoints of {service} for {preference}", settled, timeout=30)
    if preference == AUTO:      # the controller decides; give it its moment to settle
        time.sleep(SETTLE_SECONDS)
        found = endpoints(lab, service)
    time.sleep(SETTLE_SECONDS)
    return found


def topology_events(lab) -> dict[str, str]:
    """The EndpointSlice controller's hints Events on Service web: name -> text."""
    events, _ = lab.api.list("events", "default")
    return {e["metadata"]["name"]: f"{e.get('reason')}: {e.get('message')}" for e in events
            if (e.get("involvedObject") or {}).get("name") == "web"
            and str(e.get("reason", "")).startswith("TopologyAwareHints")}


def lb_targets(lab, layout: Layout) -> tuple[dict[str, str], dict[str, str]]:
    """(in-service node -> zone, zone -> VIP) of web-lb, once every worker is healthy."""
    workers = {node: zone for zone, node in layout.worker.items()}

    def healthy():
        lb = next((r for r in lb_status(lab.name) if r["key"] == "default/web-lb"), None)
        if lb is None:
            return None
        states = {t["node"]: t["state"] for t in lb["targets"]}
        return lb if all(states.get(n) == "healthy" for n in workers) else None
    lb = kube.wait_for("web-lb's targets healthy", healthy, timeout=60, every=0.3)
    zones = load_zone_map(LabPaths(lab.name))
    records = json.loads(LabPaths(lab.name).outside_dns.read_text())
    vips = {zones.address_zone[ip]: ip for ip in records.get(lb["hostname"], [])
            if ip in zones.address_zone}
    return workers, vips


# --- measuring ------------------------------------------------------------------

def measure(lab, mode: str, connections: int, rows: list) -> list[dict]:
    layout = Layout()
    setup(lab, layout)
    checks = []
    for case, preference, replicas, cross_zone in CASES:
        before = topology_events(lab)
        configure(lab, layout, preference, replicas, cross_zone)
        eps = wait_hints(lab, "web", preference, sum(replicas))
        events = [text for name, text in topology_events(lab).items() if name not in before]
        check = {"mode": mode, "case": case, "hinted": sum(bool(e.hinted_zones) for e in eps),
                 "endpoints": len(eps), "events": events}
        if cross_zone is None:
            ip = kube.cluster_ip(lab, "web")
            for zone in layout.zones:
                share, allowed = expected_from_pod(eps, preference, layout.worker[zone], zone)
                result = spread(lab.name, layout.caller(zone), None, ip, 80, "tcp",
                                connections, 2.0, 50)
                rows.append(row(mode, case, f"pod in {zone}", result, share, allowed))
        else:
            targets, vips = lb_targets(lab, layout)
            check["zoneAddresses"] = vips
            for zone in layout.zones:
                share, allowed = expected_via_elb(eps, preference, zone, targets, cross_zone)
                result = spread(lab.name, "client", None, vips[zone], 80, "tcp",
                                connections, 2.0, 50)
                rows.append(row(mode, case, f"ELB node in {zone}", result, share, allowed))
        checks.append(check)
    return checks


def row(mode: str, case: str, path: str, result, expected: float, allowed: set[str]) -> dict:
    cz = result.cross_zone
    answered = cz.connections if cz else 0
    crossed = cz.crossed if cz else 0
    reached = {e.ip for e in result.endpoints}
    return {"mode": mode, "case": case, "path": path, "connections": answered,
            "failed": sum(result.failures.values()), "crossed": crossed,
            "share": round(crossed / answered, 4) if answered else None,
            "expected": round(expected, 4), "p_value": fit(crossed, answered, expected),
            "outside_allowed": ",".join(sorted(reached - allowed)),
            "crossings": cz.crossings if cz else 0,
            "usd_per_tb": round(2 * (cz.crossings / answered) * INTER_AZ_USD_PER_GB * 1000, 2)
            if answered else None}


def fit(crossed: int, total: int, expected: float) -> float | None:
    """Chi-square p-value of crossed/not crossed against the expected share; an
    expected share of exactly 0 or 1 allows no exception (p is 1 or 0)."""
    if total == 0:
        return None
    if expected in (0.0, 1.0):
        return 1.0 if crossed == round(expected * total) else 0.0
    try:
        return chi_square({"crossed": crossed, "stayed": total - crossed},
                          {"crossed": expected, "stayed": 1 - expected}).p_value
    except StatsError:
        return None


def agrees(r: dict) -> bool:
    return (r["failed"] == 0 and not r["outside_allowed"] and r["p_value"] is not None
            and r["p_value"] > UNIFORM_ALPHA)


# --- reporting ------------------------------------------------------------------

def findings(rows: list[dict], checks: list[dict]) -> list[str]:
    bad = [r for r in rows if not agrees(r)]
    out = [f"{len(rows) - len(bad)} of {len(rows)} measurements agree with the expected "
           f"cross-zone share (chi-square p > {UNIFORM_ALPHA}) and reached only allowed "
           "endpoints"]
    out += [f"DISAGREES: {r['mode']} {r['case']} via {r['path']}: {r['share']} crossed, "
            f"expected {r['expected']}, p {r['p_value']}, outside allowed "
            f"[{r['outside_allowed']}], failed {r['failed']}" for r in bad]
    for check in checks:
        if check["events"]:
            out.append(f"{check['mode']} {check['case']}: {check['hinted']} of "
                       f"{check['endpoints']} endpoints hinted; events: "
                       + "; ".join(check["events"][-2:]))
    return out


def summary_table(rows: list[dict]) -> str:
    return table(["mode", "case", "path", "crossed", "expected", "p", "$/TB"],
                 [[r["mode"], r["case"], r["path"], r["share"], r["expected"],
                   "-" if r["p_value"] is None else f"{r['p_value']:.3g}", r["usd_per_tb"]]
                  for r in rows])


def draw(ax, rows: list[dict]) -> None:
    mode = rows[0]["mode"] if rows else ""
    cases = [c[0] for c in CASES]
    observed, expected = [], []
    for case in cases:
        mine = [r for r in rows if r["case"] == case and r["mode"] == mode and r["connections"]]
        total = sum(r["connections"] for r in mine) or 1
        observed.append(sum(r["crossed"] for r in mine) / total)
        expected.append(sum(r["expected"] * r["connections"] for r in mine) / total)
    positions = range(len(cases))
    ax.barh([p + 0.2 for p in positions], observed, 0.4, label="measured")
    ax.barh([p - 0.2 for p in positions], expected, 0.4, label="expected", alpha=0.6)
    ax.set_yticks(list(positions), cases, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of connections crossing an AZ boundary ({mode})")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
