"""`svclab down` of a lab whose daemon fails while stopping: it says so at
once, with the daemon's last log lines, instead of waiting out its minute."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from base.errors import LabError
from labd import lifecycle
from topo.cleanup import clean_lab
from topo.netns import ProcRef
from topo.state import LabPaths, LabState, write_state

pytestmark = pytest.mark.root

# Stands in for a daemon whose teardown raises: on SIGTERM it writes its
# traceback to the log and exits 1, leaving its state folder.
FAILING_DAEMON = """
import signal, sys, time
def stop(*_):
    print("Traceback (most recent call last):\\nOSError: [Errno 9] Bad file descriptor",
          file=sys.stderr, flush=True)
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""


def test_down_of_a_daemon_that_fails_while_stopping_says_so_at_once_with_its_log():
    if os.geteuid() != 0:
        pytest.fail("this test needs root (the labs' state folder)")
    name = f"downfail-{uuid.uuid4().hex[:6]}"
    paths = LabPaths(name)
    paths.root.mkdir(parents=True, mode=0o700)
    try:
        with open(paths.log, "ab") as log:
            daemon = subprocess.Popen([sys.executable, "-c", FAILING_DAEMON],
                                      stdout=log, stderr=subprocess.STDOUT)
        time.sleep(0.3)                      # its SIGTERM handler is in place
        me = ProcRef.of(daemon.pid)
        write_state(paths, LabState(name=name, daemon_pid=me.pid, daemon_start=me.start,
                                    ready=True))
        # Reaped as init reaps a real daemon (`svclab up` started it and left).
        threading.Thread(target=daemon.wait, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(LabError, match="failed while stopping") as failed:
            lifecycle.down(name, timeout=30)
        assert time.monotonic() - started < 10
        assert "Bad file descriptor" in str(failed.value)
        assert f"svclab clean --name {name}" in str(failed.value)
    finally:
        daemon.kill()
        daemon.wait(5)
        clean_lab(name)
    assert not paths.root.exists()

