"""What every experiment shares: its own lab, its output folder, its records.

An experiment is a module in experiments/ with NAME, TITLE and
`run(ctx: Context) -> Summary`.  The runner gives it a Context: a fresh lab
(`with ctx.lab(...) as lab:` — always torn down), the output folder, the
quick flag and a seeded random generator, and helpers to write CSV/JSON, a
PNG labelled with the machine and the date, and summary.md.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import random
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from base.kube.client import KubeClient
from labd import lifecycle
from topo.state import LabPaths


@dataclass
class Summary:
    """What an experiment found: a title, its findings and its key figures."""

    title: str
    findings: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)       # Markdown tables
    figures: list[str] = field(default_factory=list)      # file names of PNGs

    def markdown(self, meta: dict) -> str:
        lines = [f"# {self.title}", "",
                 f"_{meta['machine']}, {meta['date']}, seed {meta['seed']}"
                 f"{', quick run' if meta['quick'] else ''}, {meta['seconds']:.0f} s_", ""]
        lines += [f"- {finding}" for finding in self.findings]
        for table in self.tables:
            lines += ["", table]
        for figure in self.figures:
            lines += ["", f"![{figure}]({figure})"]
        return "\n".join(lines) + "\n"


class LabClient:
    """A running lab as an experiment drives it: kubectl, API client, exec."""

    def __init__(self, name: str):
        self.name = name
        self.paths = LabPaths(name)
        self.api = KubeClient.from_kubeconfig(str(self.paths.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        argv = lifecycle.kubectl_argv(self.name, list(args))
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def exec(self, host: str, *cmd: str, namespace: str | None = None) -> str:
        argv = lifecycle.exec_argv(self.name, host, namespace, list(cmd))
        return subprocess.run(argv, capture_output=True, text=True, check=True,
                              timeout=120).stdout


@dataclass
class Context:
    out: Path
    quick: bool
    seed: int
    rng: random.Random
    duration: float | None = None     # seconds, for experiments that run for a set time

    @contextmanager
    def lab(self, spec_file: str | None = None, proxy_mode: str | None = None):
        with lifecycle.running("exp", spec_file, proxy_mode) as name:
            yield LabClient(name)

    def write_csv(self, filename: str, rows: list[dict]) -> Path:
        path = self.out / filename
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
            writer.writeheader()
            writer.writerows(rows)
        return path

    def write_json(self, filename: str, data) -> Path:
        path = self.out / filename
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return path

    def figure(self, filename: str, draw) -> str:
        """draw(ax) plots; the figure is labelled with the machine and date."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4.5))
        draw(ax)
        fig.text(0.99, 0.01, machine_label(), ha="right", va="bottom", fontsize=7,
                 color="gray")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(self.out / filename, dpi=110)
        plt.close(fig)
        return filename


def machine_label() -> str:
    return f"{platform.node()} · {os.cpu_count()} cores · " \
           f"{platform.system()} {platform.release()} · {datetime.date.today().isoformat()}"


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def meta(seed: int, quick: bool, seconds: float) -> dict:
    return {"machine": machine_label(), "date": datetime.datetime.now().isoformat(
        timespec="seconds"), "seed": seed, "quick": quick, "seconds": seconds,
        "python": sys.version.split()[0]}
