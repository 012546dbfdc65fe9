"""`svclab probe dns`: ask a name from inside a lab host, as that host would.

Which server a host asks differs per host (a pod asks kube-dns at 10.96.0.10,
a node the VPC resolver, the client public DNS), so the question must leave
from inside the host: `query()` starts this module as a worker in the host's
network and mount namespaces (`python -m probes.dnsprobe`, JSON on stdin and
stdout), which sends one DNS message with dnspython over UDP or TCP to the
given server, or the first nameserver of the host's own /etc/resolv.conf, and
records the rcode, every answer, who answered, the latency and the TC bit.
`resolve()` goes through the host's system resolver instead (getaddrinfo:
search path and ndots apply), which is what an application in a pod gets.
`query_loop()` repeats one query for a while (does DNS keep answering?).
"""
from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
from dataclasses import asdict, dataclass

from base.errors import LabError, UsageError
from topo.netns import run_in
from topo.state import LabPaths, read_state

RTYPES = ("A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "NS", "SOA", "MX", "ANY")
DNS_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"
WORKER_OVERHEAD_S = 20.0      # interpreter start plus the host's resolver retries
IP_RECVERR = 11


class DnsProbeError(LabError):
    """The probe itself could not run (bad host, worker failure)."""


@dataclass(frozen=True)
class DnsAnswer:
    """One resource record of a reply, as dig prints it."""

    name: str
    rtype: str
    ttl: int
    data: str


@dataclass(frozen=True)
class DnsResult:
    """One query and what came back.  rcode is None when no reply came (see error)."""

    source: str
    namespace: str | None
    name: str                      # the query name, absolute (trailing dot)
    rtype: str
    server: str                    # ip:port asked
    transport: str                 # udp | tcp
    rcode: str | None              # NOERROR NXDOMAIN SERVFAIL REFUSED FORMERR ...
    answers: tuple[DnsAnswer, ...] = ()
    additional: tuple[DnsAnswer, ...] = ()
    responder: str | None = None   # the address the reply came from
    latency_ms: float | None = None
    truncated: bool = False
    authoritative: bool = False
    error: str | None = None       # timeout, refused, bad reply ... when rcode is None

    @property
    def answered(self) -> bool:
        return self.rcode is not None

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR"

    def data(self, rtype: str | None = None) -> list[str]:
        """Answer data of one type (default: the queried type), in reply order."""
        wanted = (rtype or self.rtype).upper()
        return [a.data for a in self.answers if a.rtype == wanted]

    @property
    def addresses(self) -> list[str]:
        return [a.data for a in self.answers if a.rtype in ("A", "AAAA")]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DnsResult:
        fields = dict(data)
        fields["answers"] = tuple(DnsAnswer(**a) for a in data.get("answers") or ())
        fields["additional"] = tuple(DnsAnswer(**a) for a in data.get("additional") or ())
        return cls(**fields)

    def describe(self) -> str:
        where = f"{self.namespace}/{self.source}" if self.namespace else self.source
        head = f"{self.name} {self.rtype} from {where} via {self.server}/{self.transport}: "
        if not self.answered:
            return head + f"no answer ({self.error})"
        flags = ["aa"] if self.authoritative else []
        if self.truncated:
            flags.append("tc")
        head += f"{self.rcode} in {self.latency_ms:.1f} ms from {self.responder}"
        head += f" [{' '.join(flags)}]" if flags else ""
        lines = [head]
        if self.responder and self.responder != self.server.rpartition(":")[0]:
            lines.append(f"  warning: reply from {self.responder}, not the server asked "
                         "(a resolver would drop it)")
        if self.truncated:
            lines.append("  truncated: the full answer needs TCP (--tcp)")
        lines += [f"  {a.name:<45} {a.ttl:>6} IN {a.rtype:<5} {a.data}" for a in self.answers]
        if self.additional:
            lines.append("  additional:")
            lines += [f"  {a.name:<45} {a.ttl:>6} IN {a.rtype:<5} {a.data}"
                      for a in self.additional]
        return "\n".join(lines)


@dataclass(frozen=True)
class ResolveResult:
    """The system resolver's answer (getaddrinfo) inside a host."""

    source: str
    namespace: str | None
    name: str
    addresses: tuple[str, ...] = ()
    canonical: str | None = None
    latency_ms: float | None = None
    error: str | None = None       # "not found", "temporary failure" ... when no address

    @property
    def ok(self) -> bool:
        return bool(self.addresses)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ResolveResult:
        return cls(**{**data, "addresses": tuple(data.get("addresses") or ())})

    def describe(self) -> str:
        where = f"{self.namespace}/{self.source}" if self.namespace else self.source
        if not self.ok:
            return f"{self.name} from {where}: {self.error}"
        canonical = f" (canonical {self.canonical})" if self.canonical else ""
        return (f"{self.name} from {where}: {', '.join(self.addresses)}{canonical} "
                f"in {self.latency_ms:.1f} ms")


# --- pure helpers (used on both sides) -----------------------------------------

def parse_server(text: str, default_port: int = DNS_PORT) -> tuple[str, int]:
    """`IP` or `IP:PORT` -> (ip, port); UsageError otherwise."""
    address, sep, port = text.rpartition(":")
    if not sep:
        address, port = text, str(default_port)
    try:
        ipaddress.IPv4Address(address)
    except ValueError as err:
        raise UsageError(f"--server: {text!r} is not IP or IP:PORT (IPv4)") from err
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--server: port in {text!r} is not 1-65535")
    return address, int(port)


def first_nameserver(resolv_conf: str) -> str | None:
    """The first `nameserver` of a resolv.conf text, as glibc reads it."""
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1]
    return None


