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
def netns_maker():
    """make() -> the name of another throwaway netns; all are deleted after the test."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")
    made: list[str] = []

    def make() -> str:
        name = f"svtest-{os.getpid()}-{next(_counter)}"
        subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       timeout=30, check=True)
        made.append(name)
        return name
    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True,
                           timeout=30, check=False)


@pytest.fixture
def netns(netns_maker):
    return netns_maker()
