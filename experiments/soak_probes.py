"""The soak's traffic: probes on the stable services, requests to churn ones.

`StableProbes` keeps one steady load (experiments/load: a new TCP connection
at a fixed rate, `GET /hostname`) per stable target for the whole soak.  The
load worker ends itself after ten minutes, so a long soak replaces each load
every ROTATE_S seconds, starting the new one before stopping the old: no
gap in the probes.  `records` are every probe so far, with its target.

`ChurnTraffic` runs experiments.soak_traffic in a pod and hands it one
request at a time (fire and forget; the answers are counted, not judged).
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

from experiments.load.steady import SteadyLoad
from labd import lifecycle

ROTATE_S = 240.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProbeTarget:
    name: str             # the stable target's name (StableTarget.name)
    source: str           # pod or host the probes leave from
    namespace: str | None  # the source pod's namespace (None: a lab host, e.g. client)
    ip: str
    port: int


class StableProbes:
    """Steady loads on every target, rotated before the worker's own limit."""

    def __init__(self, lab, targets: list[ProbeTarget], rate: float, timeout: float):
        self.lab, self.targets, self.rate, self.timeout = lab, targets, rate, timeout
        self._active: dict[str, tuple[SteadyLoad, float]] = {}
        self._done: list[tuple[str, SteadyLoad]] = []

    def _start(self, target: ProbeTarget) -> SteadyLoad:
        # A lab host (the client) is found by name when no pod has that name.
        load = SteadyLoad(self.lab, target.source, target.ip, target.port, self.rate,
                          timeout=self.timeout, namespace=target.namespace or "default")
        return load.__enter__()

    def __enter__(self) -> StableProbes:
        for target in self.targets:
            self._active[target.name] = (self._start(target), time.monotonic())
        return self

    def rotate(self) -> None:
        """Replace the loads that are older than ROTATE_S (new one first)."""
        for target in self.targets:
            load, since = self._active[target.name]
            if time.monotonic() - since >= ROTATE_S:
                self._active[target.name] = (self._start(target), time.monotonic())
                load.__exit__(None, None, None)
                self._done.append((target.name, load))

    def __exit__(self, *exc) -> None:
        for name, (load, _) in self._active.items():
            load.__exit__(*exc)
            self._done.append((name, load))
        self._active.clear()

    @property
    def records(self) -> list[dict]:
        loads = self._done + [(n, load) for n, (load, _) in self._active.items()]
        out = [{"target": name, **r} for name, load in loads for r in load.records]
        return sorted(out, key=lambda r: r["t"])


class ChurnTraffic:
    """One request at a time to churn services, from a pod."""

    def __init__(self, lab, pod: str, namespace: str):
        self.argv = lifecycle.exec_argv(lab.name, pod, namespace,
                                        [sys.executable, "-m", "experiments.soak_traffic"])
        self.answers: Counter = Counter()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> ChurnTraffic:
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name="soak-traffic", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            self.answers[f"{answer['proto']}:{'ok' if answer['ok'] else 'failed'}"] += 1

    def send(self, proto: str, ip: str, port: int) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.write(f"{proto} {ip} {port}\n")
            self._proc.stdin.flush()

    def __exit__(self, *exc) -> None:
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=STOP_TIMEOUT)
        self._reader.join(timeout=STOP_TIMEOUT)
        self._proc.stdout.close()
