"""Invalid manifests are rejected through kubectl with 422 and Kubernetes' field message;
nothing is stored and nothing is allocated."""

from __future__ import annotations

import pytest

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}"
DEP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {selector}}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
{image}
"""
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
           "start with an alphabetic character, and end with an alphanumeric character "
           "(e.g. 'my-name',  or 'abc-123', "
           "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character "
               "(e.g. 'MyValue',  or 'my_value',  or '12345', "
               "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def svc(spec: str, name: str = "bad") -> str:
    return SVC.format(name=name,
                      spec="".join("  " + line + "\n" for line in spec.strip().splitlines()))


def dep(name="web", replicas=1, selector="web", image="        image: nginx") -> str:
    return DEP.format(name=name, replicas=replicas, selector=selector, image=image)


def pod_with(spec: str, name: str = "dns") -> str:
    """A busybox pod with more in its spec."""
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n"
            "  containers: [{name: main, image: busybox}]\n"
            + "".join("  " + line + "\n" for line in spec.splitlines()))


CASES = [
    ("nodeport-out-of-range", svc("type: NodePort\nports: [{port: 80, nodePort: 80}]"),
     "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
     "The range of valid ports is 30000-32767"),
    ("nodeport-taken", svc("type: NodePort\nports: [{port: 80, nodePort: 30080}]"),
     "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"),
    ("clusterip-outside-range", svc("clusterIP: 10.0.0.5\nports: [{port: 80}]"),
     'spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: failed to allocate IP 10.0.0.5: '
     "the provided IP (10.0.0.5) is not in the valid range. "
     "The range of valid IPs is 10.96.0.0/12"),
    ("clusterip-taken", svc("clusterIP: 10.96.0.1\nports: [{port: 80}]"),
     'spec.clusterIPs: Invalid value: []string{"10.96.0.1"}: failed to allocate IP 10.96.0.1: '
     "provided IP is already allocated"),
    ("clusterip-not-an-ip", svc("clusterIP: 10.96.0.999\nports: [{port: 80}]"),
     'spec.clusterIPs[0]: Invalid value: "10.96.0.999": must be a valid IP address, '
     "(e.g. 10.9.8.7 or 2001:db8::ffff)"),
    ("port-zero", svc("ports: [{port: 0, targetPort: 80}]"),
     "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("port-too-big", svc("ports: [{port: 70000, targetPort: 80}]"),
     "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("target-port-too-big", svc("ports: [{port: 80, targetPort: 65536}]"),
     "spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"),
    ("target-port-bad-name", svc("ports: [{port: 80, targetPort: http_port}]"),
     'spec.ports[0].targetPort: Invalid value: "http_port": '
     "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("bad-protocol", svc("ports: [{port: 80, protocol: HTTP}]"),
     'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
    ("unknown-type", svc("type: Foo\nports: [{port: 80}]"),
     'spec.type: Unsupported value: "Foo": supported values: '
     '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ("bad-service-name", svc("ports: [{port: 80}]", name="Bad_Name"),
     f'metadata.name: Invalid value: "Bad_Name": {DNS1035}'),
    ("service-name-starts-with-digit", svc("ports: [{port: 80}]", name="1web"),
     f'metadata.name: Invalid value: "1web": {DNS1035}'),
    ("bad-selector-value", svc("selector: {app: 'bad value!'}\nports: [{port: 80}]"),
     f'spec.selector: Invalid value: "bad value!": {LABEL_VALUE}'),
    ("bad-selector-key", svc("selector: {'-app': web}\nports: [{port: 80}]"),
     'spec.selector: Invalid value: "-app": name part must consist of alphanumeric characters'),
    ("externalname-missing", svc("type: ExternalName"), "spec.externalName: Required value"),
    ("externalname-invalid", svc("type: ExternalName\nexternalName: not_valid!"),
     'spec.externalName: Invalid value: "not_valid!": '
     "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
     "'-' or '.', and must start and end with an alphanumeric character"),
    ("no-ports", svc("selector: {app: web}"), "spec.ports: Required value"),
    ("duplicate-port", svc("ports: [{name: a, port: 80}, {name: b, port: 80}]"),
     'spec.ports[1]: Duplicate value: '
     'core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
     'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'),
    ("duplicate-port-name", svc("ports: [{name: http, port: 80}, {name: http, port: 81}]"),
     'spec.ports[1].name: Duplicate value: "http"'),
    ("multi-port-without-names", svc("ports: [{port: 80}, {port: 81}]"),
     "spec.ports[0].name: Required value"),
    ("nodeport-on-clusterip", svc("type: ClusterIP\nports: [{port: 80, nodePort: 30100}]"),
     "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    ("headless-nodeport", svc("type: NodePort\nclusterIP: None\nports: [{port: 80}]"),
     "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"),
    ("affinity-timeout-too-long",
     svc("sessionAffinity: ClientIP\nsessionAffinityConfig: {clientIP: {timeoutSeconds: 90000}}\n"
         "ports: [{port: 80}]"),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 90000: "
     "must be greater than 0 and less than 86400"),
    ("bad-session-affinity", svc("sessionAffinity: Sticky\nports: [{port: 80}]"),
     'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"'),
    ("external-policy-enum",
     svc("type: NodePort\nexternalTrafficPolicy: Nearby\nports: [{port: 80}]"),
     'spec.externalTrafficPolicy: Unsupported value: "Nearby": '
     'supported values: "Cluster", "Local"'),
    ("external-policy-on-clusterip", svc("externalTrafficPolicy: Local\nports: [{port: 80}]"),
     'spec.externalTrafficPolicy: Invalid value: "Local": '
     "may only be set for externally-accessible services"),
    ("internal-policy-enum", svc("internalTrafficPolicy: Nearby\nports: [{port: 80}]"),
     'spec.internalTrafficPolicy: Unsupported value: "Nearby": '
     'supported values: "Cluster", "Local"'),
    ("health-check-port-without-local",
     svc("type: NodePort\nhealthCheckNodePort: 30500\nports: [{port: 80}]"),
     "spec.healthCheckNodePort: Invalid value: 30500: "
     "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
    ("source-ranges-on-clusterip",
     svc("loadBalancerSourceRanges: [10.0.0.0/8]\nports: [{port: 80}]"),
     "spec.loadBalancerSourceRanges: Forbidden: "
     "may only be used when `type` is 'LoadBalancer'"),
    ("deployment-selector-mismatch", dep(selector="other"),
     'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
     "`selector` does not match template `labels`"),
    ("deployment-negative-replicas", dep(replicas=-1),
     "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("deployment-missing-image", dep(image="        ports: [{containerPort: 80}]"),
     "spec.template.spec.containers[0].image: Required value"),
    ("deployment-bad-container-port",
     dep(image="        image: nginx\n        ports: [{containerPort: 0}]"),
     "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0: "
     "must be between 1 and 65535, inclusive"),
    ("pod-dns-none-without-config", pod_with("dnsPolicy: None"),
     "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
    ("pod-dns-none-without-nameserver",
     pod_with("dnsPolicy: None\ndnsConfig: {searches: [corp.example]}"),
     "spec.dnsConfig.nameservers: Required value: "
     "must provide at least one DNS nameserver when `dnsPolicy` is None"),
    ("pod-dns-four-nameservers",
     pod_with("dnsConfig: {nameservers: [192.0.2.1, 192.0.2.2, 192.0.2.3, 192.0.2.4]}"),
     'spec.dnsConfig.nameservers: Invalid value: []string{"192.0.2.1", "192.0.2.2", '
     '"192.0.2.3", "192.0.2.4"}: must not have more than 3 nameservers'),
    ("pod-dns-nameserver-not-an-ip", pod_with("dnsConfig: {nameservers: [dns.example]}"),
     'spec.dnsConfig.nameservers[0]: Invalid value: "dns.example": '
     "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
    ("pod-dns-bad-search", pod_with("dnsConfig: {searches: [Corp_Example]}"),
     'spec.dnsConfig.searches[0]: Invalid value: "Corp_Example": '
     "a lowercase RFC 1123 subdomain must consist of"),
    ("pod-dns-option-without-name", pod_with("dnsConfig: {options: [{value: '2'}]}"),
     "spec.dnsConfig.options[0]: Required value: Option.Name must not be empty"),
    ("namespace-bad-name", "apiVersion: v1\nkind: Namespace\nmetadata: {name: Team.A}\n",
     'metadata.name: Invalid value: "Team.A": '
     "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
     "and must start and end with an alphanumeric character"),
]


@pytest.fixture(scope="module")
def taken(shared_kubectl):
    """A service holding NodePort 30080, so that the 'taken' case has something to
    collide with."""
    shared_kubectl("create", "service", "nodeport", "holder", "--tcp=80:80", "--node-port=30080")


def _state(server):
    return server.store.resource_version, server.registry.service_allocations


@pytest.mark.parametrize("verb", ["create", "apply"])
@pytest.mark.parametrize("case, manifest, message", CASES, ids=[c[0] for c in CASES])
def test_invalid_manifest_is_rejected(shared_server, shared_kubectl, taken, tmp_path, verb, case,
                                      manifest, message):
    path = tmp_path / f"{case}.yaml"
    path.write_text(manifest)
    before = _state(shared_server)
    proc = shared_kubectl.run("-v=6", verb, "-f", str(path))
    assert proc.returncode == 1
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    assert message in proc.stderr
    assert _state(shared_server) == before, "a rejected request stored or allocated something"


def test_changing_cluster_ip_is_rejected(shared_server, shared_kubectl, taken, tmp_path):
    path = tmp_path / "fixed.yaml"
    path.write_text(svc("clusterIP: 10.96.100.50\nports: [{port: 80}]", name="fixed"))
    shared_kubectl("apply", "-f", str(path))
    before = _state(shared_server)
    proc = shared_kubectl.run("-v=6", "patch", "svc", "fixed", "--type", "merge", "-p",
                              '{"spec":{"clusterIP":"10.96.100.100"}}')
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    assert ('spec.clusterIPs[0]: Invalid value: []string{"10.96.100.100"}: '
            "may not change once set" in proc.stderr)
    assert _state(shared_server) == before
    assert (shared_kubectl("get", "svc", "fixed", "-o", "jsonpath={.spec.clusterIP}")
            == "10.96.100.50")


@pytest.mark.parametrize("verb",
                         [("create", "-f"), ("apply", "-f"), ("apply", "--server-side", "-f")])
def test_unknown_field_is_rejected_by_strict_field_validation(shared_server, shared_kubectl,
                                                              tmp_path, verb):
    path = tmp_path / "typo.yaml"
    path.write_text(svc("ports: [{port: 80, targetport: 8080}]", name="typo"))
    before = _state(shared_server)
    proc = shared_kubectl.run(*verb, str(path))
    assert proc.returncode == 1
    assert "Error from server (BadRequest)" in proc.stderr
    assert ('strict decoding error: unknown field "spec.ports[0].targetport"' in proc.stderr
            or ".spec.ports[0].targetport: field not declared in schema" in proc.stderr)
    assert _state(shared_server) == before
