"""networking.k8s.io/v1 Ingress and IngressClass through the real kubectl: bad manifests
refused with Kubernetes' field paths and messages (and nothing stored), tables, describe,
`kubectl create ingress`, the default IngressClass, the status subresource, explain."""

from __future__ import annotations

import json

import pytest
import yaml

ING = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
{meta}spec:
{spec}"""
RULE = "spec.rules[0]"
PATH = "spec.rules[0].http.paths[0]"
BACKEND = f"{PATH}.backend"
SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
             "characters, '-' or '.', and must start and end with an alphanumeric character")
WILDCARD = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
            "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' "
            "and end with an alphanumeric character")
RANGE = "must be between 1 and 65535, inclusive"
WEB = "{service: {name: web, port: {number: 80}}}"


def ingress(spec: str, name: str = "bad", meta: str = "") -> str:
    indent = "".join("  " + line + "\n" for line in spec.strip().splitlines())
    return ING.format(name=name, meta=meta, spec=indent)


def one_path(path_line: str, host: str = "example.com") -> str:
    return ingress(f"rules:\n- host: '{host}'\n  http:\n    paths:\n    - {path_line}")


def backend(text: str) -> str:
    return one_path(f"{{path: /, pathType: Prefix, backend: {text}}}")


def host(value: str) -> str:
    return one_path(f"{{path: /, pathType: Prefix, backend: {WEB}}}", value)


BAD_INGRESSES = [
    ("pathtype-unknown", one_path(f"{{path: /, pathType: Regex, backend: {WEB}}}"),
     f'{PATH}.pathType: Unsupported value: "Regex": supported values: "Exact", '
     '"ImplementationSpecific", "Prefix"'),
    ("pathtype-missing", one_path(f"{{path: /, backend: {WEB}}}"),
     f"{PATH}.pathType: Required value: pathType must be specified"),
    ("prefix-relative-path", one_path(f"{{path: api, pathType: Prefix, backend: {WEB}}}"),
     f'{PATH}.path: Invalid value: "api": must be an absolute path'),
    ("exact-relative-path", one_path(f"{{path: api/v1, pathType: Exact, backend: {WEB}}}"),
     f'{PATH}.path: Invalid value: "api/v1": must be an absolute path'),
    ("prefix-double-slash", one_path(f"{{path: /a//b, pathType: Prefix, backend: {WEB}}}"),
     f'{PATH}.path: Invalid value: "/a//b": must not contain \'//\''),
    ("exact-dot-dot-end", one_path(f"{{path: /a/.., pathType: Exact, backend: {WEB}}}"),
     f'{PATH}.path: Invalid value: "/a/..": cannot end with \'/..\''),
    ("implementation-specific-relative",
     one_path(f"{{path: x, pathType: ImplementationSpecific, backend: {WEB}}}"),
     f'{PATH}.path: Invalid value: "x": must be an absolute path'),
    ("resource-and-service",
     backend("{service: {name: web, port: {number: 80}}, resource: {kind: Bucket, name: b}}"),
     f'{BACKEND}: Invalid value: "": cannot set both resource and service backends'),
    ("port-name-and-number", backend("{service: {name: web, port: {name: http, number: 80}}}"),
     f'{BACKEND}: Invalid value: "": cannot set both port name & port number'),
    ("port-number-out-of-range", backend("{service: {name: web, port: {number: 70000}}}"),
     f"{BACKEND}.service.port.number: Invalid value: 70000: {RANGE}"),
    ("port-missing", backend("{service: {name: web}}"),
     f"{BACKEND}: Required value: port name or number is required"),
    ("port-name-invalid", backend("{service: {name: web, port: {name: HTTP_web}}}"),
     f'{BACKEND}.service.port.name: Invalid value: "HTTP_web": must contain only '
     "alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
    ("service-name-not-dns1035", backend("{service: {name: 1web, port: {number: 80}}}"),
     f'{BACKEND}.service.name: Invalid value: "1web": a DNS-1035 label must consist of '
     "lower case alphanumeric characters or '-', start with an alphabetic character"),
    ("service-name-missing", backend("{service: {port: {number: 80}}}"),
     f"{BACKEND}.service.name: Required value"),
    ("backend-empty", backend("{}"),
     f'{BACKEND}: Invalid value: "": resource or service backend is required'),
    ("resource-without-kind", backend("{resource: {apiGroup: k8s.example.com, name: b}}"),
     f"{BACKEND}.resource.kind: Required value"),
    ("wildcard-not-first", host("foo.*.example.com"),
     f'{RULE}.host: Invalid value: "foo.*.example.com": {WILDCARD}'),
    ("wildcard-partial-label", host("*foo.example.com"),
     f'{RULE}.host: Invalid value: "*foo.example.com": {WILDCARD}'),
    ("wildcard-alone", host("*"), f'{RULE}.host: Invalid value: "*": {WILDCARD}'),
    ("ip-as-host", host("203.0.113.10"),
     f'{RULE}.host: Invalid value: "203.0.113.10": must be a DNS name, not an IP address'),
    ("host-uppercase", host("Shop.Example.com"),
     f'{RULE}.host: Invalid value: "Shop.Example.com": {SUBDOMAIN}'),
    ("host-with-port", host("shop.example.com:8080"),
     f'{RULE}.host: Invalid value: "shop.example.com:8080": {SUBDOMAIN}'),
    ("http-without-paths", ingress("rules:\n- host: example.com\n  http: {paths: []}"),
     f"{RULE}.http.paths: Required value"),
    ("no-rules-no-default-backend", ingress("ingressClassName: alb"),
     "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or "
     "`rules` must be specified"),
    ("tls-host-invalid", ingress(f"defaultBackend: {WEB}\ntls:\n- hosts: [shop_example.com]"),
     f'spec.tls[0].hosts[0]: Invalid value: "shop_example.com": {SUBDOMAIN}'),
    ("tls-wildcard-misplaced", ingress(f"defaultBackend: {WEB}\ntls:\n- hosts: ['a.*.com']"),
     f'spec.tls[0].hosts[0]: Invalid value: "a.*.com": {WILDCARD}'),
    ("tls-secret-name-invalid",
     ingress(f"defaultBackend: {WEB}\ntls:\n- {{hosts: [a.example.com], secretName: My_Cert}}"),
     f'spec.tls[0].secretName: Invalid value: "My_Cert": {SUBDOMAIN}'),
    ("default-backend-port-zero",
     ingress("defaultBackend: {service: {name: web, port: {number: -1}}}"),
     f"spec.defaultBackend.service.port.number: Invalid value: -1: {RANGE}"),
    ("class-name-invalid", ingress(f"ingressClassName: ALB\ndefaultBackend: {WEB}"),
     f'spec.ingressClassName: Invalid value: "ALB": {SUBDOMAIN}'),
    ("class-annotation-disagrees",
     ingress(f"ingressClassName: alb\ndefaultBackend: {WEB}",
             meta="  annotations: {kubernetes.io/ingress.class: nginx}\n"),
     'annotations.kubernetes.io/ingress.class: Invalid value: "nginx": must match '
     "`ingressClassName` when both are specified"),
    ("name-invalid", ingress(f"defaultBackend: {WEB}", name="Shop_Front"),
     f'metadata.name: Invalid value: "Shop_Front": {SUBDOMAIN}'),
]

CLASS = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {name}
spec:
{spec}"""