def query_name(name: str, rtype: str) -> str:
    """The absolute name to ask: a bare IP given for PTR becomes its reverse name."""
    if rtype == "PTR":
        try:
            return ipaddress.ip_address(name).reverse_pointer + "."
        except ValueError:
            pass
    import dns.exception
    import dns.name
    if not name:
        raise UsageError("--name: give a DNS name")
    try:
        return dns.name.from_text(name).to_text()
    except dns.exception.DNSException as err:
        raise UsageError(f"--name: {name!r} is not a DNS name: {err}") from err


def check_rtype(rtype: str) -> str:
    upper = rtype.upper()
    if upper not in RTYPES:
        raise UsageError(f"--type: {rtype!r} is not one of {', '.join(RTYPES)}")
    return upper


# --- the lab side ----------------------------------------------------------------

@dataclass(frozen=True)
class _Host:
    pid: int
    source: str
    namespace: str | None


def _find_host(lab: str, source: str, namespace: str | None) -> _Host:
    record = read_state(LabPaths(lab)).find_host(source, namespace)
    if not record.proc.alive():
        raise DnsProbeError(f"host {source!r} of lab {lab!r} is not running")
    return _Host(record.pid, source, record.namespace if record.kind == "pod" else None)


def _run_worker(host: _Host, request: dict, timeout: float) -> list[dict]:
    out = run_in(host.pid, [sys.executable, "-m", "probes.dnsprobe"], input=json.dumps(request),
                 timeout=timeout + WORKER_OVERHEAD_S, where=host.source)
    try:
        return json.loads(out)
    except ValueError as err:
        raise DnsProbeError(f"dns probe worker in {host.source}: bad output {out[:200]!r}") from err


def _query_request(name: str, rtype: str, server: str | None, tcp: bool,
                   timeout: float) -> dict:
    rtype = check_rtype(rtype)
    ip, port = parse_server(server) if server else (None, DNS_PORT)
    return {"name": query_name(name, rtype), "rtype": rtype, "server": ip, "port": port,
            "tcp": tcp, "timeout": timeout}


