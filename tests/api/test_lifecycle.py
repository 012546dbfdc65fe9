"""Lifecycle: the CLI entry point runs until SIGTERM; stop() ends open watches and joins
its threads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cli_prints_address_serves_and_exits_on_sigterm(tmp_path, cluster_info):
    info = tmp_path / "info.json"
    info.write_text(json.dumps(cluster_info))
    proc = subprocess.Popen([sys.executable, "-m", "controlplane.api",
                             "--state-dir", str(tmp_path / "state"),
                             "--cluster-info", str(info), "--listen", "127.0.0.1:0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("listening on https://127.0.0.1:")
        assert proc.stdout.readline().strip() == f"kubeconfig {tmp_path / 'state' / 'kubeconfig'}"
        kubectl = REPO / ".venv" / "bin" / "kubectl"
        out = subprocess.run([str(kubectl), "--kubeconfig", str(tmp_path / "state" / "kubeconfig"),
                              "--cache-dir", str(tmp_path / "cache"),
                              "get", "svc", "kubernetes", "-o", "name"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "service/kubernetes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_stop_ends_open_watches(make_server):
    server, kubectl = make_server()
    watcher = subprocess.Popen(kubectl.argv("get", "svc", "-w"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=kubectl.env(),
                               cwd=kubectl.cwd)
    try:
        assert "kubernetes" in watcher.stdout.readline() + watcher.stdout.readline()
        before = {t.name for t in threading.enumerate()}
        assert any(name.startswith("svclab-api-") for name in before)
        server.stop()
        assert not any(t.name.startswith("svclab-api-") for t in threading.enumerate())
    finally:
        watcher.kill()
        watcher.communicate(timeout=10)
