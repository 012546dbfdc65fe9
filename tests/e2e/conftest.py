"""Fixtures that bring up whole labs through the real CLI."""
from __future__ import annotations

import pytest

from labtools import running_lab


@pytest.fixture(scope="module")
def lab():
    """The default lab, up for the whole module, always cleaned afterwards."""
    with running_lab() as running:
        yield running