def _results(host: _Host, raw: list[dict]) -> list[DnsResult]:
    return [DnsResult.from_json({**item, "source": host.source, "namespace": host.namespace})
            for item in raw]


def query(lab: str, source: str, namespace: str | None, name: str, rtype: str = "A",
          server: str | None = None, tcp: bool = False, timeout: float = 2.0) -> DnsResult:
    """Ask `name` from inside host `source` (a pod with `namespace`, a node, client ...).

    server: "IP" or "IP:PORT"; default the first nameserver of the host's resolv.conf.
    """
    return query_many(lab, source, namespace, [(name, rtype)], server=server, tcp=tcp,
                      timeout=timeout)[0]


def query_many(lab: str, source: str, namespace: str | None, questions, *,
               server: str | None = None, tcp: bool = False,
               timeout: float = 2.0) -> list[DnsResult]:
    """Several (name, rtype) questions from one worker, one after another."""
    host = _find_host(lab, source, namespace)
    items = [_query_request(n, t, server, tcp, timeout) for n, t in questions]
    raw = _run_worker(host, {"op": "query", "items": items}, timeout * len(items))
    return _results(host, raw)


def query_loop(lab: str, source: str, namespace: str | None, name: str, rtype: str = "A", *,
               duration: float, interval: float = 0.02, server: str | None = None,
               tcp: bool = False, timeout: float = 2.0) -> list[DnsResult]:
    """The same query again and again for `duration` seconds, each from a new socket."""
    host = _find_host(lab, source, namespace)
    request = {"op": "query", "items": [_query_request(name, rtype, server, tcp, timeout)],
               "repeat_seconds": duration, "interval": interval}
    return _results(host, _run_worker(host, request, duration + timeout))


def resolve(lab: str, source: str, namespace: str | None, name: str,
            timeout: float = 15.0) -> ResolveResult:
    """getaddrinfo(name) inside the host: its resolv.conf, search path and ndots apply."""
    host = _find_host(lab, source, namespace)
    [raw] = _run_worker(host, {"op": "resolve", "items": [{"name": name}]}, timeout)
    return ResolveResult.from_json({**raw, "source": host.source, "namespace": host.namespace})


def render_dns(result: DnsResult | ResolveResult, as_json: bool = False) -> str:
    return json.dumps(result.to_json(), indent=1) if as_json else result.describe()


def probe_dns_command(lab: str, source: str, namespace: str | None, qname: str,
                      rtype: str = "A", server: str | None = None, tcp: bool = False,
                      as_json: bool = False, system_resolver: bool = False) -> tuple[str, int]:
    """What `svclab probe dns` prints and its exit code: 0 when a reply came (any rcode,
    as dig), 1 when none did; with system_resolver, 0 only when addresses came back."""
    if system_resolver:
        resolved = resolve(lab, source, namespace, qname)
        return render_dns(resolved, as_json), 0 if resolved.ok else 1
    result = query(lab, source, namespace, qname, rtype, server=server, tcp=tcp)
    return render_dns(result, as_json), 0 if result.answered else 1


# --- the worker side (runs inside the host) ---------------------------------------

def _records(rrsets) -> list[dict]:
    import dns.rdatatype
    return [{"name": rrset.name.to_text(), "rtype": dns.rdatatype.to_text(rrset.rdtype),
             "ttl": rrset.ttl, "data": rdata.to_text()} for rrset in rrsets for rdata in rrset]


