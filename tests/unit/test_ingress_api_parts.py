"""The pure parts of the Ingress API: the default IngressClass choice, kubectl's host and
address cells, the protobuf body `kubectl create ingress` sends, and the validators'
corners (IP hosts with wildcards, path sequences, status addresses)."""

from __future__ import annotations

from controlplane.api import admission, protobuf, tables_networking
from controlplane.api.validation_ingress import (
    domain_prefixed_path_errors,
    host_errors,
    validate_http_path,
    validate_ingress_status,
)

DEFAULT = {admission.DEFAULT_CLASS_ANNOTATION: "true"}


def klass(name: str, created: str, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": annotations or {}}}


def test_default_class_is_the_newest_annotated_one_then_the_first_name():
    classes = [klass("old", "2026-01-01T00:00:00Z", DEFAULT),
               klass("plain", "2026-06-01T00:00:00Z"),
               klass("zeta", "2026-03-01T00:00:00Z", DEFAULT),
               klass("beta", "2026-03-01T00:00:00Z", DEFAULT),
               klass("off", "2026-09-01T00:00:00Z",
                     {admission.DEFAULT_CLASS_ANNOTATION: "True"})]   # only "true" counts
    assert admission.default_class(classes) == "beta"
    assert admission.default_class(classes[1:2]) is None


def test_default_class_fills_only_an_ingress_without_a_class():
    classes = [klass("alb", "2026-01-01T00:00:00Z", DEFAULT)]
    bare = {"metadata": {"name": "a"}, "spec": {"defaultBackend": {}}}
    assert admission.default_ingress_class(bare, classes)["spec"]["ingressClassName"] == "alb"
    assert "ingressClassName" not in bare["spec"]              # the input is not changed
    named = {"metadata": {}, "spec": {"ingressClassName": "nginx"}}
    assert admission.default_ingress_class(named, classes)["spec"]["ingressClassName"] == \
        "nginx"
    annotated = {"metadata": {"annotations": {admission.CLASS_ANNOTATION: "nginx"}},
                 "spec": {}}
    assert "ingressClassName" not in admission.default_ingress_class(annotated,
                                                                     classes)["spec"]


def rules(*hosts: str) -> list[dict]:
    return [{"host": h} if h else {} for h in hosts]


def test_hosts_cell_as_kubectl_formats_it():
    assert tables_networking.format_hosts([]) == "*"
    assert tables_networking.format_hosts(rules("", "")) == "*"
    assert tables_networking.format_hosts(rules("a", "", "b")) == "a,b"
    assert tables_networking.format_hosts(rules("a", "b", "c")) == "a,b,c"
    # After the third host any further rule adds "+ N more", N counting rules beyond three.
    assert tables_networking.format_hosts(rules("a", "b", "c", "")) == "a,b,c + 1 more..."
    assert tables_networking.format_hosts(rules("", "a", "b", "c", "d")) == \
        "a,b,c + 2 more..."


def test_address_cell_is_sorted_and_unique():
    status = {"loadBalancer": {"ingress": [{"hostname": "b.elb"}, {"ip": "203.0.113.9"},
                                           {"hostname": "b.elb"}, {}]}}
    assert tables_networking.ingress_address(status) == "203.0.113.9,b.elb"
    assert tables_networking.ingress_address({}) == ""


def _field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _varint_field(number: int, value: int) -> bytes:
    out, value = bytearray([number << 3]), value
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_protobuf_ingress_with_its_inline_rule_value():
    port = _varint_field(2, 8080)
    service = _field(1, b"svc1") + _field(2, port)
    backend = _field(4, service)
    http_path = _field(1, b"/bar") + _field(2, backend) + _field(3, b"Exact")
    rule = _field(1, b"foo.com") + _field(2, _field(1, _field(1, http_path)))
    spec = _field(3, rule) + _field(4, b"alb") + _field(2, _field(1, b"foo.com")
                                                         + _field(2, b"cert"))
    raw = _field(1, _field(1, b"simple")) + _field(2, spec)
    type_meta = _field(1, b"networking.k8s.io/v1") + _field(2, b"Ingress")
    body = protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)
    assert protobuf.decode_object(body) == {
        "kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "simple"},
        "spec": {"rules": [{"host": "foo.com", "http": {"paths": [
            {"path": "/bar", "pathType": "Exact",
             "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}}],
            "ingressClassName": "alb",
            "tls": [{"hosts": ["foo.com"], "secretName": "cert"}]}}


def test_host_judgement():
    assert host_errors("*.example.com") == [] and host_errors("a.b-c.example") == []
    assert host_errors("1.2.3.4") == []          # the IP check is the rule's, not the TLS one's
    assert len(host_errors("*.*.example.com")) == 1
    assert len(host_errors("x" * 250 + ".com")) == 1          # too long, otherwise fine
    assert len(host_errors("*." + "x" * 252)) == 1            # label length is not checked
    assert len(host_errors("*.-" + "x" * 252)) == 2


def test_path_sequences_all_reported():
    errs = validate_http_path({"path": "/a/./b/%2F/..", "pathType": "Prefix",
                               "backend": {"service": {"name": "web", "port": {"number": 1}}}},
                              "p")
    assert [e.detail for e in errs] == ["must not contain '/./'", "must not contain '%2F'",
                                        "cannot end with '/..'"]
    # ImplementationSpecific may leave the path empty; Prefix may not.
    ok = {"pathType": "ImplementationSpecific",
          "backend": {"resource": {"kind": "Bucket", "name": "b"}}}
    assert validate_http_path(ok, "p") == []
    assert [e.detail for e in validate_http_path({**ok, "pathType": "Prefix"}, "p")] == \
        ["must be an absolute path"]


def test_status_addresses():
    good = {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "a.elb.com"}]}}
    assert validate_ingress_status(good) == []
    bad = {"loadBalancer": {"ingress": [{"ip": "203.0.113.500"}, {"hostname": "A_B"}]}}
    assert [e.field for e in validate_ingress_status(bad)] == \
        ["status.loadBalancer.ingress[0].ip", "status.loadBalancer.ingress[1].hostname"]


def test_controller_is_a_domain_prefixed_path():
    assert domain_prefixed_path_errors("ingress.k8s.aws/alb", "c") == []
    assert domain_prefixed_path_errors("example.com/a/b-c_d~e", "c") == []
    assert [e.value for e in domain_prefixed_path_errors("example.com/a b", "c")] == ["a b"]
    assert len(domain_prefixed_path_errors("/alb", "c")) == 1