def ingress_class(spec: str, name: str = "bad") -> str:
    return CLASS.format(name=name, spec="".join("  " + line + "\n"
                                                for line in spec.strip().splitlines()))


PARAMS = "controller: ingress.k8s.aws/alb\nparameters:\n  kind: IngressClassParams\n  name: p\n"
BAD_CLASSES = [
    ("controller-missing", ingress_class("parameters: {kind: K, name: p}"),
     "spec.controller: Required value"),
    ("controller-not-domain-prefixed", ingress_class("controller: alb"),
     'spec.controller: Invalid value: "alb": must be a domain-prefixed path '
     '(such as "acme.io/foo")'),
    ("controller-bad-domain", ingress_class("controller: AWS.example/alb"),
     f'spec.controller: Invalid value: "AWS.example": {SUBDOMAIN}'),
    ("namespace-scope-without-namespace", ingress_class(PARAMS + "  scope: Namespace"),
     "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"),
    ("cluster-scope-with-namespace", ingress_class(PARAMS + "  namespace: kube-system"),
     "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"),
    ("scope-unknown", ingress_class(PARAMS + "  scope: Global"),
     'spec.parameters.scope: Unsupported value: "Global": supported values: "Cluster", '
     '"Namespace"'),
    ("parameters-kind-with-slash", ingress_class(
        "controller: ingress.k8s.aws/alb\nparameters: {kind: a/b, name: p}"),
     "spec.parameters.kind: Invalid value: \"a/b\": may not contain '/'"),
]


