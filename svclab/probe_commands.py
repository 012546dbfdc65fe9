"""The CLI's packet-level commands: `probe reach`, `probe spread`, `capture`.

`probe spread` and `trace` also take an HTTP target (`--to http://HOST/PATH`,
`--host-header`): an Ingress behind the lab's ALB (docs/ingress-probes.md).

Argument definitions and the small functions that call probes/; they return
exit codes and raise SvclabError like every command (svclab.cli prints).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from base.errors import UsageError
from labd.lifecycle import DEFAULT_NAME
from probes.capture.probe import Capture
from probes.dnsprobe import probe_dns_command
from probes.matrix.policy import run_policy_matrix
from probes.matrix.policy_table import parse_port
from probes.matrix.probe import run_matrix
from probes.runner import probe_from
from probes.spread.probe import spread
from probes.targets import is_url, resolve_http_target, resolve_target
from probes.trace.probe import trace


def add_probe_commands(sub, named) -> None:
    p = named("probe", "probes from inside a lab host")
    probe_sub = p.add_subparsers(dest="probe", required=True, parser_class=type(p))

    reach = probe_sub.add_parser("reach", help="is TARGET reachable from HOST?")
    _common(reach)
    reach.add_argument("--proto", choices=("tcp", "udp", "icmp"), default="tcp")
    reach.add_argument("--timeout", type=float, default=1.0)
    reach.set_defaults(func=cmd_reach)

    spread = probe_sub.add_parser(
        "spread", help="N new connections: which endpoint answered, and what source it saw")
    _common(spread)
    spread.add_argument("--count", type=int, default=1000)
    spread.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    spread.add_argument("--concurrency", type=int, default=200)
    spread.add_argument("--timeout", type=float, default=2.0, help="per connection")
    spread.add_argument("--expect", help="expected split, NAME|IP=SHARE[,...] (default uniform)")
    _host_header(spread)
    spread.set_defaults(func=cmd_spread)

    matrix = probe_sub.add_parser(
        "matrix", help="every source x every service entry: expected vs observed")
    matrix.add_argument("--name", default=DEFAULT_NAME, help="lab name")
    matrix.add_argument("-n", "--namespace", action="append", dest="namespaces",
                        help="namespace of the services (default: default); with --policy "
                             "repeatable: the pods' namespaces (default: all non-system ones)")
    matrix.add_argument("--policy", action="store_true",
                        help="NetworkPolicy truth table: every pod x every pod, expected "
                             "(from the policies) vs observed")
    matrix.add_argument("-A", "--all-namespaces", action="store_true",
                        help="with --policy: pods of every namespace")
    matrix.add_argument("--port", action="append", dest="ports", metavar="PORT[/TCP|/UDP]",
                        help="with --policy: port to probe, repeatable "
                             "(default: each destination's containerPorts)")
    matrix.add_argument("--timeout", type=float, default=1.0, help="per probe (seconds)")
    matrix.add_argument("--json", action="store_true")
    matrix.set_defaults(func=cmd_matrix)

    dns = probe_sub.add_parser("dns", help="a DNS query from inside HOST (like dig)")
    dns.add_argument("--name", default=DEFAULT_NAME, help="lab name")
    dns.add_argument("--from", dest="source", required=True, help="source host")
    dns.add_argument("-n", "--namespace", help="namespace of a source pod")
    dns.add_argument("qname", metavar="QNAME", help="the name to look up")
    dns.add_argument("--type", default="A",
                     choices=("A", "AAAA", "SRV", "PTR", "CNAME", "TXT", "NS", "SOA", "MX", "ANY"))
    dns.add_argument("--server", help="IP[:PORT] (default: the host's own resolv.conf)")
    dns.add_argument("--tcp", action="store_true")
    dns.add_argument("--system", action="store_true",
                     help="use the host's system resolver (search path, ndots) instead")
    dns.add_argument("--json", action="store_true")
    dns.set_defaults(func=cmd_dns)

    tr = named("trace", "one connection, captured on every host of its path: each hop, "
                        "each translation and the rules that made it")
    tr.add_argument("--from", dest="source", required=True, help="source host")
    tr.add_argument("-n", "--namespace", help="namespace of a source pod and of svc/NAME")
    tr.add_argument("--to", dest="target", required=True,
                    help="ADDRESS:PORT, svc/NAME[:PORT], NODE:PORT, PUBLIC-NAME:PORT or "
                         "http://HOST[:PORT]/PATH (an Ingress behind an ALB)")
    tr.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    _host_header(tr)
    tr.add_argument("--pcaps", help="keep the pcaps in this folder")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=cmd_trace)

    cap = named("capture", "tcpdump inside lab hosts, one pcap per host")
    cap.add_argument("--on", required=True, help="HOST[,HOST...] (nodes, pods, client, igw)")
    cap.add_argument("-n", "--namespace", help="namespace of pods in --on")
    cap.add_argument("--out", required=True, help="folder for the pcaps and capture.json")
    cap.add_argument("--filter", help="pcap filter expression, e.g. 'tcp port 80'")
    cap.add_argument("--interface", default="any")
    cap.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    cap.add_argument("--json", action="store_true")
    cap.set_defaults(func=cmd_capture)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=DEFAULT_NAME, help="lab name")
    parser.add_argument("--from", dest="source", required=True, help="source host")
    parser.add_argument("-n", "--namespace", help="namespace of a source pod and of svc/NAME")
    parser.add_argument("--to", dest="target", required=True,
                        help="ADDRESS:PORT, svc/NAME[:PORT], NODE:PORT or PUBLIC-NAME:PORT"
                             + (", or http://HOST[:PORT]/PATH (an Ingress behind an ALB)"
                                if parser.prog.endswith("spread") else ""))
    parser.add_argument("--json", action="store_true")


def _host_header(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host-header", metavar="HOST",
                        help="the Host header to send (as curl -H 'Host: HOST'); "
                             "default: the host of --to")


def _http_target(args):
    """The HttpTarget of --to when it is a URL or --host-header is given, else None."""
    if not is_url(args.target) and args.host_header is None:
        return None
    if args.proto != "tcp":
        raise UsageError(f"--proto: an HTTP request (--to URL or --host-header) is tcp, "
                         f"not {args.proto}")
    return resolve_http_target(args.name, args.target, args.host_header, args.namespace)


def cmd_reach(args) -> int:
    probe = resolve_target(args.name, args.target, args.proto, args.namespace)
    result = probe_from(args.name, args.source, [probe], namespace=args.namespace,
                        timeout=args.timeout)[0]
    print(json.dumps(result.to_json()) if args.json else result.describe())
    return 0 if result.outcome == "open" else 1


def cmd_matrix(args) -> int:
    if args.policy:
        return cmd_policy_matrix(args)
    if args.all_namespaces or args.ports:
        raise UsageError("probe matrix: -A and --port go with --policy")
    if args.namespaces and len(args.namespaces) > 1:
        raise UsageError("probe matrix: one -n NAMESPACE (several only with --policy)")
    matrix = run_matrix(args.name, (args.namespaces or ["default"])[0], timeout=args.timeout)
    print(json.dumps(matrix.to_json(), indent=1) if args.json else matrix.render())
    return 0 if matrix.ok else 1


def cmd_policy_matrix(args) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    ports = [parse_port(text) for text in args.ports or []]
    matrix = run_policy_matrix(args.name, args.namespaces, args.all_namespaces, ports or None,
                               timeout=args.timeout)
    print(json.dumps(matrix.to_json(), indent=1) if args.json else matrix.render().rstrip("\n"))
    return 0 if matrix.ok else 1


def cmd_trace(args) -> int:
    result = trace(args.name, args.source, args.namespace, args.target, args.proto,
                   keep_pcaps_dir=args.pcaps, http=_http_target(args))
    print(json.dumps(result.to_json(), indent=1) if args.json else result.describe())
    return 0 if result.legs else 1


def cmd_dns(args) -> int:
    text, code = probe_dns_command(args.name, args.source, args.namespace, args.qname,
                                   args.type, server=args.server, tcp=args.tcp,
                                   as_json=args.json, system_resolver=args.system)
    print(text)
    return code


def cmd_spread(args) -> int:
    if args.count < 1:
        raise UsageError("--count: must be at least 1")
    http = _http_target(args)
    if http is not None:
        dst, port = http.address, http.port
    else:
        probe = resolve_target(args.name, args.target, args.proto, args.namespace)
        dst, port = probe.dst, probe.port
    result = spread(args.name, args.source, args.namespace, dst, port, args.proto,
                    args.count, args.timeout, args.concurrency,
                    expected=_expected(args.expect),
                    on_progress=lambda line: print(line, file=sys.stderr, flush=True),
                    http=http)
    print(json.dumps(result.to_json(), indent=1) if args.json else result.describe())
    fits = result.fits_expected()
    return 0 if result.ok == args.count and fits is not False else 1


def _expected(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    shares = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            shares[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--expect: {item!r} is not NAME=SHARE (e.g. web-1=2,web-2=1)")
    return shares


def cmd_capture(args) -> int:
    hosts = [(h.strip(), args.namespace) for h in args.on.split(",") if h.strip()]
    with Capture(args.name, hosts, args.out, args.filter, args.interface) as capture:
        print(f"capturing on {', '.join(h for h, _ in hosts)} -> {args.out}"
              + (f" for {args.duration:g} s" if args.duration else " (Ctrl-C stops)"),
              file=sys.stderr, flush=True)
        try:
            if args.duration:
                time.sleep(args.duration)
            else:
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            pass
    if args.json:
        print(capture.manifest.read_text())
    else:
        for label, count in capture.counts.items():
            print(f"{label}: {count} packets")
        print(f"pcaps and capture.json in {args.out}")
    return 0
