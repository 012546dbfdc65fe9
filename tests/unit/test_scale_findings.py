"""The scale experiment's findings lines, from made-up rows (pure)."""

from __future__ import annotations

from experiments.scale import backend_comparison


def row(backend: str, n: int) -> dict:
    return {"mode": "iptables", "backend": backend, "services": n,
            "full_sync_s": n / 1000, "change_p50_ms": 1.0, "resync_s": 1.0,
            "p50_us": 40.0}


def by(rows):
    return {(f"iptables-{r['backend']}", r["services"]): r for r in rows}


def test_the_line_names_where_iptables_nft_stopped_and_legacy_went_on():
    rows = [row("nft", n) for n in (100, 1000, 5000)] + \
        [row("legacy", n) for n in (100, 1000, 10000, 30000)]
    lines = backend_comparison(by(rows))
    assert [line.split(":")[0] for line in lines[:2]] == [
        "iptables mode at 100 services, iptables-nft vs iptables-legacy",
        "iptables mode at 1000 services, iptables-nft vs iptables-legacy"]
    assert lines[-1].startswith("iptables-nft stops at 5000 services")
    assert lines[-1].endswith("iptables-legacy continues to 30000")


def test_no_line_when_legacy_went_no_further():
    rows = [row("nft", n) for n in (100, 1000)] + [row("legacy", n) for n in (100, 1000)]
    assert not any("stops at" in line for line in backend_comparison(by(rows)))
