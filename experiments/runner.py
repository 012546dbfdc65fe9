"""Finds and runs experiments: `svclab experiment list|run NAME`.

Each experiment writes into its output folder (default results/NAME/): raw
data (CSV/JSON), PNG plots, summary.md and meta.json (machine, date, seed,
run time).  Every run builds its own lab and tears it down.
"""
from __future__ import annotations

import importlib
import random
import time
from pathlib import Path

from base.errors import UsageError
from experiments.framework import Context, Summary, meta

EXPERIMENTS = ("seed-walkthrough", "distribution", "traffic-policy", "failover", "scale",
               "netpol", "zones", "soak", "ingress")


def module_of(name: str):
    if name not in EXPERIMENTS:
        raise UsageError(f"experiment: unknown {name!r}; known: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"experiments.{name.replace('-', '_')}")


def describe() -> list[tuple[str, str]]:
    return [(name, module_of(name).TITLE) for name in EXPERIMENTS]


def run(name: str, out: str | None = None, quick: bool = False,
        seed: int = 1, duration: float | None = None) -> tuple[Path, Summary]:
    module = module_of(name)
    folder = Path(out or Path("results") / name)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = Context(out=folder, quick=quick, seed=seed, rng=random.Random(seed),
                  duration=duration)
    started = time.monotonic()
    summary = module.run(ctx)
    info = meta(seed, quick, time.monotonic() - started)
    ctx.write_json("meta.json", info)
    (folder / "summary.md").write_text(summary.markdown(info))
    return folder, summary
