"""`registry.k8s.io/e2e-test-images/agnhost`: the subcommands Service and DNS
tests run, dispatched from the container's args as the real `/agnhost` does.

Emulated: `netexec` (netexec.py), `serve-hostname` (serve_hostname.py),
`pause` (prints "Paused", waits; SIGINT exits 1, SIGTERM 2), `dns-suffix`,
`dns-server-list` and `etc-hosts` (print the pod's resolv.conf search list,
its nameservers, its /etc/hosts), and `connect HOST:PORT [--timeout D]
[--protocol tcp|udp]` (nothing on success; `TIMEOUT`, `REFUSED`, `DNS: ...`,
`OTHER: ...` on stderr and exit 1).  The image's default is `pause`.
Another of agnhost's subcommands says it is not emulated and exits 1; an
unknown one gets cobra's error, as upstream (exit 0: upstream ignores it).
"""
from __future__ import annotations

import signal
import socket
import sys

from agents.images import netexec, serve_hostname
from agents.images.flags import FlagError, parse_flags, split_launch
from agents.images.netexec import go_duration
from agents.images.netloop import Loop
from agents.proctitle import set_process_title

EMULATED = ("netexec", "serve-hostname", "pause", "dns-suffix", "dns-server-list",
            "etc-hosts", "connect")
UPSTREAM_ONLY = ("audit-proxy", "crd-conversion-webhook", "entrypoint-tester",
                 "fake-gitserver", "guestbook", "inclusterclient", "liveness",
                 "logs-generator", "mounttest", "net", "nettest", "no-snat-test",
                 "no-snat-test-proxy", "porter", "port-forward-tester",
                 "resource-consumer-controller", "test-webserver", "webhook",
                 "test-service-account-issuer-discovery", "grpc-health-checking",
                 "mtlsclient", "mtlsserver", "http-echo", "registry")


def resolv_field(text: str, key: str) -> list[str]:
    """The words after the first `key` line of a resolv.conf (upstream splits on ' ')."""
    for line in text.split("\n"):
        if line.startswith(key):
            return line.split(" ")[1:]
    raise LookupError("Could not find DNS search list!")


def pause() -> int:
    code = [0]
    loop = Loop()

    def stop(value: int) -> None:
        code[0] = value
        loop.stop()

    loop.on_signal(signal.SIGINT, lambda: stop(1))
    loop.on_signal(signal.SIGTERM, lambda: stop(2))
    print("Paused", flush=True)
    loop.run()
    return code[0]


def connect(args: list[str]) -> int:
    values, rest = parse_flags(args, {"timeout": "0s", "protocol": "tcp",
                                      "udp-data": "hostname", "sctp-data": "hostname"})
    if len(rest) != 1:
        print(f"Error: accepts 1 arg(s), received {len(rest)}", file=sys.stderr)
        return 1
    host, sep, port = rest[0].rpartition(":")
    if not sep or not port.isdigit():
        print(f"UNKNOWN: address {rest[0]}: missing port in address", file=sys.stderr)
        return 1
    host = host.strip("[]")
    timeout = go_duration(str(values["timeout"])) or None
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        print(f"DNS: lookup {host}: {err.strerror}", file=sys.stderr)
        return 1
    family, _, _, _, address = infos[0]
    udp = values["protocol"] == "udp"
    if values["protocol"] not in ("", "tcp", "udp"):
        print("Unsupported protocol", file=sys.stderr)
        return 1
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            if udp:
                sock.send(f"{values['udp-data']}\n".encode())
                if not sock.recv(1024):
                    print("OTHER: No data received from the server.", file=sys.stderr)
                    return 1
        except TimeoutError:
            print("TIMEOUT", file=sys.stderr)
            return 1
        except ConnectionRefusedError as err:
            print("REFUSED" + (f": {err.strerror}" if udp else ""), file=sys.stderr)
            return 1
        except OSError as err:
            print(f"OTHER: dial {'udp' if udp else 'tcp'} {rest[0]}: "
                  f"connect: {err.strerror}", file=sys.stderr)
            return 1
    return 0


def print_file_field(key: str) -> int:
    with open("/etc/resolv.conf") as resolv:
        print(",".join(resolv_field(resolv.read(), key)))
    return 0


def run(argv: list[str]) -> int:
    """argv: what /agnhost got (argv[0] is /agnhost)."""
    args = [a for a in argv[1:] if not a.startswith(("--v=", "--logtostderr",
                                                     "--alsologtostderr"))]
    if not args:
        print("agnhost: a subcommand is needed (svclab emulates "
              f"{', '.join(EMULATED)})", file=sys.stdout)
        return 0
    sub, rest = args[0], args[1:]
    try:
        if sub == "netexec":
            values, _ = parse_flags(rest, netexec.FLAGS)
            return netexec.serve(Loop(), values)
        if sub == "serve-hostname":
            return serve_hostname.serve(rest, agnhost=True)
        if sub == "pause":
            return pause()
        if sub == "connect":
            return connect(rest)
        if sub == "dns-suffix":
            return print_file_field("search")
        if sub == "dns-server-list":
            return print_file_field("nameserver")
        if sub == "etc-hosts":
            with open("/etc/hosts") as hosts:
                print(hosts.read())
            return 0
    except FlagError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    except LookupError as err:              # upstream panics
        print(f"panic: {err.args[0]}", file=sys.stderr)
        return 2
    if sub in UPSTREAM_ONLY:
        print(f"svclab: agnhost's {sub!r} is not emulated; svclab emulates "
              f"{', '.join(EMULATED)} (docs/images.md)", file=sys.stderr)
        return 1
    print(f'Error: unknown command "{sub}" for "app"\nRun \'app --help\' for usage.',
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    launch = split_launch(sys.argv[1:] if argv is None else argv)
    image_argv = list(launch.argv) or ["/agnhost", "pause"]
    set_process_title(image_argv)
    return run(image_argv)


if __name__ == "__main__":
    sys.exit(main())