def _rv(server) -> int:
    return server.store.resource_version


def _get(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json"))


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def _rejected(server, kubectl, tmp_path, case: str, manifest: str, message: str,
              kind: str) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(manifest)
    before = _rv(server)
    proc = kubectl.run("-v=6", "create", "-f", str(path))
    assert proc.returncode == 1
    assert 'status="422 Unprocessable Entity"' in proc.stderr
    name = yaml.safe_load(manifest)["metadata"]["name"]
    assert f'The {kind} "{name}" is invalid' in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert _rv(server) == before, "a rejected request stored something"


@pytest.mark.parametrize("case, manifest, message", BAD_INGRESSES,
                         ids=[c[0] for c in BAD_INGRESSES])
def test_invalid_ingress_is_rejected(shared_server, shared_kubectl, tmp_path, case, manifest,
                                     message):
    _rejected(shared_server, shared_kubectl, tmp_path, case, manifest, message, "Ingress")


@pytest.mark.parametrize("case, manifest, message", BAD_CLASSES, ids=[c[0] for c in BAD_CLASSES])
def test_invalid_ingressclass_is_rejected(shared_server, shared_kubectl, tmp_path, case,
                                          manifest, message):
    _rejected(shared_server, shared_kubectl, tmp_path, case, manifest, message, "IngressClass")


def test_misspelled_field_is_a_strict_decoding_error(shared_server, shared_kubectl, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(one_path(f"{{path: /, pathTyp: Prefix, backend: {WEB}}}"))
    before = _rv(shared_server)
    proc = shared_kubectl.run("apply", "-f", str(path))
    assert proc.returncode == 1
    assert 'unknown field "spec.rules[0].http.paths[0].pathTyp"' in proc.stderr
    assert _rv(shared_server) == before


SHOP = ingress("""\
tls:
- hosts: [shop.example.com]
  secretName: shop-tls
rules:
- host: shop.example.com
  http:
    paths:
    - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
    - {path: /api, pathType: Exact, backend: {service: {name: api, port: {name: http}}}}
- host: '*.shop.example.com'
  http:
    paths:
    - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
""", name="shop")
ALB_CLASS = ingress_class("controller: ingress.k8s.aws/alb\nparameters: "
                          "{apiGroup: elbv2.k8s.aws, kind: IngressClassParams, name: alb}",
                          name="alb")
WEB_SVC = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


def test_get_tables_and_describe(kubectl, tmp_path):
    (tmp_path / "all.yaml").write_text("---\n".join([ALB_CLASS, WEB_SVC, SHOP]))
    out = kubectl("apply", "-f", str(tmp_path / "all.yaml"))
    assert "ingressclass.networking.k8s.io/alb created" in out
    assert "ingress.networking.k8s.io/shop created" in out
    rows = _table(kubectl("get", "ing"))
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[1][:3] == ["shop", "<none>", "shop.example.com,*.shop.example.com"]
    assert rows[1][3:5] == ["80,", "443"]          # ADDRESS empty, PORTS "80, 443"
    rows = _table(kubectl("get", "ingressclass"))
    assert rows[0] == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert rows[1][:3] == ["alb", "ingress.k8s.aws/alb", "IngressClassParams.elbv2.k8s.aws/alb"]
    shop = _get(kubectl, "ingress", "shop")
    assert shop["metadata"]["generation"] == 1
    assert shop["status"] == {"loadBalancer": {}}
    assert _get(kubectl, "ingressclass", "alb")["spec"]["parameters"]["scope"] == "Cluster"
    lines = [line.rstrip() for line in kubectl("describe", "ingress", "shop").splitlines()]
    assert "Ingress Class:    <none>" in lines and "Default backend:  <default>" in lines
    assert "TLS:" in lines and "  shop-tls terminates shop.example.com" in lines
    body = "\n".join(lines)
    assert "/      web:80 (<none>)" in body          # the Service exists, no endpoints yet
    assert '/api   api:http (<error: services "api" not found>)' in body
    assert "*.shop.example.com" in body
    out = kubectl("describe", "ingressclass", "alb")
    assert "Controller:   ingress.k8s.aws/alb" in out and "Kind:      IngressClassParams" in out


def test_describe_lists_the_backends_endpoints(kubectl, api_server, tmp_path):
    (tmp_path / "svc.yaml").write_text(WEB_SVC)
    kubectl("apply", "-f", str(tmp_path / "svc.yaml"))
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 8080,
                                                "protocol": "TCP"}],
              "endpoints": [{"addresses": ["192.168.1.5"], "conditions": {"ready": True}},
                            {"addresses": ["192.168.2.7"], "conditions": {"ready": True}}]}
    kubectl("apply", "-f", "-", stdin=json.dumps(slice_))
    kubectl("create", "ingress", "web", "--rule=web.example.com/*=web:http")
    out = kubectl("describe", "ing", "web")
    assert "web:http (192.168.1.5:8080,192.168.2.7:8080)" in out


