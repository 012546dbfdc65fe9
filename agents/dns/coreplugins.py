"""The Corefile directives svclab's cluster DNS emulates, read as CoreDNS 1.12 reads them.

One function per plugin turns its directive lines (agents/dns/corefile.py)
into a frozen settings object, with CoreDNS's checks and CoreDNS's error
messages (`plugin/cache: Corefile:12 - Error during parsing: Wrong argument
count or unexpected line ending after 'x'`).  Each follows the plugin's
setup.go in github.com/coredns/coredns (plugin/<name>/setup.go): the same
arguments, properties, defaults and limits.  Properties that only tune how
CoreDNS talks to its upstreams (connection reuse, health checks) are
accepted and have no effect; a property or plugin whose behaviour the lab
does not emulate is refused with a message saying so, never silently
ignored.  Pure: no I/O.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from agents.dns.corefile import CorefileError, Directive

NOT_EMULATED = "is not emulated by svclab's cluster DNS (docs/cluster-dns.md)"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
LOG_CLASSES = ("all", "denial", "error", "success")
COMMON_LOG_FORMAT = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} '
                     '{>bufsize}" {rcode} {>rflags} {rsize} {duration}')
COMBINED_LOG_FORMAT = COMMON_LOG_FORMAT + ' "{>opcode}"'


class Setup:
    """Where a plugin's setup stands: its name, the file, for CoreDNS's messages."""

    def __init__(self, plugin: str, filename: str):
        self.plugin, self.filename = plugin, filename

    def fail(self, message: str) -> CorefileError:
        return CorefileError(f"plugin/{self.plugin}: {message}")

    def at(self, line: int, message: str) -> CorefileError:
        return self.fail(f"{self.filename}:{line} - Error during parsing: {message}")

    def arg_error(self, line: int, after: str) -> CorefileError:
        return self.at(line, f"Wrong argument count or unexpected line ending after '{after}'")

    def unknown(self, prop: Directive) -> CorefileError:
        return self.at(prop.line, f"unknown property '{prop.name}'")

    def not_emulated(self, line: int, what: str) -> CorefileError:
        return self.at(line, f"{what} {NOT_EMULATED}")

    def once(self, directives: list[Directive]) -> Directive:
        if len(directives) > 1:
            raise self.fail("this plugin can only be used once per Server Block")
        return directives[0]


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds (`5s`, `1m30s`, `500ms`, `0`)."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body or _DURATION.sub("", body):
        raise ValueError(f'time: invalid duration "{text}"')
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(body))
    return -seconds if text.startswith("-") else seconds


def go_atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def normalize_zone(name: str) -> str:
    """`Example.ORG` -> `example.org.`; `.` stays the root."""
    name = name.strip().lower()
    return "." if name in (".", "") else name.rstrip(".") + "."


def check_address(setup: Setup, address: str) -> tuple[str, int]:
    """`:8080`, `127.0.0.1:8181`, `localhost:9153` -> (bind IP, port), as net.SplitHostPort."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise setup.fail(f"address {address}: missing port in address")
    if not port.isdigit() or int(port) > 65535:
        raise setup.fail(f'address {address}: invalid port "{port}"')
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return "0.0.0.0", int(port)
    if host == "localhost":
        return "127.0.0.1", int(port)
    try:
        return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        raise setup.fail(f"address {address}: only IPv4 listen addresses are emulated") from None


# --- the plugins -----------------------------------------------------------------------

@dataclass(frozen=True)
class Health:
    address: tuple[str, int] = ("0.0.0.0", 8080)
    lameduck: float = 0.0


def setup_health(setup: Setup, lines: list[Directive]) -> Health:
    line = setup.once(lines)
    if len(line.args) > 1:
        raise setup.arg_error(line.line, line.args[-1])
    address = check_address(setup, line.args[0]) if line.args else Health.address
    lameduck = 0.0
    for prop in line.lines():
        if prop.name != "lameduck":
            raise setup.unknown(prop)
        if len(prop.args) != 1:
            raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
        try:
            lameduck = parse_duration(prop.args[0])
        except ValueError as err:
            raise setup.fail(f"unable to parse lameduck duration value: '{prop.args[0]}' : "
                             f"{err}") from None
    return Health(address, lameduck)


def setup_ready(setup: Setup, lines: list[Directive]) -> tuple[str, int]:
    line = setup.once(lines)
    if len(line.args) > 1:
        raise setup.arg_error(line.line, line.args[-1])
    for prop in line.lines():
        if prop.name != "monitor":
            raise setup.unknown(prop)
        raise setup.not_emulated(prop.line, "ready's monitor property")
    return check_address(setup, line.args[0]) if line.args else ("0.0.0.0", 8181)


