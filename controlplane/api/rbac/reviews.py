"""The create-only review resources: what ``kubectl auth can-i`` and ``whoami`` post.

SelfSubjectAccessReview (can I do this?), SelfSubjectRulesReview (what may I
do in this namespace? — ``can-i --list``), SubjectAccessReview (may that user
do this? — for whoever may create it) and authentication.k8s.io
SelfSubjectReview (who am I?). Nothing is stored: the answer is the request
with its ``status`` filled in, code 201, as kube-apiserver answers.
"""

from __future__ import annotations

from controlplane.api import errors
from controlplane.api.errors import invalid
from controlplane.api.rbac.attributes import Attributes, UserInfo
from controlplane.api.rbac.authorizer import Authorizer

AUTHZ = "authorization.k8s.io/v1"
EXACTLY_ONE = "exactly one of nonResourceAttributes or resourceAttributes must be specified"


def _attributes(user: UserInfo, spec: dict, kind: str) -> Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if bool(resource) == bool(non_resource):
        raise errors.invalid_object(kind, "authorization.k8s.io", "",
                                    [invalid(resource, "spec.resourceAttributes", EXACTLY_ONE)])
    if non_resource:
        return Attributes(user, non_resource.get("verb", ""), False,
                          path=non_resource.get("path", ""))
    return Attributes(user, resource.get("verb", ""), True, resource.get("group", ""),
                      resource.get("version", ""), resource.get("resource", ""),
                      resource.get("subresource", ""), resource.get("namespace", ""),
                      resource.get("name", ""))


def _answer(kind: str, api_version: str, body: dict, status: dict) -> dict:
    return {"kind": kind, "apiVersion": api_version,
            "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None},
            "spec": body.get("spec") or {}, "status": status}


def _access_status(authorizer: Authorizer, attrs: Attributes) -> dict:
    decision = authorizer.authorize(attrs)
    status: dict = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def self_subject_access_review(authorizer: Authorizer, user: UserInfo, body: dict) -> dict:
    attrs = _attributes(user, body.get("spec") or {}, "SelfSubjectAccessReview")
    return _answer("SelfSubjectAccessReview", AUTHZ, body, _access_status(authorizer, attrs))


def subject_access_review(authorizer: Authorizer, body: dict) -> dict:
    spec = body.get("spec") or {}
    if not spec.get("user") and not spec.get("groups"):
        raise errors.invalid_object("SubjectAccessReview", "authorization.k8s.io", "",
                                    [invalid(spec.get("user", ""), "spec.user",
                                             "at least one of user or group must be "
                                             "specified")])
    subject = UserInfo(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""))
    attrs = _attributes(subject, spec, "SubjectAccessReview")
    return _answer("SubjectAccessReview", AUTHZ, body, _access_status(authorizer, attrs))


def self_subject_rules_review(authorizer: Authorizer, user: UserInfo, body: dict) -> dict:
    namespace = (body.get("spec") or {}).get("namespace", "")
    resolved = authorizer.resolve(user, namespace)
    resource_rules, non_resource_rules = [], []
    for rule, _ in resolved.rules:
        source = rule.source
        if source.get("nonResourceURLs"):
            non_resource_rules.append({"verbs": list(source.get("verbs") or []),
                                       "nonResourceURLs": list(source["nonResourceURLs"])})
        else:
            entry = {"verbs": list(source.get("verbs") or [])}
            for key in ("apiGroups", "resources", "resourceNames"):
                if source.get(key):
                    entry[key] = list(source[key])
            resource_rules.append(entry)
    status = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
              "incomplete": bool(resolved.errors)}
    if resolved.errors:
        status["evaluationError"] = "[" + ", ".join(resolved.errors) + "]"
    return _answer("SelfSubjectRulesReview", AUTHZ, body, status)


def self_subject_review(user: UserInfo) -> dict:
    info: dict = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = {k: list(v) for k, v in user.extra}
    return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "status": {"userInfo": info}}


def review(authorizer: Authorizer, user: UserInfo, plural: str, body) -> dict:
    """The answer to a POST of ``body`` to the review resource ``plural``."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    if plural == "selfsubjectaccessreviews":
        return self_subject_access_review(authorizer, user, body)
    if plural == "selfsubjectrulesreviews":
        return self_subject_rules_review(authorizer, user, body)
    if plural == "subjectaccessreviews":
        return subject_access_review(authorizer, body)
    if plural == "selfsubjectreviews":
        return self_subject_review(user)
    raise errors.method_not_allowed()
