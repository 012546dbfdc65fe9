"""A steady client load from inside a lab pod, owned by the experiment.

`SteadyLoad(lab, pod, ip, port, rate)` is a context manager: it starts
experiments.load.worker inside the pod's namespaces, collects its JSON
lines in a reader thread, and on exit closes the worker's stdin (the worker
finishes its last connections and exits), waits for it with a timeout and
kills it if it must.  `records` are the connections so far, oldest first.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

from labd import lifecycle

STOP_TIMEOUT = 10.0


class LoadError(RuntimeError):
    """The load worker failed (its exit code and stderr)."""


class SteadyLoad:
    def __init__(self, lab, pod: str, ip: str, port: int, rate: float,
                 timeout: float = 1.0, namespace: str = "default"):
        self.argv = lifecycle.exec_argv(lab.name, pod, namespace, [
            sys.executable, "-m", "experiments.load.worker", ip, str(port), str(rate),
            str(timeout)])
        self.timeout = timeout
        self._records: list[dict] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stderr = ""
        self._garbage: list[str] = []

    @property
    def records(self) -> list[dict]:
        with self._lock:
            return sorted(self._records, key=lambda r: r["t"])

    def __enter__(self) -> SteadyLoad:
        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True, name="load-reader")
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                self._garbage.append(line)   # reported when the load stops
                continue
            with self._lock:
                self._records.append(record)

    def __exit__(self, *exc) -> None:
        proc = self._proc
        try:
            proc.stdin.close()
            proc.wait(timeout=STOP_TIMEOUT + self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        finally:
            self._reader.join(timeout=STOP_TIMEOUT)
            self._stderr = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
        if exc[0] is None and (proc.returncode not in (0, -9) or self._garbage):
            garbage = f"; unreadable lines: {self._garbage[:3]!r}" if self._garbage else ""
            raise LoadError(f"load worker exited {proc.returncode}: "
                            f"{self._stderr.strip()}{garbage}")