def setup_prometheus(setup: Setup, lines: list[Directive]) -> tuple[str, int]:
    line = setup.once(lines)
    if len(line.args) > 1:
        raise setup.arg_error(line.line, line.args[-1])
    for prop in line.lines():
        raise setup.not_emulated(prop.line, f"prometheus's {prop.name} property")
    return check_address(setup, line.args[0] if line.args else "localhost:9153")


@dataclass(frozen=True)
class Reload:
    interval: float = 30.0
    jitter: float = 15.0


def setup_reload(setup: Setup, lines: list[Directive]) -> Reload:
    line = lines[0]
    if len(line.args) > 2:
        raise setup.arg_error(line.line, line.args[-1])
    values = []
    for text in line.args:
        try:
            values.append(parse_duration(text))
        except ValueError as err:
            raise setup.fail(str(err)) from None
    interval = values[0] if values else Reload.interval
    jitter = values[1] if len(values) > 1 else Reload.jitter
    if interval < 2:
        raise setup.fail("interval value must be greater or equal to 2s")
    if jitter and jitter < 1:
        raise setup.fail("jitter value must be 0 or greater or equal to 1s")
    return Reload(interval, min(jitter, interval / 2))


def setup_errors(setup: Setup, lines: list[Directive]) -> bool:
    line = setup.once(lines)
    if len(line.args) > 1:
        raise setup.arg_error(line.line, line.args[-1])
    if line.args and line.args[0] != "stdout":
        raise setup.at(line.line, f"invalid log file: {line.args[0]}")
    for prop in line.lines():
        if prop.name == "consolidate":
            raise setup.not_emulated(prop.line, "consolidate")
        if prop.name != "stacktrace":
            raise CorefileError(f"plugin/errors: {setup.filename}:{prop.line} - Syntax error: "
                                f"Unexpected token '{prop.name}', expecting 'Unknown field "
                                f"{prop.name}'")
    return True


@dataclass(frozen=True)
class LogRule:
    zone: str                       # queries at or below it are logged
    format: str = COMMON_LOG_FORMAT
    classes: frozenset[str] = frozenset({"all"})


def setup_log(setup: Setup, lines: list[Directive]) -> tuple[LogRule, ...]:
    rules: list[LogRule] = []
    for line in lines:
        args = list(line.args)
        fmt = COMMON_LOG_FORMAT
        if len(args) > 1 and "{" in args[-1]:
            fmt = args.pop().replace("{common}", COMMON_LOG_FORMAT) \
                .replace("{combined}", COMBINED_LOG_FORMAT)
        classes: set[str] = set()
        for prop in line.lines():
            if prop.name != "class":
                raise setup.at(prop.line, f"unknown property '{prop.name}'")
            if not prop.args:
                raise setup.arg_error(prop.line, prop.name)
            for name in prop.args:
                if name not in LOG_CLASSES:
                    raise setup.fail(f"invalid Class: {name}")
                classes.add(name)
        for zone in args or ["."]:
            rules.append(LogRule(normalize_zone(zone), fmt, frozenset(classes or {"all"})))
    return tuple(rules)


@dataclass(frozen=True)
class Cache:
    zones: tuple[str, ...] = (".",)
    success_ttl: float = 3600.0
    denial_ttl: float = 1800.0
    success_min: float = 5.0
    denial_min: float = 5.0
    success_capacity: int = 10000
    denial_capacity: int = 10000
    servfail_ttl: float = 5.0
    no_success: tuple[str, ...] = ()        # zones whose answers are not cached
    no_denial: tuple[str, ...] = ()
    keepttl: bool = False


def _cache_tier(setup: Setup, prop: Directive) -> tuple[int, float | None, float | None]:
    """`success|denial CAPACITY [TTL [MINTTL]]`."""
    if not prop.args:
        raise setup.arg_error(prop.line, prop.name)
    try:
        numbers = [go_atoi(a) for a in prop.args[:3]]
    except ValueError as err:
        raise setup.fail(str(err)) from None
    if len(numbers) > 1 and numbers[1] <= 0:
        raise setup.fail(f"cache TTL can not be zero or negative: {numbers[1]}")
    if len(numbers) > 2 and numbers[2] < 0:
        raise setup.fail(f"cache min TTL can not be negative: {numbers[2]}")
    ttl = float(numbers[1]) if len(numbers) > 1 else None
    minimum = float(numbers[2]) if len(numbers) > 2 else None
    return numbers[0], ttl, minimum


