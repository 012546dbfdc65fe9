"""Pure: which targets of a target group take requests, and which one takes the next.

In service: the healthy targets.  A target group whose registered targets
are all unhealthy fails open, as AWS documents it: requests go to all of
them, by the algorithm.  Targets still in their first health check
(`initial`) get nothing; a group with nothing else (or no target at all)
has nobody to send to: the ALB answers 503.

Algorithms: round robin (the default: each ALB node takes the targets in
turn) and least outstanding requests (the target with the fewest requests
in flight; ties taken in turn so equal targets share evenly).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from agents.elb.health import HEALTHY, UNHEALTHY
from base.alb_api import LEAST_OUTSTANDING, Target


def in_service(targets: Sequence[Target], states: Mapping[str, str]) -> tuple[tuple[str, ...],
                                                                                bool]:
    """(endpoints that take requests, failing open?) from each endpoint's state."""
    endpoints = [t.endpoint for t in targets]
    healthy = tuple(e for e in endpoints if states.get(e) == HEALTHY)
    if healthy:
        return healthy, False
    if endpoints and all(states.get(e) == UNHEALTHY for e in endpoints):
        return tuple(endpoints), True
    return (), False


class Balancer:
    """Chooses targets for one target group on one ALB node; keeps the
    outstanding-request counts least-outstanding-requests needs."""

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self.turn = 0
        self.outstanding: dict[str, int] = {}

    def pick(self, candidates: Sequence[str]) -> str:
        if not candidates:
            raise ValueError("no candidates to pick from")
        count = len(candidates)
        start = self.turn % count
        self.turn += 1
        if self.algorithm != LEAST_OUTSTANDING:
            return candidates[start]
        order = [candidates[(start + i) % count] for i in range(count)]
        return min(order, key=lambda e: self.outstanding.get(e, 0))

    def started(self, endpoint: str) -> None:
        self.outstanding[endpoint] = self.outstanding.get(endpoint, 0) + 1

    def finished(self, endpoint: str) -> None:
        left = self.outstanding.get(endpoint, 0) - 1
        if left > 0:
            self.outstanding[endpoint] = left
        else:
            self.outstanding.pop(endpoint, None)
