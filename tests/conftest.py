"""Suite-wide rules: root-only tests fail, not skip, when run without root.

`make test` runs every tier; a root-only test that silently skipped would
hide a broken namespace or lab, so without root it fails with a clear reason.
"""
from __future__ import annotations

import os

import pytest


def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces); run `make test` as "
                    "root or with sudo", pytrace=False)
