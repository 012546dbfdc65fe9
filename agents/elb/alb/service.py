"""Every ALB the ELB host serves: reconciled from the ALB config, health-checked,
reported.

`reconcile(config)` brings the listeners (one server per ALB node VIP and
listener port), the health checkers (one per target group and target, from
the ENI in the target's zone) and the runtimes the proxy reads up to date;
it keeps what did not change, so open connections, pooled connections,
target health and counters survive an unrelated change.  `status()` is what
the agent writes under `applicationLoadBalancers` in its status file.
Addresses are the agent's business (it adds the VIPs `vips()` asks for
before reconciling); a listener that cannot bind or load its certificate
is reported in the status and retried.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from agents.elb.alb.accesslog import AccessLog
from agents.elb.alb.checks import http_check, observe
from agents.elb.alb.pool import TargetPool
from agents.elb.alb.proxy import ListenerServer
from agents.elb.alb.runtime import AlbRuntime
from agents.elb.health import INITIAL, TargetHealth, Transition
from base.alb_api import Alb, AlbConfig, AlbConfigError, HealthCheck, Target, read_alb_config

log = logging.getLogger("elb.alb")
REGISTRATION_DELAY = 0.25       # of an interval, as the ELB's checks (agents/elb/agent.py)
RETRY_SECONDS = 1.0
PRUNE_SECONDS = 5.0

CheckFn = Callable[[HealthCheck, Target, "str | None"], Awaitable["tuple[bool, str]"]]
ServerKey = tuple[str, str, int, str, tuple]     # ALB, VIP, port, protocol, certificates


@dataclass
class _Checker:
    check: HealthCheck
    source: str | None
    task: asyncio.Task


class AlbService:
    def __init__(self, vpc_ip: str | None, access_log: Path | None = None,
                 check: CheckFn = http_check, clock: Callable[[], float] = time.time,
                 previous_status: Path | None = None):
        self.vpc_ip = vpc_ip
        self.check = check
        self.clock = clock
        self.runtimes: dict[str, AlbRuntime] = {}
        self.servers: dict[ServerKey, ListenerServer] = {}
        self.failed: dict[ServerKey, str] = {}          # listeners that did not start, why
        self.checkers: dict[tuple[str, str, str], _Checker] = {}
        self.pool = TargetPool()
        self.access_log = AccessLog(access_log)
        self.dirty = True
        self._retry_at = 0.0
        self._pruned_at = 0.0
        self._inherited = inherited_alb_health(previous_status)
        self.config_error = ""
        self._stamp: tuple | None = None

    def load_if_changed(self, path: Path, taken: dict[str, str]) -> AlbConfig | None:
        """The config file's ALBs when the file changed since the last call,
        else None.  A file that does not parse leaves the previous config
        (None, and config_error says why); an ALB whose address a Classic/NLB
        load balancer has (taken: VIP -> its key) is left out, and said so."""
        stamp = file_stamp(path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        self.dirty = True
        try:
            config = read_alb_config(path)
        except AlbConfigError as err:
            self.config_error = str(err)
            log.error("%s; keeping the previous ALB configuration", err)
            return None
        clashes = [f"ALB {alb.name}: address {vip} is also load balancer {taken[vip]}'s"
                   for alb in config.load_balancers for vip in alb.vips if vip in taken]
        self.config_error = "; ".join(clashes)
        if clashes:
            log.error("alb config: %s; left out", self.config_error)
            config = AlbConfig(tuple(a for a in config.load_balancers
                                     if not any(v in taken for v in a.vips)))
        return config

    # --- reconcile ------------------------------------------------------------------

    async def reconcile(self, config: AlbConfig) -> None:
        wanted = config.by_name()
        for name in [n for n in self.runtimes if n not in wanted]:
            del self.runtimes[name]
            log.info("ALB %s removed", name)
        for name, alb in wanted.items():
            runtime = self.runtimes.get(name)
            if runtime is None:
                self.runtimes[name] = AlbRuntime(alb, self.vpc_ip)
                log.info("ALB %s: %s %s on %s", name, alb.scheme, alb.hostname,
                         ", ".join(alb.vips))
            else:
                runtime.configure(alb)
        self._reconcile_checkers()
        await self._reconcile_servers()
        self.pool.prune({(t.address, t.port) for alb in wanted.values()
                         for tg in alb.target_groups for t in tg.targets})
        self.dirty = True

    def vips(self) -> dict[str, Alb]:
        """Every address the ALBs listen on -> its ALB (the agent places them)."""
        return {vip: r.alb for r in self.runtimes.values() for vip in r.alb.vips}

    def _reconcile_checkers(self) -> None:
        wanted = {}
        for name, runtime in self.runtimes.items():
            for tg in runtime.alb.target_groups:
                for target in tg.targets:
                    wanted[(name, tg.name, target.endpoint)] = (
                        runtime, tg.name, target, tg.health_check, runtime.check_source(target))
        for key in [k for k in self.checkers if k not in wanted]:
            self.checkers.pop(key).task.cancel()
        for key, (runtime, group, target, check, source) in wanted.items():
            checker = self.checkers.get(key)
            if checker is not None and (checker.check, checker.source) == (check, source):
                continue
            if checker is not None:
                checker.task.cancel()
            health_key = (group, target.endpoint)
            if health_key not in runtime.health:
                runtime.set_health(group, target.endpoint, self._inherited.pop(
                    key, TargetHealth(target.name, target.endpoint)))
            task = asyncio.get_running_loop().create_task(
                self._check_loop(key, runtime, group, target, check, source),
                name=f"alb check {key}")
            self.checkers[key] = _Checker(check, source, task)

    async def _check_loop(self, key, runtime: AlbRuntime, group: str, target: Target,
                          check: HealthCheck, source: str | None) -> None:
        if runtime.health[(group, target.endpoint)].state == INITIAL:
            await asyncio.sleep(check.interval * REGISTRATION_DELAY)
        while True:
            started = time.monotonic()
            ok, detail = await self.check(check, target, source)
            before = runtime.health.get((group, target.endpoint))
            if before is None or self.checkers.get(key) is None or \
                    self.runtimes.get(key[0]) is not runtime:
                return
            after = observe(before, ok, detail, self.clock(), check)
            if runtime.set_health(group, target.endpoint, after) and after.transitions:
                log.info("ALB %s %s target %s: %s -> %s (%s)", key[0], group, target.endpoint,
                         before.state, after.state, after.transitions[-1].reason)
            self.dirty = True
            await asyncio.sleep(max(0.0, check.interval - (time.monotonic() - started)))

    def _wanted_servers(self) -> dict[ServerKey, AlbRuntime]:
        return {(name, vip, l.port, l.protocol, l.certificates): runtime
                for name, runtime in self.runtimes.items()
                for vip in runtime.alb.vips for l in runtime.alb.listeners}

    async def _reconcile_servers(self) -> None:
        wanted = self._wanted_servers()
        for key in [k for k in self.servers if k not in wanted]:
            await self.servers.pop(key).close()
        self.failed = {k: why for k, why in self.failed.items() if k in wanted}
        for key in wanted:
            if key in self.servers:
                continue
            name, vip, port, protocol, certificates = key
            server = ListenerServer(vip, port, protocol, certificates,
                                    lambda n=name: self.runtimes.get(n), self.pool,
                                    self.access_log)
            try:
                await server.start()
            except (OSError, ssl.SSLError, ValueError) as err:
                why = f"{type(err).__name__}: {err}"
                if self.failed.get(key) != why:
                    log.error("ALB %s listener %s:%d/%s: %s", name, vip, port, protocol, why)
                self.failed[key] = why
                continue
            self.failed.pop(key, None)
            self.servers[key] = server

    async def tick(self) -> None:
        """Periodic work: write the access log, retry failed listeners, drop
        idle pooled connections."""
        self.access_log.flush()
        now = time.monotonic()
        if self.failed and now - self._retry_at >= RETRY_SECONDS:
            self._retry_at = now
            await self._reconcile_servers()
            self.dirty = True
        if now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            self.pool.prune()

    async def close(self) -> None:
        for checker in self.checkers.values():
            checker.task.cancel()
        self.checkers.clear()
        for server in self.servers.values():
            await server.close()
        self.servers.clear()
        self.pool.close()
        self.access_log.flush()

    # --- status ---------------------------------------------------------------------

    def status(self) -> list[dict]:
        return [self._alb_status(r) for _, r in sorted(self.runtimes.items())]

    def _alb_status(self, runtime: AlbRuntime) -> dict:
        alb = runtime.alb
        errors = {(k[1], k[2]): why for k, why in self.failed.items() if k[0] == alb.name}
        return {
            "name": alb.name, "flavour": "alb", "hostname": alb.hostname, "scheme": alb.scheme,
            "owner": alb.owner,
            "vip": alb.vip, "vips": list(alb.vips),
            "zoneNodes": [{"zone": n.zone, "vip": n.vip, "eni": n.eni} for n in alb.zone_nodes],
            "idleTimeout": alb.idle_timeout, "sourceRanges": list(alb.source_ranges),
            "listeners": [{"port": l.port, "protocol": l.protocol, "rules": len(l.rules),
                           "defaultAction": l.default_action.type,
                           "certificates": [c.cert_file for c in l.certificates],
                           "errors": {vip: errors[(vip, l.port)] for vip in alb.vips
                                      if (vip, l.port) in errors}}
                          for l in alb.listeners],
            "requests": sum(runtime.requests.values()),
            "responses": {str(code): n for code, n in sorted(runtime.codes.items())},
            "targetGroups": [self._group_status(runtime, tg) for tg in alb.target_groups]}

    @staticmethod
    def _group_status(runtime: AlbRuntime, tg) -> dict:
        serving, failing_open = runtime.serving(tg.name)
        hc = tg.health_check
        outstanding: dict[str, int] = {}
        for (_, group), balancer in runtime.balancers.items():
            if group == tg.name:
                for endpoint, n in balancer.outstanding.items():
                    outstanding[endpoint] = outstanding.get(endpoint, 0) + n
        targets = []
        for t in tg.targets:
            known = runtime.health.get((tg.name, t.endpoint)) or TargetHealth(t.name, t.endpoint)
            targets.append({
                "address": t.address, "port": t.port, "endpoint": t.endpoint, "name": t.name,
                "zone": t.zone, "state": known.state, "inService": t.endpoint in serving,
                "lastCheck": known.last_check, "lastResult": known.last_result,
                "consecutiveSuccesses": known.successes,
                "consecutiveFailures": known.failures, "checks": known.checks,
                "transitions": [asdict(x) for x in known.transitions],
                "requests": runtime.requests.get((tg.name, t.endpoint), 0),
                "failedRequests": runtime.failures.get((tg.name, t.endpoint), 0),
                "outstanding": outstanding.get(t.endpoint, 0)})
        return {"name": tg.name, "arn": runtime.arns[tg.name], "protocol": tg.protocol,
                "targetType": tg.target_type, "algorithm": tg.algorithm, "source": tg.source,
                "healthCheck": {"target": f"{hc.protocol}:{hc.port or 'traffic-port'}{hc.path}",
                                "interval": hc.interval, "timeout": hc.timeout,
                                "healthyThreshold": hc.healthy_threshold,
                                "unhealthyThreshold": hc.unhealthy_threshold,
                                "matcher": hc.matcher, "detectionTime": hc.detection_time},
                "inService": list(serving), "failingOpen": failing_open, "targets": targets}


def file_stamp(path: Path) -> tuple | None:
    """What tells a replaced file from the one read before (None: no file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def inherited_alb_health(status_path: Path | None) -> dict[tuple[str, str, str], TargetHealth]:
    """(ALB, target group, endpoint) -> the health a previous run of the agent
    reported, so a restarted agent keeps healthy targets in service."""
    if status_path is None:
        return {}
    try:
        previous = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for alb in previous.get("applicationLoadBalancers", []):
        for tg in alb.get("targetGroups", []):
            for t in tg.get("targets", []):
                found[(alb["name"], tg["name"], t["endpoint"])] = TargetHealth(
                    t["name"], t["endpoint"], t["state"], t["consecutiveSuccesses"],
                    t["consecutiveFailures"], t["checks"], t["lastCheck"], t["lastResult"],
                    tuple(Transition(**x) for x in t["transitions"]))
    return found
