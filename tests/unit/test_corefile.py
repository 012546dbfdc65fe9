"""Reading Corefiles as CoreDNS 1.12 reads them: tokens, server blocks, directives,
the reload plugin's SHA-512, and the configuration each plugin's setup makes of
its lines -- with CoreDNS's own error message for what CoreDNS refuses."""
from __future__ import annotations

import pytest

from agents.dns.coreconfig import Forward, build_config, kubeadm_corefile, parse_key
from agents.dns.corefile import CorefileError, parse_corefile, tokenize
from agents.dns.coreplugins import COMMON_LOG_FORMAT, Cache, Health, LogRule, parse_duration

FILE = "/etc/coredns/Corefile"
NODE_RESOLVER = ("172.31.0.2", 53)


def config(text: str, **kwargs):
    return build_config(parse_corefile(text, FILE, env={"UPSTREAM": "10.0.0.9"}),
                        node_resolver=NODE_RESOLVER, **kwargs)


def refusal(text: str, **kwargs) -> str:
    with pytest.raises(CorefileError) as caught:
        config(text, **kwargs)
    return str(caught.value)


# --- tokens and blocks --------------------------------------------------------------

def test_tokens_words_quotes_and_comments_with_their_lines():
    text = 'a "b c" d # a comment\n\n"multi\nline" e\\"f "g\\"h" x#y z\n'
    assert [(t.text, t.line) for t in tokenize(text)] == [
        ("a", 1), ("b c", 1), ("d", 1), ("multi\nline", 3), ('e\\"f', 4), ('g"h', 4),
        ("x", 4), ("z", 4)]           # a `#` inside a word comments out the rest of that word


def test_server_blocks_keys_directives_and_nested_blocks():
    corefile = parse_corefile("""
example.org:1053, example.net
  {
    log
    forward . 10.0.0.1 {
        policy sequential
        except a.example.org
    }
}
.:53 {
    health { lameduck 5s }
    errors
}
""", FILE)
    first, second = corefile.blocks
    assert first.keys == ("example.org:1053", "example.net")
    assert [d.name for d in first.directives] == ["log", "forward"]
    forward = first.directives[1]
    assert (forward.args, [(p.name, p.args) for p in forward.lines()]) == (
        (".", "10.0.0.1"), [("policy", ("sequential",)), ("except", ("a.example.org",))])
    health = second.directives[0]
    assert [(p.name, p.args) for p in health.lines()] == [("lameduck", ("5s",))]


def test_environment_variables_are_replaced():
    [block] = parse_corefile(".:53 {\n forward . {$UPSTREAM}\n}", FILE,
                             env={"UPSTREAM": "10.1.2.3"}).blocks
    assert block.directives[0].args == (".", "10.1.2.3")


@pytest.mark.parametrize(("text", "message"), [
    (".:53 {\n    errors\n    hostz\n}",
     f"{FILE}:3 - Error during parsing: Unknown directive 'hostz'"),
    (".:53 {\n    log\n", f"{FILE}:2 - Syntax error: Unexpected token 'log', expecting '}}'"),
    ("a, {\n}", f"{FILE}:1 - Error during parsing: Expected another address but had '{{' - "
                "check for extra comma"),
    ("(common) {\n  log\n}\n.:53 {\n  import common\n}",
     f"{FILE}:1 - Error during parsing: snippets are not emulated by svclab's cluster DNS "
     "(docs/cluster-dns.md)"),
    (".:53 {\n  import other.conf\n}",
     f"{FILE}:2 - Error during parsing: import is not emulated by svclab's cluster DNS "
     "(docs/cluster-dns.md)"),
])
def test_what_the_parser_refuses_with_caddys_message(text, message):
    with pytest.raises(CorefileError) as caught:
        parse_corefile(text, FILE)
    assert str(caught.value) == message


def test_the_fingerprint_follows_tokens_and_lines_not_comments():
    base = parse_corefile(kubeadm_corefile(), FILE).sha512
    assert len(base) == 128 and int(base, 16)
    commented = kubeadm_corefile().replace("    errors\n", "    errors   # keep errors\n")
    assert parse_corefile(commented, FILE).sha512 == base
    assert parse_corefile(kubeadm_corefile(), "/other/Corefile").sha512 == base
    with_log = kubeadm_corefile().replace("    errors\n", "    log\n    errors\n")
    assert parse_corefile(with_log, FILE).sha512 != base
    shifted = "\n" + kubeadm_corefile()
    assert parse_corefile(shifted, FILE).sha512 != base
    # the reload plugin's first look does not know plugins: an unknown one still hashes
    assert parse_corefile(".:53 {\n  nope\n}", FILE, check=False).sha512


