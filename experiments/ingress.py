"""ingress: client -> ALB -> NodePort -> pod, with a capture on each hop.

Two Deployments of the built-in workload server (`web`, 3 pods; `api`, 2
pods), each exposed as a NodePort Service, behind ONE Ingress of class
`alb` with a host rule and two paths (shop.example.com: `/api` -> api, `/`
-> web).  The ALB controller makes an internet-facing ALB on the elb host
with target-type instance (every worker's NodePort); the outside client
reaches it by the ALB's DNS name, sending Host shop.example.com as a user
would after pointing that name at the ALB.

Measured: `probe spread` to each path (pods reached, chi-square against
uniform, the TCP source each pod saw and the X-Forwarded-For it got); the
same name with the ALB's own Host (no rule matches: the default rule's
404); the captures on the client, the elb host, the workers and every pod
while probe requests ran, read into the three legs (client -> ALB VIP, ALB
ENI -> NodePort, node -> pod) with their addresses
(experiments/ingress_legs.py); and `svclab trace` of one request (the L7
hop, then the L3/L4 path).  The spreads keep 5 requests in flight: see
docs/ingress-probes.md on the workload server's sniff timeout behind a
loaded ALB.
"""
from __future__ import annotations

from base.errors import UsageError
from experiments.cluster_ops import (
    CLIENT_IP,
    NODE_IPS,
    WORKERS,
    node_port,
    wait_endpoints,
    wait_for,
)
from experiments.framework import Context, Summary, table
from experiments.ingress_legs import LEGS, leg_rows
from labd.lb_status import lb_status, render_lb_status
from probes.capture.probe import Capture
from probes.spread.probe import UNIFORM_ALPHA, SpreadResult, spread
from probes.targets import HttpTarget, resolve_http_target
from probes.trace.pcap import read_capture
from probes.trace.probe import trace

NAME = "ingress"
TITLE = "Ingress on the lab's ALB: client -> ALB -> NodePort -> pod, captured on every hop"
HOST = "shop.example.com"
PATHS = {"/": "web", "/api/items": "api"}       # what is asked -> the Service that answers
REPLICAS = {"web": 3, "api": 2}
CONCURRENCY = 5
TIMEOUT = 5.0
INGRESS = f"""\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  annotations:
    alb.ingress.kubernetes.io/scheme: internet-facing
spec:
  ingressClassName: alb
  rules:
  - host: {HOST}
    http:
      paths:
      - path: /api
        pathType: Prefix
        backend: {{service: {{name: api, port: {{number: 80}}}}}}
      - path: /
        pathType: Prefix
        backend: {{service: {{name: web, port: {{number: 80}}}}}}
"""


