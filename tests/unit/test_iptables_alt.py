"""The nodes' iptables backend: the spec field, the pure planning of a
node's /etc/alternatives (topo/iptables_alt.py), and the proxy agent's own
detection of the variant it runs; no root, no namespaces."""
from __future__ import annotations

import pytest

from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.agent import resync_skippable
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import CommandResult, IptablesBackend
from base.errors import LabError, SpecError
from topo import iptables_alt
from topo.iptables_alt import (
    alternative_links,
    backend_of,
    describe,
    mount_script,
    node_alternatives,
    propagates,
)
from topo.spec import parse_spec

NODES = [{"name": "ip-172-31-0-10", "role": "control-plane"}]
MACHINE = {   # Debian 12 with iptables-nft selected, as on the project's VM
    "editor": "/usr/bin/vim.basic",
    "iptables": "/usr/sbin/iptables-nft",
    "iptables-restore": "/usr/sbin/iptables-nft-restore",
    "iptables-save": "/usr/sbin/iptables-nft-save",
    "ip6tables": "/usr/sbin/ip6tables-nft",
    "ip6tables-restore": "/usr/sbin/ip6tables-nft-restore",
    "ip6tables-save": "/usr/sbin/ip6tables-nft-save",
    "ebtables": "/usr/sbin/ebtables-nft",
}


@pytest.mark.parametrize("value", ["nft", "legacy"])
def test_spec_takes_either_backend(value):
    spec = parse_spec({"nodes": NODES, "iptablesBackend": value})
    assert spec.iptables_backend == value and spec.iptables_backend_given


@pytest.mark.parametrize("value", ["iptables-legacy", "NFT", "", 1, None])
def test_spec_refuses_other_values_naming_field_and_choices(value):
    with pytest.raises(SpecError) as err:
        parse_spec({"nodes": NODES, "iptablesBackend": value})
    assert err.value.field == "iptablesBackend"
    assert str(err.value).endswith("allowed: nft, legacy")


def test_spec_default_is_what_the_machine_runs(monkeypatch):
    monkeypatch.setattr("topo.spec.detect_backend", lambda: "legacy")
    spec = parse_spec({"nodes": NODES})
    assert spec.iptables_backend == "legacy" and not spec.iptables_backend_given


@pytest.mark.parametrize("binary, backend", [
    ("/usr/sbin/xtables-legacy-multi", "legacy"),
    ("/usr/sbin/xtables-nft-multi", "nft"),
    ("/usr/sbin/iptables-legacy", "legacy"),
])
def test_backend_of_a_resolved_binary(binary, backend):
    assert backend_of(binary) == backend


def test_the_six_alternatives_of_a_backend():
    assert alternative_links("legacy") == {
        "iptables": "/usr/sbin/iptables-legacy",
        "iptables-restore": "/usr/sbin/iptables-legacy-restore",
        "iptables-save": "/usr/sbin/iptables-legacy-save",
        "ip6tables": "/usr/sbin/ip6tables-legacy",
        "ip6tables-restore": "/usr/sbin/ip6tables-legacy-restore",
        "ip6tables-save": "/usr/sbin/ip6tables-legacy-save",
    }
    with pytest.raises(ValueError, match="allowed: nft, legacy"):
        alternative_links("xtables")


def test_node_alternatives_switch_only_iptables_links():
    node = node_alternatives(MACHINE, "legacy")
    assert node["iptables-save"] == "/usr/sbin/iptables-legacy-save"
    assert node["ip6tables"] == "/usr/sbin/ip6tables-legacy"
    # everything else is the machine's, ebtables included (not kube-proxy's business)
    assert node["editor"] == "/usr/bin/vim.basic"
    assert node["ebtables"] == "/usr/sbin/ebtables-nft"
    assert set(node) == set(MACHINE)
    assert node_alternatives(MACHINE, "nft") == MACHINE


def test_node_alternatives_follow_the_machine_folder_and_lack_of_ip6tables():
    machine = {"iptables": "/sbin/iptables-nft", "iptables-save": "/sbin/iptables-nft-save",
               "iptables-restore": "/sbin/iptables-nft-restore"}
    node = node_alternatives(machine, "legacy")
    assert node == {"iptables": "/sbin/iptables-legacy",
                    "iptables-save": "/sbin/iptables-legacy-save",
                    "iptables-restore": "/sbin/iptables-legacy-restore"}


def test_a_machine_without_iptables_alternatives_cannot_switch():
    with pytest.raises(LabError, match="iptablesBackend: .*not managed by update-alternatives"):
        node_alternatives({"editor": "/usr/bin/vim.basic"}, "legacy")


