"""ClusterIP, NodePort and pod-IP allocation as pure functions over explicit state.

State is a frozenset of what is in use; every function returns the new state
and never mutates its input, so a rejected request simply drops the new state
and nothing leaks. Error messages are Kubernetes' own (ipallocator and
portallocator).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from controlplane.api.errors import ApiServerError


class AllocationError(ApiServerError):
    """The requested address/port cannot be allocated; str() is Kubernetes' text."""


class RangeFull(AllocationError):
    pass


@dataclass(frozen=True)
class IPRange:
    """An IPv4 range handing out host addresses (.1 .. broadcast-1)."""

    cidr: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> IPRange:
        return cls(ipaddress.IPv4Network(text, strict=False))

    @property
    def first(self) -> int:
        return int(self.cidr.network_address) + 1

    @property
    def last(self) -> int:
        return int(self.cidr.broadcast_address) - 1

    def address(self, offset: int) -> str:
        """The address ``offset`` hosts into the range (offset 0 is .1)."""
        return str(ipaddress.IPv4Address(self.first + offset))

    def contains(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self.first <= value <= self.last


def _random_free(candidates_lo: int, candidates_hi: int, used_ints: set[int],
                 rng: random.Random) -> int | None:
    """A random free integer in [lo, hi] (tries randomly, then scans)."""
    span = candidates_hi - candidates_lo + 1
    if span <= 0:
        return None
    for _ in range(64):
        pick = candidates_lo + rng.randrange(span)
        if pick not in used_ints:
            return pick
    start = candidates_lo + rng.randrange(span)
    for i in range(span):
        pick = candidates_lo + (start - candidates_lo + i) % span
        if pick not in used_ints:
            return pick
    return None


def service_static_band(rng: IPRange) -> int:
    """Size of the low band kept for explicit IPs (KEP-3070: min(max(16, size/16), 256))."""
    size = rng.last - rng.first + 1
    return min(max(16, size // 16), 256)


def allocate_ip(rng: IPRange, used: frozenset[str], requested: str | None,
                rand: random.Random) -> tuple[str, frozenset[str]]:
    """Allocate ``requested`` (checked) or a random free address above the static band."""
    if requested:
        if not rng.contains(requested):
            raise AllocationError(f"the provided IP ({requested}) is not in the valid range. "
                                  f"The range of valid IPs is {rng.cidr}")
        if requested in used:
            raise AllocationError("provided IP is already allocated")
        return requested, used | {requested}
    used_ints = {int(ipaddress.IPv4Address(ip)) for ip in used}
    band = service_static_band(rng)
    pick = _random_free(rng.first + band, rng.last, used_ints, rand)
    if pick is None:
        pick = _random_free(rng.first, rng.last, used_ints, rand)
    if pick is None:
        raise RangeFull("range is full")
    ip = str(ipaddress.IPv4Address(pick))
    return ip, used | {ip}


@dataclass(frozen=True)
class PortRange:
    base: int
    size: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        lo, _, hi = text.partition("-")
        return cls(int(lo), int(hi or lo) - int(lo) + 1)

    @property
    def last(self) -> int:
        return self.base + self.size - 1

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"

    def contains(self, port: int) -> bool:
        return self.base <= port <= self.last


def allocate_port(rng: PortRange, used: frozenset[int], requested: int | None,
                  rand: random.Random) -> tuple[int, frozenset[int]]:
    if requested:
        if not rng.contains(requested):
            raise AllocationError("provided port is not in the valid range. "
                                  f"The range of valid ports is {rng}")
        if requested in used:
            raise AllocationError("provided port is already allocated")
        return requested, used | {requested}
    pick = _random_free(rng.base, rng.last, set(used), rand)
    if pick is None:
        raise RangeFull("range is full")
    return pick, used | {pick}


def allocate_pod_ip(block: IPRange, used: frozenset[str]) -> tuple[str, frozenset[str]]:
    """Lowest free host address of a node's pod block (Calico-like, deterministic)."""
    used_ints = {int(ipaddress.IPv4Address(ip)) for ip in used}
    for value in range(block.first, block.last + 1):
        if value not in used_ints:
            ip = str(ipaddress.IPv4Address(value))
            return ip, used | {ip}
    raise RangeFull(f"no free pod IP in {block.cidr}")


def release(used: frozenset, item) -> frozenset:
    return used - {item}
