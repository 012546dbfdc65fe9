"""The seed walkthrough (what `make demo` runs), in its quick mode: every step
works and the summary reads like the seed, with real addresses."""
from __future__ import annotations

import json

import pytest

from experiments.runner import run

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def test_seed_walkthrough_quick(tmp_path):
    folder, summary = run("seed-walkthrough", out=str(tmp_path), quick=True)
    text = (folder / "summary.md").read_text()
    assert (folder / "nodeport-spread.png").stat().st_size > 10_000
    assert (folder / "nodeport-spread.csv").read_text().startswith("pod,node,ip,connections")
    transcript = json.loads((folder / "transcript.json").read_text())
    commands = [step["command"] for step in transcript]
    assert "kubectl expose deployment hwk --port 80 --name web-hwk --type NodePort" in commands
    assert "web-hwk      NodePort" in text and "80:3" in text         # a NodePort in range
    assert "(no SNAT inside the cluster)" in text
    assert "the pod saw the source 172.31.0." in text                 # masqueraded
    assert "CNAME to db.example.com" in text and ".elb.amazonaws.com" in text
    assert "KUBE-NODEPORTS" in text and "DNAT to 172.31.0." in text   # the trace
    assert "0 unexpected: every cell as expected" in text
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["quick"] is True and meta["seed"] == 1
