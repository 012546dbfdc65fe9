"""A program waiting in Signals.wait stops on SIGTERM at once (a handler that set a
threading.Event could hang for good while the main thread waited on that Event)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAITER = """
import signal, sys
sys.path.insert(0, sys.argv[1])
from base.signals import Signals
stop = Signals(signal.SIGTERM, signal.SIGINT)
reload = Signals(signal.SIGHUP)
print("ready", flush=True)
reloads = 0
while not stop.wait(0.001):          # a busy waiter: signals land anywhere in it
    if reload.take() is not None:
        reloads += 1
        print("reloaded", flush=True)
print(f"stopped by {stop.received} after {reloads} reloads", flush=True)
"""


def _waiter() -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", WAITER, str(ROOT)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    return child


def test_sigterm_ends_the_wait_within_a_step_every_time():
    for _ in range(20):
        child = _waiter()
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=10)
        assert time.monotonic() - sent < 2
        assert out == f"stopped by {int(signal.SIGTERM)} after 0 reloads\n"


def test_another_signal_is_taken_once_and_does_not_stop():
    child = _waiter()
    child.send_signal(signal.SIGHUP)
    assert child.stdout.readline() == "reloaded\n"
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=10)
    assert out == f"stopped by {int(signal.SIGINT)} after 1 reloads\n"
