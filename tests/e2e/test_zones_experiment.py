"""Zones as a user checks them: the zones experiment's quick run on a 3-zone lab
(the control plane and one worker in us-east-1a, one worker each in 1b and
1c), through the CLI.  Every measurement must reach only the endpoints the
rules allow and cross zones at the expected share:

  * PreferSameZone keeps a pod's connections in its zone while the zone has
    endpoints, and spreads them over all when it has none;
  * PreferSameNode keeps them on the caller's node;
  * topology-mode Auto with fewer endpoints than zones drops the hints and
    the EndpointSlice controller says so in an Event;
  * an NLB with cross-zone load balancing off sends each zone's connections
    only to that zone's node; on, to all.
"""
from __future__ import annotations

import csv
import json

import pytest

from labtools import svclab

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_zones_quick_run_matches_the_rules(tmp_path):
    out = tmp_path / "zones"
    proc = svclab("experiment", "run", "zones", "--quick", "--out", str(out), timeout=600)
    assert proc.stdout.startswith("# Availability Zones")
    assert (out / "zones_cross_share.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    measured = rows(out / "zones_spread.csv")
    by = {(r["case"], r["path"]): r for r in measured}
    for r in measured:
        assert int(r["failed"]) == 0, r
        assert r["outside_allowed"] == "", r          # only endpoints the rules allow
        assert float(r["p_value"]) > 0.001, r         # the share crossing zones fits

    # PreferSameZone: nothing crosses while the zone has endpoints ...
    for zone in ("us-east-1a", "us-east-1b", "us-east-1c"):
        assert by[("PreferSameZone", f"pod in {zone}")]["crossed"] == "0"
        assert by[("PreferSameNode", f"pod in {zone}")]["crossed"] == "0"
    # ... and everything does from the zone that has none.
    empty = by[("PreferSameZone, zone a empty", "pod in us-east-1a")]
    assert empty["crossed"] == empty["connections"] != "0"
    # No preference: most cross (4 of 6 endpoints are in other zones).
    assert float(by[("no preference", "pod in us-east-1b")]["share"]) > 0.4

    # NLB: cross-zone off keeps the ELB -> node hop in the zone; on spreads it.
    off = [by[("NLB cross-zone off + PreferSameZone", f"ELB node in {z}")]
           for z in ("us-east-1a", "us-east-1b", "us-east-1c")]
    assert all(r["crossed"] == "0" for r in off)
    on = by[("NLB cross-zone on", "ELB node in us-east-1a")]
    assert float(on["share"]) > 0.6

    checks = {c["case"]: c for c in json.loads((out / "zones_checks.json").read_text())}
    few = checks["topology-mode Auto, 2 endpoints"]
    assert few["hinted"] == 0
    assert any(e.startswith("TopologyAwareHintsDisabled") for e in few["events"])
    assert checks["PreferSameZone"]["hinted"] == checks["PreferSameZone"]["endpoints"] == 6
    assert len(checks["NLB cross-zone on"]["zoneAddresses"]) == 3
