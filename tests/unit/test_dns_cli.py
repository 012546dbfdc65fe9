"""`python -m agents.dns` as the lab runs it: a zone file, a DNS port, a metrics port."""
import concurrent.futures
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

REPO = Path(__file__).resolve().parents[2]


def objects(cluster_ip="10.96.5.5"):
    return {"services": [{"metadata": {"name": "web", "namespace": "default"},
                          "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}]}}],
            "endpointslices": [], "pods": []}


def read_json_line(process, timeout=10):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        line = pool.submit(process.stdout.readline).result(timeout=timeout)
    assert line, f"dns server exited: {process.poll()}"
    return json.loads(line)


def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "agents.dns", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise


def ask(port, name="web.default.svc.cluster.local."):
    response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return response.rcode(), [item.to_text() for rrset in response.answer for item in rrset]


@pytest.fixture
def zone_file(tmp_path):
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(objects()))
    return path


def test_cli_serves_the_zone_file_reloads_it_and_exits_on_sigterm(zone_file):
    process = run_cli("--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                      "--zone-file", str(zone_file))
    try:
        started = read_json_line(process)
        port = int(started["dns"].rsplit(":", 1)[1])
        assert ask(port) == (dns.rcode.NOERROR, ["10.96.5.5"])

        time.sleep(0.05)     # make sure the rewrite gets a new modification time
        zone_file.write_text(json.dumps(objects("10.96.7.7")))
        assert read_json_line(process)["event"] == "zone-updated"
        assert ask(port) == (dns.rcode.NOERROR, ["10.96.7.7"])

        zone_file.write_text("{not json")       # a broken file keeps the zone being served
        time.sleep(1.5)                          # > one poll of the file's modification time
        assert ask(port) == (dns.rcode.NOERROR, ["10.96.7.7"])

        with urllib.request.urlopen(f"http://{started['metrics']}/metrics", timeout=5) as reply:
            assert 'coredns_dns_requests_total{proto="udp"}' in reply.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert "zone file not applied" in process.stderr.read()
    finally:
        stop(process)


def test_cli_unreadable_zone_file_is_usage_error(tmp_path):
    broken = tmp_path / "objects.json"
    broken.write_text(json.dumps({"services": [{"metadata": {}}]}))
    result = subprocess.run([sys.executable, "-m", "agents.dns", "--listen", "127.0.0.1:0",
                             "--zone-file", str(broken)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "metadata.name" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "agents.dns", "--listen", "127.0.0.1:0",
                              "--zone-file", str(tmp_path / "absent.json")],
                             cwd=REPO, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2
    assert "absent.json" in missing.stderr
