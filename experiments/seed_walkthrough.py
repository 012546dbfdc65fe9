"""seed-walkthrough: the seed document's session, step by step, on real packets.

A deployment `hwk` (nginx), exposed as ClusterIP and then as the seed's
`web-hwk` NodePort; `kubectl get svc/ep/po -o wide` as the seed shows them;
access through the ClusterIP from a pod, node IP:NodePort from a node, EC2
public IP:NodePort from the outside client; the hop-by-hop trace of that last
path; and the other two types: ExternalName (a CNAME to an outside service)
and LoadBalancer (an AWS-style ELB hostname).  `make demo` runs this one.
"""
from __future__ import annotations

import subprocess
import time

from experiments.cluster_ops import running_pod, wait_for
from experiments.framework import Context, Summary, table
from labd import lifecycle
from probes.matrix.probe import run_matrix
from probes.spread.probe import spread
from probes.trace.probe import trace

NAME = "seed-walkthrough"
TITLE = "The seed's walkthrough: ClusterIP, NodePort on EC2 public IPs, ExternalName, LoadBalancer"
HTTP_GET = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")


def run(ctx: Context) -> Summary:
    summary = Summary(TITLE)
    transcript: list[dict] = []
    with ctx.lab() as lab:
        def kubectl(*args: str) -> str:
            out = lab.kubectl(*args)
            transcript.append({"command": "kubectl " + " ".join(args), "output": out})
            return out

        kubectl("create", "deployment", "hwk", "--image=nginx", "--replicas=2")
        kubectl("run", "shell", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
        kubectl("rollout", "status", "deployment/hwk", "--timeout=30s")
        kubectl("expose", "deployment", "hwk", "--port", "80", "--name", "hwk")
        kubectl("expose", "deployment", "hwk", "--port", "80", "--name", "web-hwk",
                "--type", "NodePort")
        _wait_endpoints(lab, "web-hwk", 2)
        running_pod(lab, "shell")
        svc_out = kubectl("get", "svc")
        ep_out = kubectl("get", "ep")
        po_out = kubectl("get", "po", "-o", "wide")
        nodes_out = kubectl("get", "nodes", "-o", "wide")

        svc = lab.api.get("services", "web-hwk", "default")
        cluster_ip = lab.api.get("services", "hwk", "default")["spec"]["clusterIP"]
        node_port = svc["spec"]["ports"][0]["nodePort"]
        pods = lab.api.list("pods", "default", label_selector="app=hwk")[0]
        pod = pods[0]
        worker = next(n for n in lab.api.list("nodes")[0] if n["metadata"]["name"] !=
                      pod["spec"]["nodeName"] and "node-role.kubernetes.io/control-plane"
                      not in n["metadata"]["labels"])
        addresses = {a["type"]: a["address"] for a in worker["status"]["addresses"]}
        from_pod = _http(lab, "shell", f"http://{cluster_ip}/clientip")
        from_node = _http(lab, "ip-172-31-0-10",
                          f"http://{addresses['InternalIP']}:{node_port}/clientip")
        from_client = _http(lab, "client",
                            f"http://{addresses['ExternalIP']}:{node_port}/clientip")
        shares = spread(lab.name, "client", None, addresses["ExternalIP"], node_port, "tcp",
                        100 if ctx.quick else 1000, 3.0, 50)

        kubectl("create", "service", "externalname", "db", "--external-name", "db.example.com")
        time.sleep(0.5)
        cname = " ".join(lab.exec("shell", "getent", "hosts", "db").split())
        db_seen = _http(lab, "shell", "http://db/clientip")

        kubectl("expose", "deployment", "hwk", "--port", "80", "--name", "web-lb",
                "--type", "LoadBalancer")
        hostname = _wait_hostname(lab, "web-lb")
        via_elb = _http(lab, "client", f"http://{hostname}/clientip")
        svc_lb_out = kubectl("get", "svc", "web-lb")
        trace_text = _trace(lab, addresses["ExternalIP"], node_port)
        hosts_text = _hosts(lab)
        matrix = run_matrix(lab.name, "default")
        ctx.write_json("matrix.json", matrix.to_json())

    ctx.write_json("transcript.json", transcript)
    rows = [{"pod": e.pod, "node": e.node, "ip": e.ip, "connections": e.count,
             "share": round(e.share, 4)} for e in shares.endpoints]
    ctx.write_csv("nodeport-spread.csv", rows)
    summary.figures.append(ctx.figure("nodeport-spread.png", lambda ax: _bars(ax, rows, node_port,
                                                                              addresses)))
    summary.findings += [
        f"`kubectl expose deployment hwk --port 80 --name web-hwk --type NodePort` gave "
        f"NodePort {node_port}; its endpoints are the pods' 192.168.x IPs on port 80.",
        f"1) From pod `shell` (`kubectl run shell --image=busybox -- sleep 3600`), ClusterIP "
        f"{cluster_ip}:80 answered and the pod behind it saw the shell pod's own address "
        f"{from_pod.rsplit(':', 1)[0]} (no SNAT inside the cluster).",
        f"2) From node ip-172-31-0-10, node IP {addresses['InternalIP']}:{node_port} answered; "
        f"the pod saw the source {from_node.rsplit(':', 1)[0]} (masqueraded to the node).",
        f"3) From the outside client, EC2 public IP {addresses['ExternalIP']}:{node_port} "
        f"answered (the igw translates it to {addresses['InternalIP']}); the pod saw "
        f"{from_client.rsplit(':', 1)[0]}.",
        f"{shares.ok}/{shares.requested} client connections to the NodePort were spread over "
        f"{len(shares.endpoints)} pods (chi-square p = {shares.p_value:.3f}).",
        f"ExternalName `db` resolves in a pod through a CNAME to db.example.com "
        f"(`getent hosts db`: `{cname}`); "
        f"an HTTP request to db reached the outside host, which saw the source "
        f"{db_seen.rsplit(':', 1)[0]} (the node's public IP).",
        f"LoadBalancer `web-lb` got the ELB hostname {hostname}; the client reached the pods "
        f"through it (the pod saw {via_elb.rsplit(':', 1)[0]}, a node: Classic ELB, "
        f"Cluster policy).",
    ]
    summary.tables += ["```\n$ kubectl get svc\n" + svc_out + "\n$ kubectl get ep\n" + ep_out
                       + "\n$ kubectl get po -o wide\n" + po_out + "\n$ kubectl get nodes -o wide\n"
                       + nodes_out + "\n$ kubectl get svc web-lb\n" + svc_lb_out + "```",
                       table(["pod", "node", "IP", "connections", "share"],
                             [[r["pod"], r["node"], r["ip"], r["connections"],
                               f"{r['share']:.1%}"] for r in rows])]
    if trace_text:
        summary.tables.append("Hop-by-hop trace of client -> public IP:NodePort:\n\n```\n"
                              + trace_text + "\n```")
    summary.findings.append(
        f"Reachability matrix (every source x every service entry): "
        f"{len(matrix.cells) - len(matrix.unexpected)} of {len(matrix.cells)} cells as "
        "expected" + ("" if matrix.ok else f"; UNEXPECTED: {len(matrix.unexpected)}"))
    summary.tables.append("The lab's hosts and addresses (`svclab status`):\n\n```\n"
                          + hosts_text + "\n```")
    summary.tables.append("Reachability matrix (`svclab probe matrix`):\n\n```\n"
                          + matrix.render() + "\n```")
    return summary


def _hosts(lab) -> str:
    return lifecycle.status_table(*lifecycle.status(lab.name))


def _http(lab, host: str, url: str) -> str:
    return lab.exec(host, "python3", "-c", HTTP_GET, url).strip()


def _wait_endpoints(lab, service: str, count: int) -> None:
    def ready() -> bool:
        # None until the endpoints controller has written it
        eps = lab.api.find("endpoints", service, "default") or {}
        return sum(len(s.get("addresses") or [])
                   for s in eps.get("subsets") or []) >= count
    wait_for(f"{count} ready endpoints of {service}", ready)


def _wait_hostname(lab, service: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc = lab.api.get("services", service, "default")
        ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        if ingress and ingress[0].get("hostname"):
            # the ELB marks targets healthy after its first checks
            for _ in range(50):
                try:
                    _http(lab, "client", f"http://{ingress[0]['hostname']}/hostname")
                    return ingress[0]["hostname"]
                except subprocess.CalledProcessError:   # health checks still running
                    time.sleep(0.2)
        time.sleep(0.1)
    raise RuntimeError(f"{service} got no working load balancer in {timeout} s")


def _trace(lab, public_ip: str, node_port: int) -> str:
    return trace(lab.name, "client", None, f"{public_ip}:{node_port}").describe()


def _bars(ax, rows: list[dict], node_port: int, addresses: dict) -> None:
    ax.bar([f"{r['pod']}\n({r['node']})" for r in rows], [r["connections"] for r in rows],
           color="#4c72b0")
    total = sum(r["connections"] for r in rows)
    ax.axhline(total / max(1, len(rows)), color="gray", linestyle="--", label="uniform")
    ax.set_ylabel("new connections answered")
    ax.set_title(f"client -> {addresses['ExternalIP']}:{node_port} (EC2 public IP:NodePort)")
    ax.legend()