def _exchange_udp(wire: bytes, ip: str, port: int, ident: int, deadline: float):
    """Send from a fresh socket; the first reply with our ID, and who sent it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)     # ICMP errors reach recvfrom
        sock.sendto(wire, (ip, port))
        while True:
            sock.settimeout(max(0.0, deadline - time.monotonic()) or 1e-6)
            data, sender = sock.recvfrom(65535)
            if len(data) >= 2 and int.from_bytes(data[:2], "big") == ident:
                return data, sender[0]


def _exchange_tcp(wire: bytes, ip: str, port: int, deadline: float):
    with socket.create_connection((ip, port), timeout=max(0.001, deadline - time.monotonic())) \
            as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        prefix = _read_exactly(sock, 2, deadline)
        return _read_exactly(sock, int.from_bytes(prefix, "big"), deadline), ip


def _read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("server closed the TCP connection mid-reply")
        data += chunk
    return data


def run_query(item: dict, default_server: str | None) -> dict:
    """One DNS exchange, as a DnsResult dict without source/namespace (worker side)."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rcode
    server = item.get("server") or default_server
    port, tcp, timeout = int(item.get("port") or DNS_PORT), bool(item.get("tcp")), item["timeout"]
    result = {"name": item["name"], "rtype": item["rtype"], "server": f"{server}:{port}",
              "transport": "tcp" if tcp else "udp", "rcode": None}
    if server is None:
        return {**result, "error": f"no nameserver in {RESOLV_CONF}"}
    request = dns.message.make_query(item["name"], item["rtype"])
    wire = request.to_wire()
    started = time.monotonic()
    deadline = started + timeout
    try:
        if tcp:
            data, responder = _exchange_tcp(wire, server, port, deadline)
        else:
            data, responder = _exchange_udp(wire, server, port, request.id, deadline)
    except TimeoutError:
        return {**result, "error": f"timeout after {timeout:g} s"}
    except ConnectionRefusedError:
        return {**result, "error": "refused (nothing listening)"}
    except OSError as err:
        return {**result, "error": f"{type(err).__name__}: {err.strerror or err}"}
    latency = round((time.monotonic() - started) * 1000, 3)
    try:
        reply = dns.message.from_wire(data)
    except dns.exception.DNSException as err:
        return {**result, "responder": responder, "latency_ms": latency,
                "error": f"bad reply: {err}"}
    return {**result, "rcode": dns.rcode.to_text(reply.rcode()), "responder": responder,
            "latency_ms": latency, "truncated": bool(reply.flags & dns.flags.TC),
            "authoritative": bool(reply.flags & dns.flags.AA),
            "answers": _records(reply.answer), "additional": _records(reply.additional)}


def run_resolve(item: dict) -> dict:
    """getaddrinfo through the host's system resolver (worker side)."""
    started = time.monotonic()
    try:
        infos = socket.getaddrinfo(item["name"], None, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_CANONNAME)
    except socket.gaierror as err:
        reason = {socket.EAI_NONAME: "not found", socket.EAI_AGAIN: "temporary failure",
                  getattr(socket, "EAI_NODATA", -5): "no address"}.get(err.errno, err.strerror)
        return {"name": item["name"], "error": f"{reason} ({err.strerror})",
                "latency_ms": round((time.monotonic() - started) * 1000, 3)}
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    canonical = next((info[3] for info in infos if info[3]), None)
    return {"name": item["name"], "addresses": addresses, "canonical": canonical,
            "latency_ms": round((time.monotonic() - started) * 1000, 3)}


def _own_nameserver() -> str | None:
    try:
        with open(RESOLV_CONF, encoding="utf-8") as handle:
            return first_nameserver(handle.read())
    except OSError:
        return None


def worker(request: dict) -> list[dict]:
    """Everything the worker does for one request; the list it prints."""
    if request.get("op") == "resolve":
        return [run_resolve(item) for item in request["items"]]
    default_server = _own_nameserver()
    repeat = float(request.get("repeat_seconds") or 0)
    if not repeat:
        return [run_query(item, default_server) for item in request["items"]]
    results, interval = [], float(request.get("interval") or 0)
    end = time.monotonic() + repeat
    while time.monotonic() < end:
        for item in request["items"]:
            results.append(run_query(item, default_server))
        time.sleep(interval)
    return results


def main() -> int:
    print(json.dumps(worker(json.load(sys.stdin))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