def run(ctx: Context) -> Summary:
    count, captured = (300, 10) if ctx.quick else (2000, 50)
    transcript: list[dict] = []
    with ctx.lab() as lab:
        def kubectl(*args: str, input: str | None = None) -> str:
            out = lab.kubectl(*args, input=input)
            transcript.append({"command": "kubectl " + " ".join(args), "output": out})
            return out

        for app, replicas in REPLICAS.items():
            kubectl("create", "deployment", app, "--image=svclab/workload",
                    f"--replicas={replicas}", "--port=8080")
            kubectl("expose", "deployment", app, "--port=80", "--target-port=8080",
                    "--type=NodePort")
        kubectl("apply", "-f", "-", input=INGRESS)
        for app, replicas in REPLICAS.items():
            wait_endpoints(lab, app, replicas)
        hostname = _wait_hostname(lab)
        asked = {path: _resolved(lab, f"http://{hostname}{path}") for path in PATHS}
        for target in asked.values():
            _wait_answering(lab, target)
        vip = asked["/"].address
        ports = {app: node_port(lab, app) for app in REPLICAS}
        get_ingress = kubectl("get", "ingress", "shop")

        legs, packets_seen, captured_failures = _captured_legs(lab, ctx, asked, vip, ports,
                                                               captured)
        results = {path: spread(lab.name, "client", None, t.address, t.port, "tcp", count,
                                TIMEOUT, CONCURRENCY, http=t) for path, t in asked.items()}
        own_host = resolve_http_target(lab.name, f"http://{hostname}/", hostname)
        default_rule = spread(lab.name, "client", None, own_host.address, own_host.port,
                              "tcp", 20, TIMEOUT, 1, http=own_host)
        traced = trace(lab.name, "client", None, asked["/api/items"].url,
                       http=asked["/api/items"])
        lb_text = render_lb_status(lb_status(lab.name))

    spread_rows = [
        {"path": path, "service": PATHS[path], "pod": e.pod, "node": e.node, "ip": e.ip,
         "connections": e.count, "share": round(e.share, 4),
         "tcp_sources": " ".join(e.sources), "x_forwarded_for": " ".join(e.forwarded_for)}
        for path, result in results.items() for e in result.endpoints]
    ctx.write_csv("ingress_spread.csv", spread_rows)
    ctx.write_csv("ingress_legs.csv", [row.to_row() for row in legs])
    checks = {
        "hostname": hostname, "vip": vip, "host": HOST, "nodePorts": ports,
        "paths": {path: _path_check(result, PATHS[path]) for path, result in results.items()},
        "defaultRule": {"host": hostname, "requested": default_rule.requested,
                        "ok": default_rule.ok, "failures": default_rule.failures},
        "captured": {"requestsPerPath": captured, "failures": captured_failures,
                     "packets": packets_seen},
        "trace": {"outcome": traced.outcome, "answer": traced.answer,
                  "l7": traced.to_json()["l7"], "legs": len(traced.legs)}}
    ctx.write_json("ingress_checks.json", checks)
    trace_text = traced.describe()
    (ctx.out / "trace.txt").write_text(trace_text)
    ctx.write_json("transcript.json", transcript)

    summary = Summary(TITLE)
    summary.figures.append(ctx.figure("ingress_spread.png",
                                      lambda ax: _bars(ax, spread_rows, hostname)))
    summary.findings += _findings(hostname, vip, ports, results, default_rule, legs)
    summary.tables += [
        "```\n$ kubectl apply -f shop-ingress.yaml\n" + INGRESS + "\n$ kubectl get ingress shop\n"
        + get_ingress + "```",
        "Requests per pod (`svclab probe spread --from client --to URL --host-header "
        f"{HOST}`):\n\n" + table(
            ["path", "pod", "node", "requests", "share", "TCP source seen", "X-Forwarded-For"],
            [[r["path"], r["pod"], r["node"], r["connections"], f"{r['share']:.1%}",
              r["tcp_sources"], r["x_forwarded_for"] or "-"] for r in spread_rows]),
        "The three legs in the captures (pcaps in `pcaps/`):\n\n" + table(
            ["path", "leg", "captured on", "requests", "source", "destination",
             "X-Forwarded-For"],
            [[r.path, r.leg, " ".join(r.captured_on), r.requests, " ".join(r.sources),
              " ".join(r.destinations), " ".join(r.forwarded_for) or "-"] for r in legs]),
        f"`svclab trace --from client --to {asked['/api/items'].url} --host-header {HOST}`:"
        "\n\n```\n" + trace_text + "```",
        "`svclab lb status`:\n\n```\n" + lb_text + "```"]
    return summary


# --- steps ------------------------------------------------------------------------

def _wait_hostname(lab) -> str:
    def probe():
        ingress = lab.api.find("ingresses", "shop", "default") or {}
        found = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return found[0].get("hostname") if found else None
    return wait_for("the ALB's host name on ingress shop", probe, timeout=60)


def _resolved(lab, url: str) -> HttpTarget:
    """The URL once the lab's public DNS knows its name (the cloud controller
    publishes the record on its next turn, after the Ingress's status)."""
    def probe():
        try:
            return resolve_http_target(lab.name, url, HOST)
        except UsageError:
            return None
    return wait_for(f"{url} resolvable in the lab's public DNS", probe, timeout=30)


def _wait_answering(lab, target: HttpTarget) -> None:
    """Until the ALB's targets are healthy and a few requests all get a pod's answer."""
    def probe():
        result = spread(lab.name, "client", None, target.address, target.port, "tcp", 4,
                        TIMEOUT, 1, http=target)
        return result.ok == 4 or None
    wait_for(f"{target.url} (Host {target.host}) answered by pods", probe, timeout=60,
             every=0.3)