MOUNTINFO_PRIVATE = """\
47 46 254:0 / / rw,relatime - ext4 /dev/vda rw
49 47 0:21 / /proc rw,relatime - proc proc rw
60 47 0:30 / /etc/hosts rw shared:9 - tmpfs t rw
"""
MOUNTINFO_SHARED = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
49 22 0:21 / /proc rw,relatime shared:5 - proc proc rw
"""


def test_propagation_is_judged_on_the_mount_holding_the_path():
    assert not propagates(MOUNTINFO_PRIVATE, "/etc/alternatives")
    assert propagates(MOUNTINFO_SHARED, "/etc/alternatives")
    # /etc/hosts is shared in the first table, but /etc/alternatives is not under it
    assert propagates(MOUNTINFO_PRIVATE, "/etc/hosts")
    etc_shared = MOUNTINFO_PRIVATE + "61 47 0:31 / /etc rw shared:7 - tmpfs e rw\n"
    assert propagates(etc_shared, "/etc/alternatives")


def test_unreadable_mountinfo_counts_as_shared():
    assert propagates("", "/etc/alternatives")
    assert propagates("garbage line\n", "/etc/alternatives")


def test_mount_script_checks_the_namespace_from_inside_first():
    script = mount_script(4026532174, [
        ("/run/svclab/x/files/alternatives-legacy-abc", "/etc/alternatives"),
        ("/run/svclab/x/files/xtables-locks/4026532174.lock", "/run/xtables.lock")])
    check, *mounts = script.splitlines()
    assert check.startswith('[ "$(stat -L -c %i /proc/self/ns/mnt)" = 4026532174 ] ||')
    assert "exit 3" in check
    assert mounts == [
        "mount --bind /run/svclab/x/files/alternatives-legacy-abc /etc/alternatives",
        "mount --bind /run/svclab/x/files/xtables-locks/4026532174.lock /run/xtables.lock"]


def test_prepare_writes_a_folder_per_content(tmp_path, monkeypatch):
    monkeypatch.setattr(iptables_alt, "read_alternatives", lambda *folder: dict(MACHINE))
    monkeypatch.setattr(iptables_alt.os.path, "exists", lambda path: True)
    first = iptables_alt.prepare("legacy", tmp_path)
    again = iptables_alt.prepare("legacy", tmp_path)
    assert first == again and first.name.startswith("alternatives-legacy-")
    assert (first / "iptables").readlink().as_posix() == "/usr/sbin/iptables-legacy"
    assert (first / "editor").readlink().as_posix() == "/usr/bin/vim.basic"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_prepare_refuses_a_missing_variant_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setattr(iptables_alt.os.path, "exists", lambda path: "legacy" not in path)
    with pytest.raises(LabError, match=r"iptablesBackend: legacy needs /usr/sbin/iptables-legacy"):
        iptables_alt.prepare("legacy", tmp_path)
    assert not list(tmp_path.iterdir())


def test_describe_says_where_the_choice_came_from():
    assert describe("legacy", True) == "iptables-legacy (iptablesBackend)"
    assert describe("nft", False) == "iptables-nft (the machine's iptables, detected)"


# --- the proxy agent's own detection ----------------------------------------

class _Runner:
    """iptables-restore answering --version as one variant; empty tables."""

    def __init__(self, version: str):
        self.version = version

    def __call__(self, argv, input_text, timeout_s):
        if "--version" in argv:
            return CommandResult(0, f"iptables-restore v1.8.9 ({self.version})\n", "")
        if any(part.endswith("-save") for part in argv):
            table = argv[argv.index("-t") + 1]
            return CommandResult(0, f"*{table}\nCOMMIT\n", "")
        return CommandResult(0, "", "")


class _FrozenGeneration:
    """nf_tables' generation as legacy commits leave it: never moving."""

    def generation(self) -> int:
        return 7


@pytest.mark.parametrize("version, skips", [("nf_tables", True), ("legacy", False)])
def test_the_generation_skip_follows_what_iptables_restore_says_it_is(version, skips):
    node = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))
    rs = compute_ruleset([service_from_k8s(service_dict("web", "shop", cluster_ip="10.96.0.20"))],
                         [endpoint_slice_from_k8s(slice_dict("web", "shop", endpoints=[
                             endpoint("192.168.1.10", node.name)]))], node)
    # The binary is called iptables-restore either way: only --version tells.
    backend = IptablesBackend(_Runner(version), netlink=_FrozenGeneration())
    backend.sync(rs)
    assert backend.variant() == version
    assert backend.unchanged() is skips
    assert resync_skippable(backend, rs, node) is skips
