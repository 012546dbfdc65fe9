"""Fixtures that bring up whole labs through the real CLI."""
from __future__ import annotations

import pytest

from labtools import RunningLab, svclab, unique_name
from topo.cleanup import clean_lab


@pytest.fixture(scope="module")
def lab():
    """The default lab, up for the whole module, always cleaned afterwards."""
    name = unique_name("e2e")
    svclab("up", "--name", name)
    try:
        yield RunningLab(name)
    finally:
        down = svclab("down", "--name", name, check=False)
        clean_lab(name)
        assert down.returncode == 0, down.stderr