def setup_cache(setup: Setup, lines: list[Directive], block_zones: tuple[str, ...]) -> Cache:
    line = setup.once(lines)
    args = list(line.args)
    settings: dict = {}
    if args and re.fullmatch(r"[+-]?\d+", args[0]):
        ttl = int(args.pop(0))
        if ttl <= 0:
            raise setup.fail(f"cache TTL can not be zero or negative: {ttl}")
        settings.update(success_ttl=float(ttl), denial_ttl=float(ttl))
    settings["zones"] = tuple(normalize_zone(z) for z in args) or block_zones
    for prop in line.lines():
        if prop.name in ("success", "denial"):
            capacity, ttl, minimum = _cache_tier(setup, prop)
            settings[f"{prop.name}_capacity"] = capacity
            if ttl is not None:
                settings[f"{prop.name}_ttl"] = ttl
            if minimum is not None:
                settings[f"{prop.name}_min"] = minimum
        elif prop.name == "servfail":
            if len(prop.args) != 1:
                raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
            try:
                seconds = parse_duration(prop.args[0])
            except ValueError as err:
                raise setup.fail(str(err)) from None
            if seconds < 0 or seconds > 300:
                raise setup.fail("invalid negative ttl for servfail" if seconds < 0 else
                                 "maximum servfail duration is 5m0s")
            settings["servfail_ttl"] = seconds
        elif prop.name == "disable":
            if not prop.args:
                raise setup.arg_error(prop.line, prop.name)
            if prop.args[0] not in ("success", "denial"):
                raise setup.fail('cache type for disable must be "success" or "denial"')
            zones = tuple(normalize_zone(z) for z in prop.args[1:]) or (".",)
            settings["no_success" if prop.args[0] == "success" else "no_denial"] = zones
        elif prop.name == "keepttl":
            if prop.args:
                raise setup.arg_error(prop.line, prop.args[-1])
            settings["keepttl"] = True
        elif prop.name == "prefetch":
            if not 1 <= len(prop.args) <= 3:
                raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
        elif prop.name in ("serve_stale", "serve_stale_policy"):
            raise setup.not_emulated(prop.line, prop.name)
        else:
            raise setup.arg_error(prop.line, prop.name)
    return Cache(**settings)


@dataclass(frozen=True)
class Kubernetes:
    zones: tuple[str, ...]
    domain: str                         # the primary (first non-reverse) zone
    pods: str = "disabled"
    fallthrough: tuple[str, ...] = ()
    ttl: int = 5


KUBERNETES_NO_EFFECT = ("startup_timeout", "apiserver_qps", "apiserver_burst",
                        "apiserver_max_inflight")
KUBERNETES_NOT_EMULATED = ("endpoint_pod_names", "namespaces", "endpoint", "tls", "labels",
                           "namespace_labels", "noendpoints", "zonal", "ignore", "kubeconfig",
                           "multicluster")


def is_reverse(zone: str) -> bool:
    return zone.endswith(("in-addr.arpa.", "ip6.arpa."))


def setup_kubernetes(setup: Setup, lines: list[Directive],
                     block_zones: tuple[str, ...]) -> Kubernetes:
    line = setup.once(lines)
    zones = tuple(normalize_zone(z) for z in line.args) or block_zones
    forward_zones = [z for z in zones if not is_reverse(z)]
    if not forward_zones:
        raise setup.fail("non-reverse zone name must be used")
    if len(forward_zones) > 1:
        raise setup.not_emulated(line.line, "more than one non-reverse zone")
    settings: dict = {"zones": zones, "domain": forward_zones[0]}
    for prop in line.lines():
        if prop.name == "pods":
            if len(prop.args) != 1:
                raise setup.arg_error(prop.line, prop.args[-1] if prop.args else prop.name)
            if prop.args[0] not in ("disabled", "insecure", "verified"):
                raise setup.fail(f"wrong value for pods: {prop.args[0]},  must be one of: "
                                 "disabled, verified, insecure")
            settings["pods"] = prop.args[0]
        elif prop.name == "fallthrough":
            settings["fallthrough"] = tuple(normalize_zone(z) for z in prop.args) or (".",)
        elif prop.name == "ttl":
            if not prop.args:
                raise setup.arg_error(prop.line, prop.name)
            try:
                ttl = go_atoi(prop.args[0])
            except ValueError as err:
                raise setup.fail(str(err)) from None
            if not 0 <= ttl <= 3600:
                raise setup.at(prop.line, f"ttl must be in range [0, 3600]: {ttl}")
            settings["ttl"] = ttl
        elif prop.name in KUBERNETES_NOT_EMULATED:
            raise setup.not_emulated(prop.line, prop.name)
        elif prop.name not in KUBERNETES_NO_EFFECT:
            raise setup.unknown(prop)
    return Kubernetes(**settings)


def setup_loadbalance(setup: Setup, lines: list[Directive]) -> bool:
    line = setup.once(lines)
    if len(line.args) > 1:
        raise setup.arg_error(line.line, line.args[-1])
    if line.args and line.args[0] != "round_robin":
        if line.args[0] == "weighted":
            raise setup.not_emulated(line.line, "the weighted policy")
        raise setup.fail(f"unknown policy: {line.args[0]}")
    if line.lines():
        raise setup.not_emulated(line.line, "loadbalance's properties")
    return True


def setup_loop(setup: Setup, lines: list[Directive]) -> bool:
    line = setup.once(lines)
    if line.args:
        raise setup.arg_error(line.line, line.args[-1])
    return True
