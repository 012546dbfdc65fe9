"""Integration-tier fixtures: a throwaway network namespace (root).

Named svtest-<pid>-<n>, deleted whatever the test did; nothing here ever
touches the host's own namespace.
"""
from __future__ import annotations

import itertools
import os
import subprocess

import pytest

_counter = itertools.count()


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")
    name = f"svtest-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                   timeout=30, check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True,
                       timeout=30, check=False)