@pytest.mark.parametrize(("key", "parsed"), [
    (".:53", (".", 53)), (".", (".", 53)), ("dns://.:5353", (".", 5353)),
    ("Example.ORG", ("example.org.", 53)), ("example.org.:1053", ("example.org.", 1053))])
def test_server_keys(key, parsed):
    assert parse_key(key, FILE, 1) == parsed


def test_durations_as_go_parses_them():
    assert [parse_duration(x) for x in ("5s", "1m30s", "500ms", "0", "1.5h")] == [
        5, 90, 0.5, 0, 5400]
    with pytest.raises(ValueError, match='time: invalid duration "5x"'):
        parse_duration("5x")


# --- configurations ---------------------------------------------------------------------

def test_kubeadms_corefile_is_the_labs_default_behaviour():
    cfg = config(kubeadm_corefile("cluster.local"))
    [server] = cfg.servers
    assert (server.zones, server.port, server.errors, server.loadbalance, server.log) == (
        (".",), 53, True, True, ())
    kube = server.kubernetes
    assert (kube.zones, kube.domain, kube.pods, kube.fallthrough, kube.ttl) == (
        ("cluster.local.", "in-addr.arpa.", "ip6.arpa."), "cluster.local.", "insecure",
        ("in-addr.arpa.", "ip6.arpa."), 30)
    assert server.forward == Forward(zone=".", to=(NODE_RESOLVER,), max_concurrent=1000)
    assert server.cache == Cache(zones=(".",), success_ttl=30, denial_ttl=30,
                                 no_success=("cluster.local.",), no_denial=("cluster.local.",))
    assert cfg.health == Health(("0.0.0.0", 8080), 5.0)
    assert (cfg.ready, cfg.prometheus) == (("0.0.0.0", 8181), ("0.0.0.0", 9153))
    assert (cfg.reload.interval, cfg.reload.jitter) == (30, 15)


def test_defaults_of_bare_directives():
    cfg = config(".:53 {\n kubernetes cluster.local\n prometheus\n health\n reload 10s\n"
                 " log\n log example.org {combined} {\n  class denial error\n }\n}")
    [server] = cfg.servers
    assert (server.kubernetes.pods, server.kubernetes.ttl, server.kubernetes.fallthrough) == (
        "disabled", 5, ())
    assert cfg.prometheus == ("127.0.0.1", 9153)
    assert cfg.health == Health(("0.0.0.0", 8080), 0.0)
    assert (cfg.ready, cfg.reload.interval, cfg.reload.jitter) == (None, 10, 5)
    assert server.log == (LogRule("."), LogRule("example.org.", COMMON_LOG_FORMAT
                                                  + ' "{>opcode}"', frozenset({"denial",
                                                                              "error"})))


def test_stub_domains_are_server_blocks_of_their_own():
    cfg = config("consul.local:53 {\n errors\n cache 30\n forward . 10.150.0.1\n}\n"
                 + kubeadm_corefile())
    stub, main = cfg.servers
    assert (stub.zones, stub.forward.to, stub.kubernetes) == (
        ("consul.local.",), (("10.150.0.1", 53),), None)
    assert main.zones == (".",) and cfg.ports == (53,)


