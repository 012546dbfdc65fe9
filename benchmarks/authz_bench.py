"""Benchmark of RBAC authorization: what it adds to each API request.

In process (no sockets, so the figures are the authorizer's own): an ApiServer
with the bootstrap policy plus --namespaces namespaces, each with a Role and a
RoleBinding (so the index holds many bindings). For each request kind it times

  before  Api.dispatch(request)                    (the handler alone)
  after   RequestGate.admit(...) + Api.dispatch()  (authorization, then the handler)
  authz   RequestGate.admit(...) alone

and prints p50/p99 in microseconds, and the index rebuild an RBAC write costs.
Request kinds: the admin (system:masters), a kubelet patching its pod's status
(RBAC + node restriction), kube-proxy listing EndpointSlices, a user reading
pods through a RoleBinding, and a refused request. Figures only, nothing is asserted.

Usage: .venv/bin/python benchmarks/authz_bench.py [--requests 3000] [--namespaces 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controlplane.api import ApiServer  # noqa: E402
from controlplane.api.auth import User  # noqa: E402
from controlplane.api.errors import StatusError  # noqa: E402
from controlplane.api.handlers import Request  # noqa: E402
from controlplane.api.rbac.authorizer import Authorizer  # noqa: E402
from controlplane.api.resources import BY_PLURAL  # noqa: E402

CLUSTER_INFO = {
    "serviceCIDR": "10.96.0.0/12", "nodePortRange": "30000-32767", "podCIDR": "192.168.0.0/16",
    "clusterDomain": "cluster.local", "controlPlaneEndpoint": {"ip": "172.31.0.10", "port": 6443},
    "nodes": [{"name": "n1", "role": "control-plane", "internalIP": "172.31.0.10",
               "podCIDR": "192.168.0.0/24"}],
}
G = "rbac.authorization.k8s.io"


def populate(server: ApiServer, namespaces: int) -> None:
    reg = server.registry
    for i in range(namespaces):
        ns = f"team-{i}"
        reg.create(BY_PLURAL["namespaces"], "", {"metadata": {"name": ns}})
        reg.create(BY_PLURAL["roles"], ns, {"metadata": {"name": "reader"}, "rules": [
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]})
        reg.create(BY_PLURAL["rolebindings"], ns, {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": G, "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "apiGroup": G, "name": f"user-{i}"},
                         {"kind": "ServiceAccount", "name": "robot", "namespace": ns}]})
    reg.create(BY_PLURAL["pods"], "team-0", {"metadata": {"name": "web"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}})


def cases() -> list[tuple[str, User, str, str, bytes, dict]]:
    status = json.dumps({"status": {"phase": "Running"}}).encode()
    merge = {"content-type": "application/merge-patch+json"}
    return [
        ("admin get service", User("kubernetes-admin", ("system:masters",)), "GET",
         "/api/v1/namespaces/default/services/kubernetes", b"", {}),
        ("kubelet patch pod status", User("system:node:n1", ("system:nodes",)), "PATCH",
         "/api/v1/namespaces/team-0/pods/web/status", status, merge),
        ("kube-proxy list slices", User("system:kube-proxy"), "GET",
         "/apis/discovery.k8s.io/v1/endpointslices", b"", {}),
        ("user list pods (RoleBinding)", User("user-0"), "GET",
         "/api/v1/namespaces/team-0/pods", b"", {}),
        ("refused list pods", User("user-1"), "GET", "/api/v1/namespaces/team-0/pods", b"", {}),
    ]


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return (statistics.median(samples) * 1e6,
            samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6)


def run(server: ApiServer, requests: int) -> list[tuple[str, float, float, float, float]]:
    gate, api = server.gate, server.api
    rows = []
    for name, user, method, target, body, headers in cases():
        request = Request(method, target, headers, body)
        before, after, authz = [], [], []
        for _ in range(requests):
            t0 = time.perf_counter()
            api.dispatch(request)
            t1 = time.perf_counter()
            try:
                acting, _ = gate.admit(user, method, target, headers, body)
                t2 = time.perf_counter()
                api.dispatch(Request(method, target, headers, body, acting))
            except StatusError:
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            before.append(t1 - t0)
            after.append(t3 - t2 + (t2 - t1))
            authz.append(t2 - t1)
        rows.append((name, *percentiles(before)[:1], *percentiles(after)[:1],
                     *percentiles(authz)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--namespaces", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ApiServer(Path(tmp) / "state", CLUSTER_INFO, node_grace_period=None, seed=1)
        try:
            populate(server, args.namespaces)
            rows = run(server, args.requests)
            rebuilds = []
            for _ in range(20):          # what one RBAC write costs the next request
                t0 = time.perf_counter()
                Authorizer(server.store).index()
                rebuilds.append(time.perf_counter() - t0)
        finally:
            server.stop()
    print(f"RBAC authorization, in process: {args.requests} requests per kind, "
          f"{args.namespaces} namespaces with a Role and a RoleBinding each")
    print(f"{'request':32} {'before p50':>11} {'after p50':>10} {'authz p50':>10} "
          f"{'authz p99':>10}   (microseconds)")
    for name, before, after, authz50, authz99 in rows:
        print(f"{name:32} {before:11.1f} {after:10.1f} {authz50:10.1f} {authz99:10.1f}")
    print(f"index rebuild after an RBAC write: p50 {statistics.median(rebuilds) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
