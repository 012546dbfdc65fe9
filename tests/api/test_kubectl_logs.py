"""`kubectl logs` (1.37) against the API server: CRI log files served as a kubelet serves them."""

from __future__ import annotations

import datetime as dt
import select
import subprocess

import pytest

from base.kube.client import ApiError
from support.fake_streams import make_pod


def stamp(ago: float) -> str:
    """An RFC3339Nano time `ago` seconds before now, as containerd writes it."""
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


LINES = [f"2026-01-01T10:00:0{i}.500000000Z stdout F line {i}" for i in range(5)]


@pytest.fixture
def pod(client, fake) -> dict:
    pod = make_pod(client, fake, "p", previous=True)
    fake.write_log("default", "p", "main", LINES)
    return pod


def test_logs_prints_the_current_run(kubectl, pod):
    assert kubectl("logs", "p") == "".join(f"line {i}\n" for i in range(5))


def test_logs_tail_counts_lines_from_the_end(kubectl, pod):
    assert kubectl("logs", "p", "--tail=2") == "line 3\nline 4\n"
    assert kubectl("logs", "p", "--tail=0") == ""
    assert kubectl("logs", "p", "--tail=50") == "".join(f"line {i}\n" for i in range(5))


def test_logs_timestamps_prefix_each_line_as_the_kubelet_does(kubectl, pod):
    assert kubectl("logs", "p", "--timestamps", "--tail=1") == (
        "2026-01-01T10:00:04.5Z line 4\n")      # Go's RFC3339Nano drops trailing zeros


def test_logs_joins_partial_lines_and_keeps_both_streams(kubectl, client, fake):
    make_pod(client, fake, "q")
    fake.write_log("default", "q", "main", [
        "2026-01-01T10:00:00.1Z stdout P a long ",
        "2026-01-01T10:00:00.2Z stdout F line",
        "2026-01-01T10:00:00.3Z stderr F an error",
        "2026-01-01T10:00:00.4+01:00 stdout F ",
        "not a CRI line"])
    assert kubectl("logs", "q") == "a long line\nan error\n\n"


def test_logs_since_drops_older_lines(kubectl, client, fake):
    make_pod(client, fake, "q")
    fake.write_log("default", "q", "main", [f"{stamp(7200)} stdout F two hours ago",
                                            f"{stamp(30)} stdout F just now"])
    assert kubectl("logs", "q", "--since=10m") == "just now\n"
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert kubectl("logs", "q", f"--since-time={since}") == "just now\n"


def test_logs_limit_bytes(kubectl, pod):
    assert kubectl("logs", "p", "--limit-bytes=10") == "line 0\nlin"


def test_logs_of_one_container_with_c(kubectl, client, fake):
    make_pod(client, fake, "two", ("web", "side"))
    fake.write_log("default", "two", "web", ["2026-01-01T10:00:00Z stdout F from web"])
    fake.write_log("default", "two", "side", ["2026-01-01T10:00:00Z stdout F from side"])
    assert kubectl("logs", "two", "-c", "side") == "from side\n"
    both = kubectl("logs", "two", "--all-containers", "--prefix")   # fetched concurrently
    assert sorted(both.splitlines()) == ["[pod/two/side] from side", "[pod/two/web] from web"]


def test_logs_without_a_container_of_a_two_container_pod_is_refused(client, fake):
    make_pod(client, fake, "two", ("web", "side"))
    with pytest.raises(ApiError) as refused:
        client.request("GET", "/api/v1/namespaces/default/pods/two/log")
    assert (refused.value.status, refused.value.message) == (
        400, "a container name must be specified for pod two, choose one of: [web side]")


def test_logs_previous_reads_the_run_before(kubectl, pod, fake, client):
    fake.write_log("default", "p", "main", ["2026-01-01T09:00:00Z stderr F crashed"],
                   previous=True)
    assert kubectl("logs", "p", "--previous") == "crashed\n"
    make_pod(client, fake, "fresh")
    proc = kubectl.run("logs", "fresh", "--previous")
    assert proc.returncode == 1
    assert proc.stderr == ('Error from server (BadRequest): previous terminated container '
                           '"main" in pod "fresh" not found\n')


def test_logs_of_a_container_that_has_not_started(kubectl, client, fake):
    make_pod(client, fake, "creating", phase="Pending")
    proc = kubectl.run("logs", "creating")
    assert proc.stderr == ('Error from server (BadRequest): container "main" in pod "creating" '
                           'is waiting to start: ContainerCreating\n')


def test_logs_of_a_missing_pod(kubectl, fake):
    proc = kubectl.run("logs", "nope")
    assert proc.stderr == ('error: error from server (NotFound): pods "nope" not found in '
                           'namespace "default"\n')


def test_logs_by_deployment_and_by_selector(kubectl, client, fake):
    kubectl("create", "deployment", "web", "--image=nginx")
    for name in ("web-1", "web-2"):
        make_pod(client, fake, name, labels={"app": "web"})
        fake.write_log("default", name, "main", [f"2026-01-01T10:00:00Z stdout F hi from {name}"])
    assert kubectl("logs", "deploy/web") in ("hi from web-1\n", "hi from web-2\n")
    assert sorted(kubectl("logs", "-l", "app=web").splitlines()) == [
        "hi from web-1", "hi from web-2"]


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready = select.select([proc.stdout], [], [], timeout)[0]
    assert ready, f"no output within {timeout} s"
    return proc.stdout.readline()


def test_logs_follow_streams_new_lines_until_the_container_stops(kubectl, pod, fake, client):
    proc = subprocess.Popen(kubectl.argv("logs", "-f", "--tail=1", "p"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kubectl.env(), cwd=kubectl.cwd)
    try:
        assert read_line(proc, 20) == "line 4\n"
        fake.write_log("default", "p", "main", [f"{stamp(0)} stdout F a new line"], append=True)
        assert read_line(proc, 5) == "a new line\n"
        fake.write_log("default", "p", "main", [f"{stamp(0)} stdout P half ",
                                                f"{stamp(0)} stdout F and half"], append=True)
        assert read_line(proc, 5) == "half and half\n"
        current = client.get("pods", "p", "default")
        current["status"]["containerStatuses"][0]["state"] = {
            "terminated": {"exitCode": 0, "reason": "Completed", "containerID": "svclab://1000"}}
        client.update("pods", current, subresource="status")
        assert proc.wait(20) == 0          # the run ended: so does the stream
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
