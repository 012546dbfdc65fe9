"""A parsed Corefile -> the configuration the cluster DNS runs with (pure).

`build_config` reads each server block's keys (`.:53`, `dns://example.org:5353`)
and runs the setup of every directive in CoreDNS's plugin order
(plugin.cfg: reload, ready, health, prometheus, errors, log, loadbalance,
cache, kubernetes, loop, forward), so that of two mistakes the one CoreDNS
reports is the one reported here.  A CoreDNS plugin svclab does not emulate
is refused (`plugin/hosts: ... is not emulated by svclab's cluster DNS`): the
lab never pretends to run a configuration it does not run.

The forward plugin lives here too: its `/etc/resolv.conf` is the node's
resolver, as for a pod with dnsPolicy Default (the caller says which
address that is), and any other file is read through the `read_file`
callable the caller gives (the only way out of this module).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from agents.dns import coreplugins as plugins
from agents.dns.corefile import COREDNS_DIRECTIVES, Corefile, CorefileError, Directive
from agents.dns.coreplugins import Setup, normalize_zone

PLUGIN_ORDER = ("reload", "ready", "health", "prometheus", "errors", "log", "loadbalance",
                "cache", "kubernetes", "loop", "forward")
RESOLV_CONF = "/etc/resolv.conf"
FORWARD_NO_EFFECT = ("expire", "max_fails", "health_check", "max_idle_conns", "max_age",
                     "prefer_udp", "max_connect_attempts", "failfast_all_unhealthy_upstreams",
                     "read_timeout")
FORWARD_NOT_EMULATED = ("tls", "tls_servername", "next", "next_on_nodata", "failover",
                        "resolver", "source_address", "doh_method")
FORWARD_POLICIES = ("random", "round_robin", "sequential")


@dataclass(frozen=True)
class Forward:
    zone: str
    to: tuple[tuple[str, int], ...]
    excepted: tuple[str, ...] = ()
    max_concurrent: int = 0             # 0: no limit of its own
    policy: str = "random"
    force_tcp: bool = False


@dataclass(frozen=True)
class Server:
    """One server block: the zones and port it serves and its plugin chain."""

    zones: tuple[str, ...]
    port: int
    log: tuple[plugins.LogRule, ...] = ()
    errors: bool = False
    loadbalance: bool = False
    cache: plugins.Cache | None = None
    kubernetes: plugins.Kubernetes | None = None
    forward: Forward | None = None


@dataclass(frozen=True)
class CoreConfig:
    filename: str
    sha512: str
    servers: tuple[Server, ...]
    health: plugins.Health | None = None
    ready: tuple[str, int] | None = None
    prometheus: tuple[str, int] | None = None
    reload: plugins.Reload | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(sorted({s.port for s in self.servers}))

    @property
    def kubernetes(self) -> plugins.Kubernetes | None:
        return next((s.kubernetes for s in self.servers if s.kubernetes), None)

    def listeners(self) -> tuple:
        """What must listen: changing it means new sockets, not a hot swap."""
        return (self.ports, self.prometheus, self.health and self.health.address, self.ready)


def parse_key(key: str, filename: str, line: int) -> tuple[str, int]:
    """`.:53` -> (".", 53); `dns://example.org` -> ("example.org.", 53)."""
    text = key
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme != "dns":
            raise CorefileError(f"{filename}:{line} - Error during parsing: {scheme}:// "
                                f"servers {plugins.NOT_EMULATED}")
        text = rest
    zone, port = text, "53"
    if text.startswith("["):
        raise CorefileError(f"{filename}:{line} - Error during parsing: IPv6 server keys "
                            f"{plugins.NOT_EMULATED}")
    if ":" in text:
        zone, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CorefileError(f"{filename}:{line} - Error during parsing: invalid port "
                            f"'{port}' in server key '{key}'")
    if "/" in zone:
        raise CorefileError(f"{filename}:{line} - Error during parsing: CIDR server keys "
                            f"{plugins.NOT_EMULATED}")
    return normalize_zone(zone or "."), int(port)


def _address(text: str) -> tuple[str, int] | None:
    """`10.0.0.2`, `10.0.0.2:5353`, `dns://10.0.0.2` -> (IP, port); None if no IPv4 address."""
    host, port = text.removeprefix("dns://"), "53"
    if ":" in host:
        host, _, port = host.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return (host, int(port)) if port.isdigit() and 0 < int(port) < 65536 else None


def setup_forward(setup: Setup, lines: list[Directive], node_resolver: tuple[str, int] | None,
                  read_file: Callable[[str], str]) -> Forward:
    line = setup.once(lines)
    if len(line.args) < 2:
        raise setup.arg_error(line.line, line.args[-1] if line.args else line.name)
    settings: dict = {"zone": normalize_zone(line.args[0])}
    targets: list[tuple[str, int]] = []
    for text in line.args[1:]:
        if "://" in text and not text.startswith("dns://"):
            raise setup.not_emulated(line.line, f"forwarding over {text.split('://')[0]}://")
        address = _address(text)
        if address is not None:
            targets.append(address)
            continue
        if text == RESOLV_CONF and node_resolver is not None:
            targets.append(node_resolver)
            continue
        try:
            content = read_file(text)
        except OSError:
            raise setup.fail(f"not an IP address or file: {text!r}") from None
        found = [w[1] for w in (x.split() for x in content.splitlines())
                 if len(w) >= 2 and w[0] == "nameserver" and "." in w[1]]
        targets += [(ip, 53) for ip in found]
    if not targets:
        raise setup.fail("no valid upstream addresses found")
    for prop in line.lines():
        if prop.name == "except":
            if not prop.args:
                raise setup.arg_error(prop.line, prop.name)
            settings["excepted"] = tuple(normalize_zone(z) for z in prop.args)
        elif prop.name == "max_concurrent":
            if len(prop.args) != 1:
                raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
            try:
                limit = plugins.go_atoi(prop.args[0])
            except ValueError as err:
                raise setup.fail(str(err)) from None
            if limit < 0:
                raise setup.fail(f"max_concurrent can't be negative: {limit}")
            settings["max_concurrent"] = limit
        elif prop.name == "policy":
            if len(prop.args) != 1:
                raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
            if prop.args[0] not in FORWARD_POLICIES:
                raise setup.at(prop.line, f"unknown policy '{prop.args[0]}'")
            settings["policy"] = prop.args[0]
        elif prop.name == "force_tcp":
            settings["force_tcp"] = True
        elif prop.name in FORWARD_NOT_EMULATED:
            raise setup.not_emulated(prop.line, prop.name)
        elif prop.name not in FORWARD_NO_EFFECT:
            raise setup.unknown(prop)
    return Forward(to=tuple(dict.fromkeys(targets)), **settings)


def build_config(corefile: Corefile, *, node_resolver: tuple[str, int] | None = None,
                 read_file: Callable[[str], str] | None = None) -> CoreConfig:
    """The configuration of a Corefile; CorefileError with CoreDNS's message if refused."""
    read = read_file or _no_files
    filename = corefile.filename
    servers: list[Server] = []
    globals_: dict = {}
    seen: set[tuple[str, int]] = set()
    for block in corefile.blocks:
        keys = [parse_key(k, filename, block.line) for k in block.keys]
        for zone, port in keys:
            if (zone, port) in seen:
                raise CorefileError(f"cannot serve dns://{zone}:{port} - it is already defined")
            seen.add((zone, port))
        by_name: dict[str, list[Directive]] = {}
        for directive in block.directives:
            by_name.setdefault(directive.name, []).append(directive)
        for name in sorted(set(by_name) - set(PLUGIN_ORDER),
                           key=lambda n: by_name[n][0].line):
            assert name in COREDNS_DIRECTIVES
            raise Setup(name, filename).not_emulated(by_name[name][0].line,
                                                      f"the {name} plugin")
        for port in sorted({p for _, p in keys}):
            zones = tuple(z for z, p in keys if p == port)
            servers.append(_server(by_name, zones, port, filename, globals_, node_resolver,
                                   read))
    return CoreConfig(filename, corefile.sha512, tuple(servers), **globals_)


