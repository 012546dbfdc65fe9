"""The ingress experiment's hop table from captured packets (pure): each probe
request counted once per leg, with the addresses and X-Forwarded-For it had
there; the ALB's health checks and other traffic left out."""
from __future__ import annotations

from experiments.ingress_legs import leg_rows, request_head
from probes.trace.flow import AddrPort, CapturedPacket

VIP, ENI, CLIENT = "203.0.113.49", "172.31.0.5", "203.0.113.100"
KINDS = {"client": "client", "elb": "loadbalancer", "ip-172-31-0-11": "node",
         "web-a": "pod", "api-a": "pod"}
NODES = {"172.31.0.11", "172.31.0.12"}


def get(path, *, xff=None, agent="svclab-spread"):
    head = f"GET {path} HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: {agent}\r\n"
    if xff:
        head += f"X-Forwarded-For: {xff}\r\nX-Forwarded-Proto: http\r\n"
    return (head + "\r\n").encode()


def packet(host, direction, src, dst, payload=b"", seq=1000, flags="PA"):
    (sa, sp), (da, dp) = src, dst
    return CapturedPacket(host, "eth0", direction, 1.0, "tcp", AddrPort(sa, sp),
                          AddrPort(da, dp), flags, seq, 1, payload)


def one_request(path, n, node, pod_ip, pod):
    """What the captures hold for one request through ALB and node to a pod."""
    return [
        packet("client", "out", (CLIENT, 40000 + n), (VIP, 80), seq=n, flags="A"),   # bare ACK
        packet("client", "out", (CLIENT, 40000 + n), (VIP, 80), get(path), seq=n),
        packet("elb", "in", (CLIENT, 40000 + n), (VIP, 80), get(path), seq=n),
        packet("elb", "out", (ENI, 50000 + n), (node, 31000), get(path, xff=CLIENT), seq=n),
        packet("ip-172-31-0-11", "in", (ENI, 50000 + n), (node, 31000), get(path, xff=CLIENT),
               seq=n),
        packet(pod, "in", (node, 60000 + n), (pod_ip, 8080), get(path, xff=CLIENT), seq=n),
    ]


def test_each_request_is_counted_once_per_leg_with_its_addresses():
    packets = one_request("/api/items", 1, "172.31.0.11", "192.168.1.3", "api-a")
    packets += one_request("/api/items", 2, "172.31.0.12", "192.168.1.3", "api-a")
    packets += one_request("/", 3, "172.31.0.11", "192.168.1.2", "web-a")
    packets.append(packets[1])                                  # a retransmit
    packets.append(packet("elb", "out", (ENI, 51000), ("172.31.0.11", 31000),
                          get("/", agent="ELB-HealthChecker/2.0")))
    rows = [r.to_row() for r in leg_rows(packets, KINDS, VIP, NODES)]
    assert rows == [
        {"path": "/", "leg": "1 client -> ALB", "captured_on": "client", "requests": 1,
         "sources": CLIENT, "destinations": f"{VIP}:80", "x_forwarded_for": "-"},
        {"path": "/", "leg": "2 ALB -> NodePort", "captured_on": "elb", "requests": 1,
         "sources": ENI, "destinations": "172.31.0.11:31000", "x_forwarded_for": CLIENT},
        {"path": "/", "leg": "3 node -> pod", "captured_on": "web-a", "requests": 1,
         "sources": "172.31.0.11", "destinations": "192.168.1.2:8080",
         "x_forwarded_for": CLIENT},
        {"path": "/api/items", "leg": "1 client -> ALB", "captured_on": "client", "requests": 2,
         "sources": CLIENT, "destinations": f"{VIP}:80", "x_forwarded_for": "-"},
        {"path": "/api/items", "leg": "2 ALB -> NodePort", "captured_on": "elb", "requests": 2,
         "sources": ENI, "destinations": "172.31.0.11:31000 172.31.0.12:31000",
         "x_forwarded_for": CLIENT},
        {"path": "/api/items", "leg": "3 node -> pod", "captured_on": "api-a", "requests": 2,
         "sources": "172.31.0.11 172.31.0.12", "destinations": "192.168.1.3:8080",
         "x_forwarded_for": CLIENT}]


def test_request_head_reads_only_gets():
    assert request_head(get("/x?y=1", xff="1.2.3.4")) == ("/x", {
        "host": "shop.example.com", "user-agent": "svclab-spread",
        "x-forwarded-for": "1.2.3.4", "x-forwarded-proto": "http"})
    assert request_head(b"HTTP/1.1 200 OK\r\n\r\n") is None
    assert request_head(b"") is None
