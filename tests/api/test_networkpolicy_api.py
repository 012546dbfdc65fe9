"""networking.k8s.io/v1 NetworkPolicy through the real kubectl: create, get, describe, apply,
edit, delete, api-resources, and invalid manifests rejected with Kubernetes' field messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from controlplane.api.validation_netpol import cidr_errors

NP = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {name}
spec:
{spec}"""

WEB = """\
podSelector:
  matchLabels: {app: web}
ingress:
- from:
  - podSelector: {matchLabels: {role: client}}
  - namespaceSelector: {matchLabels: {team: a}}
    podSelector:
      matchExpressions: [{key: tier, operator: In, values: [fe, be]}]
  - ipBlock: {cidr: 172.31.0.0/20, except: [172.31.1.0/24]}
  ports:
  - port: 80
  - {port: 8000, endPort: 8080, protocol: UDP}
  - port: http
"""
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character "
               "(e.g. 'MyValue',  or 'my_value',  or '12345', "
               "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
PEER = "spec.ingress[0].from[0]"
PORT = "spec.ingress[0].ports[0]"
EXPR = "spec.podSelector.matchExpressions[0]"


def netpol(spec: str, name: str = "bad") -> str:
    return NP.format(name=name, spec="".join("  " + line + "\n"
                                             for line in spec.strip().splitlines()))


def peer(text: str) -> str:
    return netpol(f"podSelector: {{}}\ningress:\n- from:\n  - {text}")


def port(text: str) -> str:
    return netpol(f"podSelector: {{}}\ningress:\n- ports:\n  - {text}")


def expr(text: str) -> str:
    return netpol(f"podSelector:\n  matchExpressions:\n  - {text}")