def test_forward_targets_addresses_files_and_the_nodes_resolver(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search x\nnameserver 10.0.0.7\nnameserver 10.0.0.8\n")
    cfg = config(f".:53 {{\n forward example.com 10.0.0.1:5353 dns://10.0.0.2 {resolv} "
                 "/etc/resolv.conf {$UPSTREAM} {\n  force_tcp\n  policy round_robin\n"
                 "  expire 10s\n }\n}", read_file=lambda path: open(path).read())
    forward = cfg.servers[0].forward
    assert forward.zone == "example.com."
    assert forward.to == (("10.0.0.1", 5353), ("10.0.0.2", 53), ("10.0.0.7", 53),
                          ("10.0.0.8", 53), NODE_RESOLVER, ("10.0.0.9", 53))
    assert (forward.force_tcp, forward.policy) == (True, "round_robin")


@pytest.mark.parametrize(("text", "message"), [
    # the page's example Corefile, with `upstream`, which CoreDNS 1.7 and later refuse
    (".:53 {\n  kubernetes cluster.local in-addr.arpa ip6.arpa {\n    pods insecure\n"
     "    upstream\n  }\n}",
     f"plugin/kubernetes: {FILE}:4 - Error during parsing: unknown property 'upstream'"),
    (".:53 {\n  kubernetes cluster.local {\n    pods secure\n  }\n}",
     "plugin/kubernetes: wrong value for pods: secure,  must be one of: disabled, verified, "
     "insecure"),
    (".:53 {\n  kubernetes cluster.local {\n    ttl 4000\n  }\n}",
     f"plugin/kubernetes: {FILE}:3 - Error during parsing: ttl must be in range [0, 3600]: "
     "4000"),
    (".:53 {\n  kubernetes in-addr.arpa\n}", "plugin/kubernetes: non-reverse zone name must "
     "be used"),
    (".:53 {\n  cache 0\n}", "plugin/cache: cache TTL can not be zero or negative: 0"),
    (".:53 {\n  cache 30 {\n    nope\n  }\n}", f"plugin/cache: {FILE}:3 - Error during "
     "parsing: Wrong argument count or unexpected line ending after 'nope'"),
    (".:53 {\n  cache {\n    disable everything\n  }\n}",
     'plugin/cache: cache type for disable must be "success" or "denial"'),
    (".:53 {\n  reload 1s\n}", "plugin/reload: interval value must be greater or equal to 2s"),
    (".:53 {\n  reload 10s 500ms\n}",
     "plugin/reload: jitter value must be 0 or greater or equal to 1s"),
    (".:53 {\n  health {\n    lameduck five\n  }\n}", "plugin/health: unable to parse "
     "lameduck duration value: 'five' : time: invalid duration \"five\""),
    (".:53 {\n  health :80 :81\n}", f"plugin/health: {FILE}:2 - Error during parsing: Wrong "
     "argument count or unexpected line ending after ':81'"),
    (".:53 {\n  ready\n  ready\n}", "plugin/ready: this plugin can only be used once per "
     "Server Block"),
    (".:53 {\n  errors {\n    loud\n  }\n}", f"plugin/errors: {FILE}:3 - Syntax error: "
     "Unexpected token 'loud', expecting 'Unknown field loud'"),
    (".:53 {\n  log {\n    class sometimes\n  }\n}", "plugin/log: invalid Class: sometimes"),
    (".:53 {\n  forward .\n}", f"plugin/forward: {FILE}:2 - Error during parsing: Wrong "
     "argument count or unexpected line ending after '.'"),
    (".:53 {\n  forward . 10.0.0.1 {\n    speed max\n  }\n}", f"plugin/forward: {FILE}:3 - "
     "Error during parsing: unknown property 'speed'"),
    (".:53 {\n  forward . nowhere.example\n}", "plugin/forward: not an IP address or file: "
     "'nowhere.example'"),
    (".:53 {\n  loadbalance random\n}", "plugin/loadbalance: unknown policy: random"),
    (".:53 {\n  log\n}\n.:53 {\n  errors\n}", "cannot serve dns://.:53 - it is already "
     "defined"),
])
def test_what_coredns_refuses_is_refused_with_its_message(text, message):
    assert refusal(text) == message


@pytest.mark.parametrize(("text", "what"), [
    (".:53 {\n  hosts {\n    10.0.0.1 a.example\n  }\n}", "plugin/hosts: "),
    (".:53 {\n  rewrite name a b\n}", "plugin/rewrite: "),
    (".:53 {\n  kubernetes cluster.local {\n    namespaces default\n  }\n}",
     "plugin/kubernetes: "),
    (".:53 {\n  kubernetes cluster.local example.local\n}", "plugin/kubernetes: "),
    (".:53 {\n  forward . tls://1.1.1.1\n}", "plugin/forward: "),
    (".:53 {\n  cache 30 {\n    serve_stale\n  }\n}", "plugin/cache: "),
    ("tls://.:853 {\n  log\n}", ""),
])
def test_what_the_lab_does_not_emulate_is_refused_saying_so(text, what):
    message = refusal(text)
    assert message.startswith(what) and message.endswith(
        "is not emulated by svclab's cluster DNS (docs/cluster-dns.md)"), message
