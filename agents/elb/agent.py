"""The ELB agent: turns the controller's config file into a working load balancer
inside the `elb` host, and keeps every target's health.

One asyncio loop does it all: it polls the config file (the controller
replaces it atomically), reconciles VIPs, Classic listeners, health checks
and the NLB/security-group rules (one iptables-restore per change), and
writes a status file whenever something changes.

In a lab with zones every load balancer has a node per zone: its own VIP
(Classic listeners and NLB rules on each), its own set of targets in
service (its zone's, or all with cross-zone load balancing), and that
zone's ENI as the source of what it sends.  Each target is health-checked
once, from the ENI in its own zone.

Application Load Balancers come from a second file (base/alb_api.py, next
to the first by default): the agent polls it the same way, places the ALBs'
addresses (internet-facing ones on the internet side with the VIPs,
internal ones on the VPC interface of their ENI) and hands the rest to the
AlbService (agents/elb/alb/), whose status goes into the same status file.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agents.elb.alb.service import AlbService, file_stamp
from agents.elb.classic import ClassicListener
from agents.elb.health import INITIAL, TargetHealth, Transition, run_check
from agents.elb.rules import listener_chain, render_rules
from agents.elb.status import STATUS_VERSION, lb_status, nodes_in_service
from agents.elb.system import forget_udp_flows
from base.alb_api import INTERNAL, AlbConfig
from base.elb_api import (
    CLASSIC,
    NLB,
    ElbConfig,
    ElbConfigError,
    HealthCheck,
    LoadBalancer,
    Target,
    read_config,
    write_json_atomically,
)

log = logging.getLogger("elb.agent")
POLL_SECONDS = 0.05
# A newly registered target is first checked a quarter interval later (AWS
# registers asynchronously too); it also gives the nodes' proxies a moment to
# program the new NodePort before the first check.
REGISTRATION_DELAY = 0.25
STATUS_EVERY = 0.5

CheckFn = Callable[[HealthCheck, str, "str | None"], Awaitable["tuple[bool, str]"]]


@dataclass
class _Checker:
    check: HealthCheck
    source: str | None
    task: asyncio.Task


@dataclass
class _LbState:
    lb: LoadBalancer
    health: dict[str, TargetHealth] = field(default_factory=dict)
    checkers: dict[str, _Checker] = field(default_factory=dict)
    in_service: tuple[str, ...] = ()        # every address some node sends to
    serving: dict[str, tuple[str, ...]] = field(default_factory=dict)  # VIP -> addresses


class ElbAgent:
    """Owns listeners, checkers and rules; `run(stop)` until stop is set."""

    def __init__(self, config_path: Path, status_path: Path, vpc_ip: str | None,
                 netfilter=None, vips=None, check: CheckFn = run_check,
                 clock: Callable[[], float] = time.time, alb_config_path: Path | None = None,
                 access_log: Path | None = None, internal_vips=None, alb_service=None):
        self.config_path = config_path
        self.status_path = status_path
        self.vpc_ip = vpc_ip
        self.netfilter = netfilter      # None: no kernel rules (tests)
        self.vips = vips                # None: no address changes (tests)
        self.check = check
        self.clock = clock
        self.lbs: dict[str, _LbState] = {}
        self.listeners: dict[tuple, ClassicListener] = {}
        self.config_error = ""
        self._stamp: tuple | None = None
        self._rules_dirty = False
        self._status_dirty = True
        self._forget_udp: list[tuple[str, int, str]] = []
        # NLB flows per (key, VIP, target): what DNAT counters showed before the
        # last apply reset them, and the last reading (at most every STATUS_EVERY)
        self._nlb_flows_before: dict[tuple[str, str, str], int] = {}
        self._nlb_flows_read: tuple[float, dict[tuple[str, str, str], int]] = (0.0, {})
        self._inherited = inherited_health(status_path)
        self.alb_config_path = alb_config_path      # None: no ALBs
        self.internal_vips = internal_vips          # None: no address changes (tests)
        self.albs = alb_service or AlbService(vpc_ip, access_log, clock=clock,
                                              previous_status=status_path)
        self._alb_config = AlbConfig()

    # --- main loop -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        last_status = 0.0
        try:
            while not stop.is_set():
                await self.poll_config()
                await self.poll_alb_config()
                await self.albs.tick()
                self._status_dirty |= self.albs.dirty
                self.apply_rules_if_needed()
                now = time.monotonic()
                if self._status_dirty and now - last_status >= STATUS_EVERY / 5 or \
                        now - last_status >= STATUS_EVERY:
                    self.write_status()
                    last_status = now
                try:
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.shutdown()
            self.write_status()         # what a restarted agent starts from

    async def shutdown(self) -> None:
        for state in self.lbs.values():
            for checker in state.checkers.values():
                checker.task.cancel()
        for listener in self.listeners.values():
            await listener.close()
        self.listeners.clear()
        await self.albs.close()

    async def poll_config(self) -> None:
        stamp = file_stamp(self.config_path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            config = read_config(self.config_path)
        except ElbConfigError as err:
            self.config_error = str(err)
            self._status_dirty = True
            log.error("%s; keeping the previous configuration", err)
            return
        self.config_error = ""
        await self.reconcile(config)

    async def poll_alb_config(self) -> None:
        if self.alb_config_path is None:
            return
        taken = {vip: state.lb.key for state in self.lbs.values() for vip in state.lb.vips}
        config = self.albs.load_if_changed(self.alb_config_path, taken)
        if config is None:
            return
        self._alb_config = config
        self._rules_dirty = True
        self._place_vips()
        await self.albs.reconcile(config)
        self._status_dirty = True

    def _place_vips(self) -> None:
        """Every load balancer's addresses on the elb host: the ELBs' and the
        internet-facing ALBs' on the internet side, internal ALBs' on the VPC
        interface of the ENI they send from."""
        albs = self._alb_config.load_balancers
        if self.vips is not None:
            self.vips.reconcile({vip for state in self.lbs.values() for vip in state.lb.vips}
                                | {vip for alb in albs if alb.scheme != INTERNAL
                                   for vip in alb.vips})
        if self.internal_vips is not None:
            self.internal_vips.reconcile({node.vip: node.eni or self.vpc_ip for alb in albs
                                          if alb.scheme == INTERNAL for node in alb.nodes})

    # --- reconcile ---------------------------------------------------------------

    async def reconcile(self, config: ElbConfig) -> None:
        wanted = config.by_key()
        for key in [k for k in self.lbs if k not in wanted]:
            for checker in self.lbs.pop(key).checkers.values():
                checker.task.cancel()
            log.info("load balancer %s removed", key)
        for key, lb in wanted.items():
            state = self.lbs.get(key)
            if state is None:
                state = self.lbs[key] = _LbState(lb)
                log.info("load balancer %s: %s %s on %s", key, lb.flavour, lb.hostname, lb.vip)
            state.lb = lb
            self._reconcile_checkers(state)
            self._refresh_in_service(state)
        self._place_vips()
        await self._reconcile_listeners()
        self._rules_dirty = True
        self._status_dirty = True

    def _reconcile_checkers(self, state: _LbState) -> None:
        lb = state.lb
        addresses = {t.address: t for t in lb.targets}
        for address in [a for a in state.checkers if a not in addresses]:
            state.checkers.pop(address).task.cancel()
            state.health.pop(address, None)
        for address, target in addresses.items():
            checker = state.checkers.get(address)
            source = self._check_source(lb, target)
            if checker is not None and (checker.check, checker.source) == \
                    (lb.health_check, source):
                continue
            if checker is not None:
                checker.task.cancel()
            state.health.setdefault(address, self._inherited.pop(
                (lb.key, lb.uid, address), TargetHealth(target.node, address)))
            task = asyncio.get_running_loop().create_task(
                self._check_loop(state, address, lb.health_check, source),
                name=f"check {lb.key} {address}")
            state.checkers[address] = _Checker(lb.health_check, source, task)

    def _check_source(self, lb: LoadBalancer, target: Target) -> str | None:
        """A target is checked from the ENI in its own zone (the VPC address without zones)."""
        for node in lb.zone_nodes:
            if node.zone == target.zone and node.eni:
                return node.eni
        return self.vpc_ip

    async def _reconcile_listeners(self) -> None:
        wanted = {}
        for state in self.lbs.values():
            lb = state.lb
            if lb.flavour != CLASSIC:
                continue
            for node in lb.nodes:
                for listener in lb.listeners:
                    wanted[(lb.key, node.vip, listener.port, listener.node_port,
                            lb.source_ranges, node.eni or self.vpc_ip)] = (state, listener)
        for key in [k for k in self.listeners if k not in wanted]:
            await self.listeners.pop(key).close()
        for key, (state, listener) in wanted.items():
            if key in self.listeners:
                continue
            lb_key, vip, source = key[0], key[1], key[5]
            proxy = ClassicListener(
                vip, listener.port, listener.node_port,
                in_service=lambda k=lb_key, v=vip: self._serving(k, v),
                allows=state.lb.allows, source=source)
            await proxy.start()
            self.listeners[key] = proxy

    def _serving(self, key: str, vip: str) -> tuple[str, ...]:
        """The addresses the node at this VIP sends to."""
        state = self.lbs.get(key)
        return state.serving.get(vip, ()) if state else ()

    # --- health ------------------------------------------------------------------

    async def _check_loop(self, state: _LbState, address: str, check: HealthCheck,
                          source: str | None) -> None:
        if state.health[address].state == INITIAL:
            await asyncio.sleep(check.interval * REGISTRATION_DELAY)
        while True:
            started = time.monotonic()
            ok, detail = await self.check(check, address, source)
            before = state.health.get(address)
            if before is None or state.checkers.get(address) is None:
                return
            after = before.observe(ok, detail, self.clock(), check)
            state.health[address] = after
            self._status_dirty = True
            if after.state != before.state:
                log.info("%s target %s (%s): %s -> %s (%s)", state.lb.key, after.node,
                         address, before.state, after.state, after.transitions[-1].reason)
                self._refresh_in_service(state)
            await asyncio.sleep(max(0.0, check.interval - (time.monotonic() - started)))

    def _refresh_in_service(self, state: _LbState) -> None:
        fresh = nodes_in_service(state.lb, state.health)
        if fresh == state.serving:
            return
        if state.lb.flavour == NLB:
            self._rules_dirty = True
            for vip, addresses in state.serving.items():
                gone = set(addresses) - set(fresh.get(vip, ()))
                self._forget_udp += [(vip, l.port, a) for a in sorted(gone)
                                     for l in state.lb.listeners if l.protocol == "UDP"]
        state.serving = fresh
        state.in_service = tuple(sorted({a for addresses in fresh.values()
                                         for a in addresses}))

    # --- kernel and status ---------------------------------------------------------

    def apply_rules_if_needed(self) -> None:
        if not self._rules_dirty:
            return
        self._rules_dirty = False
        if self.netfilter is None:
            return
        before = {k: n for k, n in self._nlb_flows_before.items() if k[0] in self.lbs}
        for flow_key, flows in self._nlb_flows_now().items():    # the apply resets them
            before[flow_key] = before.get(flow_key, 0) + flows
        self._nlb_flows_before = before
        self._nlb_flows_read = (0.0, {})
        text = render_rules([s.lb for s in self.lbs.values()],
                            {k: s.in_service for k, s in self.lbs.items()},
                            self.netfilter.present(),
                            {(k, vip): addresses for k, s in self.lbs.items()
                             for vip, addresses in s.serving.items()},
                            self._alb_config.load_balancers)
        self.netfilter.apply(text)
        for vip, port, target in self._forget_udp:
            forget_udp_flows(vip, port, target)
        self._forget_udp.clear()

    def status(self) -> dict:
        sent: dict[str, dict[str, int]] = {}
        failed: dict[str, dict[str, int]] = {}
        by_node: dict[str, dict[str, dict[str, int]]] = {}     # key -> VIP -> target -> n
        counted = [((key, vip), target, n) for (key, vip, *_), listener
                   in self.listeners.items() for target, n in listener.sent.items()]
        counted += [((key, vip), target, n) for (key, vip, target), n
                    in self._nlb_flows().items()]
        for (key, vip), target, n in counted:
            sent.setdefault(key, {}).setdefault(target, 0)
            sent[key][target] += n
            node = by_node.setdefault(key, {}).setdefault(vip, {})
            node[target] = node.get(target, 0) + n
        for (key, *_), listener in self.listeners.items():
            for target, n in listener.failed.items():
                failed.setdefault(key, {}).setdefault(target, 0)
                failed[key][target] += n
        return {"version": STATUS_VERSION, "updated": self.clock(), "pid": os.getpid(),
                "configError": self.config_error, "albConfigError": self.albs.config_error,
                "loadBalancers": [lb_status(s.lb, s.health, s.in_service, sent.get(k, {}),
                                            failed.get(k, {}), by_node.get(k, {}), s.serving,
                                            nlb_counted=self.netfilter is not None)
                                  for k, s in sorted(self.lbs.items())],
                "applicationLoadBalancers": self.albs.status()}

    def _nlb_flows_now(self) -> dict[tuple[str, str, str], int]:
        """(key, VIP, target) -> flows the NLB rules now in the kernel DNATed."""
        if self.netfilter is None or not any(s.lb.flavour == NLB for s in self.lbs.values()):
            return {}
        counts = self.netfilter.dnat_counts()
        flows: dict[tuple[str, str, str], int] = {}
        for key, state in self.lbs.items():
            if state.lb.flavour != NLB:
                continue
            for node in state.lb.nodes:
                for listener in state.lb.listeners:
                    chain = listener_chain(state.lb, listener.port, listener.protocol, node.vip)
                    for target, n in counts.get(chain, {}).items():
                        flows[(key, node.vip, target)] = \
                            flows.get((key, node.vip, target), 0) + n
        return flows

    def _nlb_flows(self) -> dict[tuple[str, str, str], int]:
        """Every flow counted since the agent started (read at most every STATUS_EVERY)."""
        read_at, now = self._nlb_flows_read
        if time.monotonic() - read_at >= STATUS_EVERY:
            now = self._nlb_flows_now()
            self._nlb_flows_read = (time.monotonic(), now)
        keys = set(now) | set(self._nlb_flows_before)
        return {k: now.get(k, 0) + self._nlb_flows_before.get(k, 0) for k in keys
                if k[0] in self.lbs}

    def write_status(self) -> None:
        self._status_dirty = False
        self.albs.dirty = False
        write_json_atomically(self.status_path, self.status())


def inherited_health(status_path: Path) -> dict[tuple[str, str, str], TargetHealth]:
    """Target health a previous run of the agent reported, so a restarted agent
    keeps healthy targets in service instead of starting them all over."""
    try:
        previous = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for lb in previous.get("loadBalancers", []):
        for t in lb.get("targets", []):
            found[(lb["key"], lb.get("uid", ""), t["address"])] = TargetHealth(
                t["node"], t["address"], t["state"], t["consecutiveSuccesses"],
                t["consecutiveFailures"], t["checks"], t["lastCheck"], t["lastResult"],
                tuple(Transition(**x) for x in t["transitions"]))
    return found