CASES = [
    ("cidr-not-a-cidr", peer("ipBlock: {cidr: not-a-cidr}"),
     f'{PEER}.ipBlock.cidr: Invalid value: "not-a-cidr": {CIDR}'),
    ("cidr-prefix-too-long", peer("ipBlock: {cidr: 10.0.0.0/33}"),
     f'{PEER}.ipBlock.cidr: Invalid value: "10.0.0.0/33": {CIDR}'),
    ("cidr-without-prefix", peer("ipBlock: {cidr: 10.0.0.1}"),
     f'{PEER}.ipBlock.cidr: Invalid value: "10.0.0.1": {CIDR}'),
    ("cidr-host-bits", peer("ipBlock: {cidr: 10.0.0.1/24}"),
     f'{PEER}.ipBlock.cidr: Invalid value: "10.0.0.1/24": '
     "must not have bits set beyond the prefix length"),
    ("cidr-leading-zeros", peer("ipBlock: {cidr: 010.0.0.0/8}"),
     f'{PEER}.ipBlock.cidr: Invalid value: "010.0.0.0/8": '
     "must not have leading 0s in IP or prefix length"),
    ("cidr-missing", peer("ipBlock: {except: [10.0.0.0/24]}"),
     f"{PEER}.ipBlock.cidr: Required value"),
    ("except-outside-cidr", peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}"),
     f'{PEER}.ipBlock.except[0]: Invalid value: "10.1.0.0/24": '
     "must be a strict subset of `cidr`"),
    ("except-equals-cidr", peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}"),
     f'{PEER}.ipBlock.except[0]: Invalid value: "10.0.0.0/16": '
     "must be a strict subset of `cidr`"),
    ("except-wider-than-cidr", peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/8]}"),
     f'{PEER}.ipBlock.except[0]: Invalid value: "10.0.0.0/8": '
     "must be a strict subset of `cidr`"),
    ("except-other-family", peer("ipBlock: {cidr: 10.0.0.0/8, except: ['fd00::/64']}"),
     f'{PEER}.ipBlock.except[0]: Invalid value: "fd00::/64": '
     "must be a strict subset of `cidr`"),
    ("except-not-a-cidr", peer("ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/40]}"),
     f'{PEER}.ipBlock.except[0]: Invalid value: "10.0.0.0/40": {CIDR}'),
    ("ipblock-and-podselector",
     netpol("podSelector: {}\negress:\n- to:\n  - ipBlock: {cidr: 10.0.0.0/8}\n"
            "    podSelector: {}"),
     "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"),
    ("empty-peer", peer("{}"), f"{PEER}: Required value: must specify a peer"),
    ("endport-without-port", port("endPort: 90"),
     f"{PORT}.endPort: Invalid value: 90: may not be specified when `port` is not specified"),
    ("endport-below-port", port("{port: 90, endPort: 80}"),
     f"{PORT}.endPort: Invalid value: 80: must be greater than or equal to `port`"),
    ("endport-out-of-range", port("{port: 80, endPort: 70000}"),
     f"{PORT}.endPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("endport-with-named-port", port("{port: http, endPort: 90}"),
     f"{PORT}.endPort: Invalid value: 90: may not be specified when `port` is non-numeric"),
    ("unknown-protocol", port("{port: 80, protocol: ICMP}"),
     f'{PORT}.protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
    ("port-zero", port("port: 0"),
     f"{PORT}.port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("port-too-big", port("port: 70000"),
     f"{PORT}.port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("port-bad-name", port("port: http_web"),
     f'{PORT}.port: Invalid value: "http_web": '
     "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("port-name-too-long", port("port: very-long-port-name"),
     f'{PORT}.port: Invalid value: "very-long-port-name": must be no more than 15 characters'),
    ("port-number-as-string", port("port: '80'"),
     f'{PORT}.port: Invalid value: "80": must contain at least one letter (a-z)'),
    ("selector-bad-operator", expr("{key: app, operator: Equals, values: [web]}"),
     f'{EXPR}.operator: Invalid value: "Equals": not a valid selector operator'),
    ("selector-in-without-values", expr("{key: app, operator: In}"),
     f"{EXPR}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
    ("selector-exists-with-values", expr("{key: app, operator: Exists, values: [web]}"),
     f"{EXPR}.values: Forbidden: "
     "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
    ("selector-bad-value", expr("{key: app, operator: NotIn, values: ['a b']}"),
     f'{EXPR}.values[0]: Invalid value: "a b": {LABEL_VALUE}'),
    ("selector-bad-key", peer("namespaceSelector:\n      matchExpressions:\n"
                              "      - {key: -team, operator: Exists}"),
     f'{PEER}.namespaceSelector.matchExpressions[0].key: Invalid value: "-team": '
     "name part must consist of alphanumeric characters"),
    ("pod-selector-bad-label-value", netpol("podSelector:\n  matchLabels: {app: 'bad value!'}"),
     f'spec.podSelector.matchLabels: Invalid value: "bad value!": {LABEL_VALUE}'),
    ("unknown-policy-type", netpol("podSelector: {}\npolicyTypes: [Ingress, Both]"),
     'spec.policyTypes[1]: Unsupported value: "Both": supported values: "Ingress", "Egress"'),
    ("three-policy-types", netpol("podSelector: {}\npolicyTypes: [Ingress, Egress, Ingress]"),
     'spec.policyTypes: Invalid value: []networking.PolicyType{"Ingress", "Egress", "Ingress"}: '
     "may not specify more than two policyTypes"),
    ("bad-name", netpol("podSelector: {}", name="Allow_Web"),
     'metadata.name: Invalid value: "Allow_Web": a lowercase RFC 1123 subdomain must consist '
     "of lower case alphanumeric characters, '-' or '.', and must start and end with an "
     "alphanumeric character"),
]


def _rv(server) -> int:
    return server.store.resource_version


def _get(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@pytest.mark.parametrize("case, manifest, message", CASES, ids=[c[0] for c in CASES])
def test_invalid_networkpolicy_is_rejected(shared_server, shared_kubectl, tmp_path, case,
                                           manifest, message):
    path = tmp_path / f"{case}.yaml"
    path.write_text(manifest)
    before = _rv(shared_server)
    proc = shared_kubectl.run("-v=6", "create", "-f", str(path))
    assert proc.returncode == 1
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    assert f'The NetworkPolicy "{yaml.safe_load(manifest)["metadata"]["name"]}" is invalid' \
        in proc.stderr
    assert message in proc.stderr, proc.stderr
    assert _rv(shared_server) == before, "a rejected request stored something"


@pytest.mark.parametrize("verb", [("apply", "-f"), ("apply", "--server-side", "-f")])
def test_invalid_networkpolicy_is_rejected_by_apply(shared_server, shared_kubectl, tmp_path,
                                                    verb):
    path = tmp_path / "bad.yaml"
    path.write_text(peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}"))
    before = _rv(shared_server)
    proc = shared_kubectl.run(*verb, str(path))
    assert proc.returncode == 1
    assert ('The NetworkPolicy "bad" is invalid: spec.ingress[0].from[0].ipBlock.except[0]: '
            'Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`' in proc.stderr)
    assert _rv(shared_server) == before


@pytest.mark.parametrize("verb",
                         [("create", "-f"), ("apply", "-f"), ("apply", "--server-side", "-f")])
def test_misspelled_field_is_a_strict_decoding_error(shared_server, shared_kubectl, tmp_path,
                                                     verb):
    path = tmp_path / "typo.yaml"
    path.write_text(netpol("podSelector: {}\ningress:\n- fromm: [{podSelector: {}}]", "typo"))
    before = _rv(shared_server)
    proc = shared_kubectl.run(*verb, str(path))
    assert proc.returncode == 1
    assert "Error from server (BadRequest)" in proc.stderr
    assert ('strict decoding error: unknown field "spec.ingress[0].fromm"' in proc.stderr
            or ".spec.ingress[0].fromm: field not declared in schema" in proc.stderr)
    assert _rv(shared_server) == before


def test_status_is_not_a_networkpolicy_field(shared_kubectl, tmp_path):
    path = tmp_path / "status.yaml"
    path.write_text(netpol("podSelector: {}", "with-status") + "status: {conditions: []}\n")
    proc = shared_kubectl.run("create", "-f", str(path))
    assert 'strict decoding error: unknown field "status"' in proc.stderr


def test_repeated_policy_type_is_accepted_as_kubernetes_does(shared_kubectl, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(netpol("podSelector: {}\npolicyTypes: [Ingress, Ingress]", "twice"))
    shared_kubectl("create", "-f", str(path))
    assert _get(shared_kubectl, "netpol", "twice")["spec"]["policyTypes"] == ["Ingress", "Ingress"]
    shared_kubectl("delete", "netpol", "twice")


def test_create_defaults_and_get_table(kubectl, tmp_path):
    (tmp_path / "np.yaml").write_text(
        netpol(WEB, "allow-web") + "---\n" + netpol("podSelector: {}", "deny-all") + "---\n"
        + netpol("podSelector:\n  matchExpressions: [{key: tier, operator: NotIn, "
                 "values: [db, cache]}]\negress:\n- to: [{ipBlock: {cidr: 0.0.0.0/0}}]",
                 "egress-out"))
    out = kubectl("create", "-f", str(tmp_path / "np.yaml"))
    assert "networkpolicy.networking.k8s.io/allow-web created" in out
    table = _table(kubectl("get", "netpol"))
    assert table == [["NAME", "POD-SELECTOR", "AGE"],
                     ["allow-web", "app=web", table[1][2]],
                     ["deny-all", "<none>", table[2][2]],
                     ["egress-out", "tier", "notin", "(cache,db)", table[3][4]]]
    assert _table(kubectl("get", "networkpolicies", "-o", "wide"))[0] == \
        ["NAME", "POD-SELECTOR", "AGE"]
    web = _get(kubectl, "netpol", "allow-web")
    assert web["apiVersion"] == "networking.k8s.io/v1" and web["kind"] == "NetworkPolicy"
    assert web["metadata"]["generation"] == 1 and "status" not in web
    assert web["spec"]["policyTypes"] == ["Ingress"]
    assert web["spec"]["ingress"][0]["ports"] == [
        {"port": 80, "protocol": "TCP"},
        {"port": 8000, "endPort": 8080, "protocol": "UDP"},
        {"port": "http", "protocol": "TCP"}]
    deny = _get(kubectl, "netpol", "deny-all")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    out = _get(kubectl, "netpol", "egress-out")
    assert out["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_empty_rule_allows_all_and_empty_list_is_omitted(kubectl, tmp_path):
    """`ingress: [{}]` (allow everything) is kept; `egress: []` is dropped like Go's omitempty,
    so it does not add Egress to the defaulted policyTypes."""
    (tmp_path / "np.yaml").write_text(
        netpol("podSelector: {}\ningress:\n- {}\negress: []", "allow-all"))
    kubectl("create", "-f", str(tmp_path / "np.yaml"))
    spec = _get(kubectl, "netpol", "allow-all")["spec"]
    assert spec == {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}


def test_describe_shows_selector_rules_and_policy_types(kubectl, tmp_path):
    (tmp_path / "np.yaml").write_text(netpol(WEB, "allow-web"))
    kubectl("apply", "-f", str(tmp_path / "np.yaml"))
    out = kubectl("describe", "networkpolicy", "allow-web")
    lines = [line.strip() for line in out.splitlines()]
    assert "PodSelector:     app=web" in lines
    assert "Allowing ingress traffic:" in lines
    assert lines.count("To Port: 80/TCP") == 1
    assert "To Port Range: 8000-8080/UDP" in lines and "To Port: http/TCP" in lines
    assert "PodSelector: role=client" in lines
    assert "NamespaceSelector: team=a" in lines and "PodSelector: tier in (be,fe)" in lines
    assert "CIDR: 172.31.0.0/20" in lines and "Except: 172.31.1.0/24" in lines
    assert "Not affecting egress traffic" in lines
    assert "Policy Types: Ingress" in lines


def test_apply_edit_generation_and_delete(kubectl, tmp_path):
    path = tmp_path / "np.yaml"
    path.write_text(netpol(WEB, "allow-web"))
    assert "created" in kubectl("apply", "-f", str(path))
    rv = _get(kubectl, "netpol", "allow-web")["metadata"]["resourceVersion"]
    kubectl("apply", "-f", str(path))      # the same manifest again: nothing changes
    assert _get(kubectl, "netpol", "allow-web")["metadata"]["resourceVersion"] == rv
    path.write_text(netpol(WEB.replace("app: web", "app: api").replace(
        "  - port: http\n", ""), "allow-web"))
    assert "configured" in kubectl("apply", "-f", str(path))
    np = _get(kubectl, "netpol", "allow-web")
    assert np["spec"]["podSelector"] == {"matchLabels": {"app": "api"}}
    assert [p["port"] for p in np["spec"]["ingress"][0]["ports"]] == [80, 8000]
    assert np["metadata"]["generation"] == 2
    kubectl("label", "netpol", "allow-web", "owner=me")
    assert _get(kubectl, "netpol", "allow-web")["metadata"]["generation"] == 2
    editor = f"{sys.executable} -c \"import sys, pathlib; p = pathlib.Path(sys.argv[1]); " \
             f"p.write_text(p.read_text().replace('app: api', 'app: db'))\""
    proc = subprocess.run(kubectl.argv("edit", "netpol", "allow-web"), capture_output=True,
                          text=True, timeout=30, cwd=kubectl.cwd,
                          env={**kubectl.env(), "KUBE_EDITOR": editor})
    assert proc.returncode == 0, proc.stderr
    assert "networkpolicy.networking.k8s.io/allow-web edited" in proc.stdout
    np = _get(kubectl, "netpol", "allow-web")
    assert np["spec"]["podSelector"] == {"matchLabels": {"app": "db"}}
    assert np["metadata"]["generation"] == 3
    assert 'networkpolicy.networking.k8s.io "allow-web" deleted' in \
        kubectl("delete", "-f", str(path))
    assert "NotFound" in kubectl.run("get", "netpol", "allow-web").stderr


def test_server_side_apply_creates_and_updates(kubectl, tmp_path):
    path = tmp_path / "np.yaml"
    path.write_text(netpol(WEB, "ssa"))
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(path))
    path.write_text(netpol(WEB.replace("port: 80\n", "port: 443\n"), "ssa"))
    kubectl("apply", "--server-side", "-f", str(path))
    np = _get(kubectl, "netpol", "ssa")
    assert np["spec"]["ingress"][0]["ports"][0] == {"port": 443, "protocol": "TCP"}
    assert np["metadata"]["generation"] == 2


def test_invalid_update_is_rejected_and_keeps_the_stored_policy(kubectl, api_server, tmp_path):
    (tmp_path / "np.yaml").write_text(netpol(WEB, "allow-web"))
    kubectl("apply", "-f", str(tmp_path / "np.yaml"))
    before = _rv(api_server)
    proc = kubectl.run("patch", "netpol", "allow-web", "--type", "json", "-p",
                       '[{"op": "replace", "path": "/spec/ingress/0/ports/1/endPort", '
                       '"value": 10}]')
    assert proc.returncode == 1
    assert ("spec.ingress[0].ports[1].endPort: Invalid value: 10: "
            "must be greater than or equal to `port`" in proc.stderr)
    assert _rv(api_server) == before
    assert _get(kubectl, "netpol", "allow-web")["spec"]["ingress"][0]["ports"][1]["endPort"] == 8080


def test_networkpolicies_go_with_their_namespace(kubectl, api_server, tmp_path):
    kubectl("create", "namespace", "team-a")
    (tmp_path / "np.yaml").write_text(netpol("podSelector: {}", "deny-all"))
    kubectl("create", "-f", str(tmp_path / "np.yaml"), "-n", "team-a")
    kubectl("create", "-f", str(tmp_path / "np.yaml"))
    assert kubectl("get", "netpol", "-A", "-o", "name").split() == \
        ["networkpolicy.networking.k8s.io/deny-all"] * 2
    kubectl("delete", "namespace", "team-a")
    listed = _get(kubectl, "netpol", "-A")["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed] == \
        [("default", "deny-all")]


def test_api_resources_and_explain(kubectl):
    rows = {r[0]: r for r in _table(kubectl("api-resources", "--api-group=networking.k8s.io"))}
    assert rows["networkpolicies"] == ["networkpolicies", "netpol", "networking.k8s.io/v1",
                                       "true", "NetworkPolicy"]
    assert "networking.k8s.io/v1" in kubectl("api-versions").split()
    explained = kubectl("explain", "networkpolicy")
    assert "KIND:       NetworkPolicy" in explained
    assert "GROUP:      networking.k8s.io" in explained
    assert "spec\t<NetworkPolicySpec>" in explained
    block = _table(kubectl("explain", "netpol.spec.ingress.from.ipBlock"))
    assert ["cidr", "<string>", "-required-"] in block and ["except", "<[]string>"] in block
    ports = _table(kubectl("explain", "netpol.spec.egress.ports"))
    assert ["port", "<IntOrString>"] in ports and ["endPort", "<integer>"] in ports


@pytest.mark.parametrize("value, messages", [
    ("10.0.0.0/8", []), ("0.0.0.0/0", []), ("fd00::/64", []), ("192.168.1.7/32", []),
    ("10.0.0.0/08", ["must not have leading 0s in IP or prefix length"]),
    ("::ffff:10.0.0.0/104", ["must not have an IPv4-mapped IPv6 address"]),
    ("fd00::1/64", ["must not have bits set beyond the prefix length"]),
    ("10.0.0.0/-1", [CIDR]), ("10.0.0/8", [CIDR]), ("", [CIDR]), ("fd00::/129", [CIDR]),
    ("fe80::%eth0/64", [CIDR]),
    ("256.0.0.0/8", [CIDR]), ("10.0.0.0/8/8", [CIDR]),
])
def test_cidr_judgement(value, messages):
    assert cidr_errors(value)[1] == messages