def _captured_legs(lab, ctx: Context, asked: dict[str, HttpTarget], vip: str,
                   ports: dict[str, int], per_path: int):
    """Capture on the client, the elb host, the workers and every pod while
    per_path probe requests go to each path; the legs they show."""
    pods = [p["metadata"]["name"] for app in REPLICAS
            for p in lab.api.list("pods", "default", label_selector=f"app={app}")[0]]
    hosts = [("client", None), ("elb", None)] + [(n, None) for n in WORKERS] \
        + [(p, None) for p in sorted(pods)]
    folder = ctx.out / "pcaps"
    wanted = " or ".join(f"port {p}" for p in (80, 8080, *ports.values()))
    failures: dict[str, dict] = {}
    with Capture(lab.name, hosts, folder, f"tcp and ({wanted})") as capture:
        for path, target in asked.items():
            result = spread(lab.name, "client", None, target.address, target.port, "tcp",
                            per_path, TIMEOUT, 1, http=target)
            failures[path] = result.failures
    packets = read_capture(folder, capture.hosts)
    kinds = {h.label: h.kind for h in capture.hosts}
    nodes = {NODE_IPS[n] for n in WORKERS}
    return leg_rows(packets, kinds, vip, nodes), dict(capture.counts), failures


def _path_check(result: SpreadResult, service: str) -> dict:
    return {"service": service, "requested": result.requested, "ok": result.ok,
            "failures": result.failures, "pods": {e.pod: e.count for e in result.endpoints},
            "p_value": result.p_value, "fits_uniform": result.fits_expected(),
            "tcpSources": sorted({s for e in result.endpoints for s in e.sources}),
            "forwardedFor": sorted({f for e in result.endpoints for f in e.forwarded_for})}


# --- reporting ----------------------------------------------------------------------

def _findings(hostname, vip, ports, results, default_rule, legs) -> list[str]:
    out = [f"Ingress `shop` (class alb, internet-facing) got the ALB {hostname}, at {vip} "
           f"on the internet side; target-type instance: the workers' NodePorts "
           f"{ports['web']} (web) and {ports['api']} (api)."]
    for path, result in results.items():
        sources = sorted({s for e in result.endpoints for s in e.sources})
        forwarded = sorted({f for e in result.endpoints for f in e.forwarded_for})
        p_value = f"{result.p_value:.3g}" if result.p_value is not None else "n/a"
        out.append(
            f"`{path}` with Host {HOST}: {result.ok} of {result.requested} requests answered "
            f"by the {len(result.endpoints)} {PATHS[path]} pods "
            f"({', '.join(f'{e.count}' for e in result.endpoints)}; chi-square against "
            f"uniform p = {p_value}, {'above' if result.fits_expected() else 'BELOW'} "
            f"{UNIFORM_ALPHA}); failures: {_failures(result.failures)}"
            + (" (the ALB's 502 when the workload server took the request for plain TCP: "
               "docs/ingress-probes.md)" if "http-502" in result.failures else "")
            + ". The pods saw the TCP "
            f"source {', '.join(sources)} (kube-proxy masquerades NodePort traffic under "
            f"externalTrafficPolicy Cluster) and X-Forwarded-For "
            f"{', '.join(forwarded) or 'none'}"
            + (" — the client." if forwarded == [CLIENT_IP] else "."))
    out.append(f"The same name with the ALB's own Host header matches no rule: "
               f"{default_rule.failures.get('http-404', 0)} of {default_rule.requested} "
               f"requests got 404 from the ALB's default rule.")
    for leg in LEGS:
        rows = [r for r in legs if r.leg == leg]
        if rows:
            out.append(f"Leg {leg}: " + "; ".join(
                f"`{r.path}` {r.requests} requests {', '.join(r.sources)} -> "
                f"{', '.join(r.destinations)}"
                + (f", X-Forwarded-For {', '.join(r.forwarded_for)}" if r.forwarded_for
                   else ", no X-Forwarded-For") for r in rows))
    return out


def _failures(failures: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in failures.items()) or "none"


def _bars(ax, rows: list[dict], hostname: str) -> None:
    colours = {"/": "#4c72b0", "/api/items": "#dd8452"}
    for path in PATHS:
        mine = [r for r in rows if r["path"] == path]
        total = sum(r["connections"] for r in mine)
        labels = [f"{r['pod']}\n({r['node']})" for r in mine]
        ax.bar(labels, [r["connections"] for r in mine], color=colours[path],
               label=f"{path} -> {PATHS[path]}")
        if mine:
            ax.hlines(total / len(mine), labels[0], labels[-1], colors="gray",
                      linestyles="--")
    ax.set_ylabel("requests answered")
    ax.set_title(f"client -> {hostname.split('.')[0]} (Host {HOST}), dashed: uniform",
                 fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend()