def _server(by_name: dict[str, list[Directive]], zones: tuple[str, ...], port: int,
            filename: str, globals_: dict, node_resolver, read) -> Server:
    settings: dict = {}
    for name in PLUGIN_ORDER:
        lines = by_name.get(name)
        if not lines:
            continue
        setup = Setup(name, filename)
        if name == "reload":
            globals_.setdefault("reload", plugins.setup_reload(setup, lines))
        elif name == "ready":
            globals_.setdefault("ready", plugins.setup_ready(setup, lines))
        elif name == "health":
            globals_.setdefault("health", plugins.setup_health(setup, lines))
        elif name == "prometheus":
            globals_.setdefault("prometheus", plugins.setup_prometheus(setup, lines))
        elif name == "errors":
            settings["errors"] = plugins.setup_errors(setup, lines)
        elif name == "log":
            settings["log"] = plugins.setup_log(setup, lines)
        elif name == "loadbalance":
            settings["loadbalance"] = plugins.setup_loadbalance(setup, lines)
        elif name == "cache":
            settings["cache"] = plugins.setup_cache(setup, lines, zones)
        elif name == "kubernetes":
            settings["kubernetes"] = plugins.setup_kubernetes(setup, lines, zones)
        elif name == "loop":
            plugins.setup_loop(setup, lines)
        elif name == "forward":
            settings["forward"] = setup_forward(setup, lines, node_resolver, read)
    return Server(zones=zones, port=port, **settings)


def _no_files(path: str) -> str:
    raise OSError(f"{path}: no file reading here")


def kubeadm_corefile(domain: str = "cluster.local") -> str:
    """The Corefile kubeadm installs (its CoreDNS add-on's ConfigMap), for `domain`."""
    return f"""\
.:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {domain}
       disable denial {domain}
    }}
    loop
    reload
    loadbalance
}}
"""
