"""The zones experiment's expectations: which endpoints a node may use and what
share of connections should cross a zone, for each preference and ELB setting."""
from __future__ import annotations

import pytest

from experiments.zones_model import (
    AUTO,
    NONE,
    SAME_NODE,
    SAME_ZONE,
    Ep,
    expected_from_pod,
    expected_via_elb,
)

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
NA, NB, NC = "ip-a", "ip-b", "ip-c"
BALANCED = [Ep("10.0.0.1", NA, A), Ep("10.0.0.2", NA, A), Ep("10.0.1.1", NB, B),
            Ep("10.0.1.2", NB, B), Ep("10.0.2.1", NC, C), Ep("10.0.2.2", NC, C)]
WORKERS = {NA: A, NB: B, NC: C}


@pytest.mark.parametrize("preference, node, zone, share, allowed", [
    (NONE, NA, A, 4 / 6, 6),
    (SAME_ZONE, NA, A, 0.0, 2),
    (SAME_NODE, NA, A, 0.0, 2),
    (SAME_NODE, "ip-cp", A, 0.0, 2),        # no endpoint on the node: its zone's
])
def test_pod_expectations_balanced(preference, node, zone, share, allowed):
    got_share, got_allowed = expected_from_pod(BALANCED, preference, node, zone)
    assert got_share == pytest.approx(share)
    assert len(got_allowed) == allowed


def test_a_zone_without_endpoints_falls_back_to_all():
    elsewhere = [e for e in BALANCED if e.zone != A]
    share, allowed = expected_from_pod(elsewhere, SAME_ZONE, NA, A)
    assert share == 1.0 and len(allowed) == 4


def test_auto_uses_hints_only_when_every_endpoint_has_them():
    hinted = [Ep(e.ip, e.node, e.zone, (e.zone,)) for e in BALANCED]
    hinted[2] = Ep("10.0.1.1", NB, B, (A,))         # donated to zone a
    share, allowed = expected_from_pod(hinted, AUTO, NA, A)
    assert allowed == {"10.0.0.1", "10.0.0.2", "10.0.1.1"}
    assert share == pytest.approx(1 / 3)
    hinted[0] = Ep("10.0.0.1", NA, A)               # one without hints: cluster-wide
    assert len(expected_from_pod(hinted, AUTO, NA, A)[1]) == 6


@pytest.mark.parametrize("preference, cross_zone, share", [
    (NONE, False, 4 / 6),           # own zone's node, then any endpoint
    (NONE, True, 1 - 1 / 9),        # no crossing only if node and endpoint are in a
    (SAME_ZONE, False, 0.0),
    (SAME_ZONE, True, 2 / 3),       # only the ELB -> node hop crosses
])
def test_elb_expectations(preference, cross_zone, share):
    got, allowed = expected_via_elb(BALANCED, preference, A, WORKERS, cross_zone)
    assert got == pytest.approx(share)
    assert allowed


def test_elb_zone_without_targets_is_an_error():
    with pytest.raises(ValueError, match="us-east-1c"):
        expected_via_elb(BALANCED, NONE, C, {NA: A, NB: B}, cross_zone=False)