def test_kubectl_create_ingress_and_the_default_class(kubectl, tmp_path):
    (tmp_path / "cls.yaml").write_text(ALB_CLASS.replace(
        "  name: alb\n", "  name: alb\n  annotations:\n"
        "    ingressclass.kubernetes.io/is-default-class: \"true\"\n"))
    kubectl("apply", "-f", str(tmp_path / "cls.yaml"))
    out = kubectl("create", "ingress", "simple", "--class=other",
                  "--rule=foo.example.com/bar=svc1:8080,tls=my-cert",
                  "--default-backend=defsvc:http", "--annotation=team=a")
    assert "ingress.networking.k8s.io/simple created" in out
    spec = _get(kubectl, "ing", "simple")["spec"]
    assert spec["ingressClassName"] == "other"
    assert spec["defaultBackend"] == {"service": {"name": "defsvc", "port": {"name": "http"}}}
    assert spec["rules"] == [{"host": "foo.example.com", "http": {"paths": [
        {"path": "/bar", "pathType": "Exact",
         "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}}]
    assert spec["tls"] == [{"hosts": ["foo.example.com"], "secretName": "my-cert"}]
    # No class named: the default class is filled in at create, Prefix from "/*".
    kubectl("create", "ingress", "defaulted", "--rule=x.example.com/*=svc1:80")
    spec = _get(kubectl, "ing", "defaulted")["spec"]
    assert spec["ingressClassName"] == "alb"
    assert spec["rules"][0]["http"]["paths"][0]["pathType"] == "Prefix"
    # The deprecated annotation keeps the class unset, as upstream's admission does.
    kubectl("create", "ingress", "annotated", "--rule=y.example.com/=svc1:80",
            "--annotation=kubernetes.io/ingress.class=nginx")
    assert "ingressClassName" not in _get(kubectl, "ing", "annotated")["spec"]
    # Updates never default it.
    kubectl("patch", "ing", "annotated", "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/annotations"}]')
    assert "ingressClassName" not in _get(kubectl, "ing", "annotated")["spec"]
    rows = _table(kubectl("get", "ing", "defaulted", "simple"))
    assert [r[:3] for r in rows[1:]] == [["defaulted", "alb", "x.example.com"],
                                         ["simple", "other", "foo.example.com"]]


def test_status_subresource_and_generation(kubectl, api_server, tmp_path):
    (tmp_path / "shop.yaml").write_text(SHOP)
    kubectl("apply", "-f", str(tmp_path / "shop.yaml"))
    name = "k8s-default-shop-0123456789-1234567890.us-east-1.elb.amazonaws.com"
    kubectl("patch", "ing", "shop", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"loadBalancer": {"ingress": [{"hostname": name}]}}}))
    shop = _get(kubectl, "ing", "shop")
    assert shop["status"]["loadBalancer"]["ingress"] == [{"hostname": name}]
    assert shop["metadata"]["generation"] == 1          # status does not bump it
    assert _table(kubectl("get", "ing", "shop"))[1][3] == name     # in full, not clipped
    assert f"Address:          {name}" in kubectl("describe", "ing", "shop")
    # The main resource ignores status; a spec change bumps the generation.
    kubectl("patch", "ing", "shop", "--type=merge",
            "-p", '{"status": {"loadBalancer": {}}, "spec": {"ingressClassName": "alb"}}')
    shop = _get(kubectl, "ing", "shop")
    assert shop["status"]["loadBalancer"]["ingress"] == [{"hostname": name}]
    assert shop["metadata"]["generation"] == 2
    before = _rv(api_server)
    proc = kubectl.run("patch", "ing", "shop", "--subresource=status", "--type=merge", "-p",
                       '{"status": {"loadBalancer": {"ingress": [{"hostname": "10.0.0.1"}]}}}')
    assert proc.returncode == 1
    assert ('status.loadBalancer.ingress[0].hostname: Invalid value: "10.0.0.1": '
            "must be a DNS name, not an IP address" in proc.stderr)
    assert _rv(api_server) == before


def test_ingressclass_controller_is_immutable(kubectl, api_server, tmp_path):
    (tmp_path / "cls.yaml").write_text(ALB_CLASS)
    kubectl("apply", "-f", str(tmp_path / "cls.yaml"))
    before = _rv(api_server)
    proc = kubectl.run("patch", "ingressclass", "alb", "--type=merge",
                       "-p", '{"spec": {"controller": "example.com/other"}}')
    assert proc.returncode == 1
    assert 'spec.controller: Invalid value: "example.com/other": field is immutable' \
        in proc.stderr
    assert _rv(api_server) == before


def test_server_side_apply_and_namespace_deletion(kubectl, tmp_path):
    kubectl("create", "namespace", "team-a")
    (tmp_path / "shop.yaml").write_text(SHOP)
    assert "serverside-applied" in kubectl("apply", "--server-side", "-n", "team-a",
                                           "-f", str(tmp_path / "shop.yaml"))
    (tmp_path / "shop.yaml").write_text(SHOP.replace("path: /api", "path: /api/v2"))
    kubectl("apply", "--server-side", "-n", "team-a", "-f", str(tmp_path / "shop.yaml"))
    shop = _get(kubectl, "ing", "shop", "-n", "team-a")
    assert shop["spec"]["rules"][0]["http"]["paths"][1]["path"] == "/api/v2"
    assert shop["metadata"]["generation"] == 2
    kubectl("delete", "namespace", "team-a")
    assert _get(kubectl, "ing", "-A")["items"] == []


def test_api_resources_and_explain(kubectl):
    rows = {r[0]: r for r in _table(kubectl("api-resources", "--api-group=networking.k8s.io"))}
    assert rows["ingresses"] == ["ingresses", "ing", "networking.k8s.io/v1", "true", "Ingress"]
    assert rows["ingressclasses"] == ["ingressclasses", "networking.k8s.io/v1", "false",
                                      "IngressClass"]
    out = kubectl("explain", "ingress.spec.rules")
    assert "FIELD: rules <[]IngressRule>" in out
    assert "host\t<string>" in out and "http\t<HTTPIngressRuleValue>" in out
    paths = kubectl("explain", "ing.spec.rules.http.paths")
    assert "pathType\t<string> -required-" in paths
    assert "Exact" in paths and "ImplementationSpecific" in paths
    assert "controller\t<string>" in kubectl("explain", "ingressclass.spec")


@pytest.mark.parametrize("role, verb, resource, answer", [
    ("view", "list", "ingresses", "yes"), ("view", "get", "ingresses/status", "yes"),
    ("view", "create", "ingresses", "no"), ("edit", "create", "ingresses", "yes"),
    ("edit", "delete", "ingresses", "yes"), ("edit", "create", "ingressclasses", "no"),
    ("admin", "patch", "ingresses", "yes"),
])
def test_user_facing_roles_cover_ingresses(shared_kubectl, role, verb, resource, answer):
    """As upstream's bootstrap policy: view reads Ingresses and their status, edit and admin
    write them; IngressClasses are cluster-scoped and stay with cluster admins."""
    user = f"ing-{role}"
    if shared_kubectl.run("get", "rolebinding", user).returncode != 0:
        shared_kubectl("create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}")
    proc = shared_kubectl.run("auth", "can-i", verb, resource, "--as", user)
    assert proc.stdout.strip() == answer
