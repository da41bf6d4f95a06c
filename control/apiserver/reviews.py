"""The review kinds: created, answered, never stored (pkg/registry/authorization/*, pkg/registry/authentication/*).

    authorization.k8s.io/v1    SelfSubjectAccessReview    may I?               (`kubectl auth can-i`)
                               SubjectAccessReview        may this user / these groups?
                               LocalSubjectAccessReview   the same, inside one namespace
                               SelfSubjectRulesReview     what may I do here?  (`kubectl auth can-i --list`)
    authentication.k8s.io/v1   TokenReview                whose token is this?
                               SelfSubjectReview          who am I?            (`kubectl auth whoami`)

    answer(kind, api_version, body, user, namespace, authenticator, authorizer) -> the review with its status

Bad input is a 422 naming the field, in upstream's validation words (pkg/apis/authorization/validation).
"""

from __future__ import annotations

from typing import Any

from control.apiserver import errors
from control.apiserver.auth import MASTERS, Attributes, Authorizer, TokenAuthenticator, User
from control.apiserver.errors import APIError

REVIEW_KINDS = frozenset({"SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview",
                          "SelfSubjectRulesReview", "TokenReview", "SelfSubjectReview"})


def _invalid(kind: str, field: str, value: Any, detail: str, reason: str = "FieldValueInvalid") -> APIError:
    from control.apiserver.validation import go_value

    message = f"Required value: {detail}" if reason == "FieldValueRequired" else \
        f"Invalid value: {go_value(value)}: {detail}"
    return errors.invalid("", kind, "", [{"reason": reason, "field": field, "message": message}])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _attributes(kind: str, spec: dict[str, Any], user: User) -> Attributes:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise _invalid(kind, "spec.nonResourceAttributes", non_resource,
                       "cannot be specified in combination with resourceAttributes")
    if resource is None and non_resource is None:
        raise _invalid(kind, "spec.resourceAttributes", None,
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                       "FieldValueRequired")
    if non_resource is not None:
        attrs = _dict(non_resource)
        return Attributes(user, str(attrs.get("verb", "")), "", "", path=str(attrs.get("path", "")))
    attrs = _dict(resource)
    return Attributes(user, str(attrs.get("verb", "")), str(attrs.get("group", "")), str(attrs.get("resource", "")),
                      attrs.get("subresource") or None, attrs.get("namespace") or None, attrs.get("name") or None)


def _access(authorizer: Authorizer, attrs: Attributes) -> dict[str, Any]:
    decision = authorizer.authorize(attrs)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _resource_rules(rules: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    resource_rules, url_rules = [], []
    for rule in rules:
        if rule.get("nonResourceURLs"):
            url_rules.append({"verbs": list(rule.get("verbs") or []), "nonResourceURLs": list(rule["nonResourceURLs"])})
        else:
            converted = {"verbs": list(rule.get("verbs") or []), "apiGroups": list(rule.get("apiGroups") or []),
                         "resources": list(rule.get("resources") or [])}
            if rule.get("resourceNames"):
                converted["resourceNames"] = list(rule["resourceNames"])
            resource_rules.append(converted)
    return resource_rules, url_rules


def _rules_review(authorizer: Authorizer, user: User, namespace: str) -> dict[str, Any]:
    """Every authorizer's rules for the user (RulesFor of the union): system:masters holds everything; the Node
    authorizer cannot list its rules, so a node's answer is incomplete, as upstream's."""
    rules, resolution_errors = authorizer.rbac.rules_for(user, namespace)
    if MASTERS in user.groups:
        rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                 {"verbs": ["*"], "nonResourceURLs": ["*"]}, *rules]
    resource_rules, url_rules = _resource_rules(rules)
    status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": url_rules,
                              "incomplete": bool(resolution_errors) or user.node_name is not None}
    if resolution_errors:
        status["evaluationError"] = ", ".join(resolution_errors)
    return status


def _user_info(user: User) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = {key: list(values) for key, values in user.extra}
    return info


def answer(kind: str, api_version: str, body: dict[str, Any], user: User, namespace: str | None,
           authenticator: TokenAuthenticator, authorizer: Authorizer) -> dict[str, Any]:
    spec = _dict(body.get("spec"))
    meta = _dict(body.get("metadata"))
    if kind == "SelfSubjectAccessReview":
        status = _access(authorizer, _attributes(kind, spec, user))
    elif kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
        groups = tuple(g for g in spec.get("groups") or [] if isinstance(g, str))
        if not spec.get("user") and not groups:
            raise _invalid(kind, "spec.user", spec.get("user") or "", "at least one of user or group must be specified")
        subject = User(str(spec.get("user") or ""), groups)
        if kind == "LocalSubjectAccessReview":
            if spec.get("nonResourceAttributes") is not None:
                raise _invalid(kind, "spec.nonResourceAttributes", spec["nonResourceAttributes"],
                               "disallowed on this kind of request")
            wanted = _dict(spec.get("resourceAttributes")).get("namespace")
            if spec.get("resourceAttributes") is not None and wanted != namespace:
                raise _invalid(kind, "spec.resourceAttributes.namespace", wanted or "",
                               "must match metadata.namespace")
        status = _access(authorizer, _attributes(kind, spec, subject))
    elif kind == "SelfSubjectRulesReview":
        status = _rules_review(authorizer, user, str(spec.get("namespace") or ""))
    elif kind == "TokenReview":
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        reviewed = authenticator.authenticate(f"Bearer {token}")
        status = {"authenticated": True, "user": _user_info(reviewed)} if reviewed is not None else {}
    else:  # SelfSubjectReview
        status = {"userInfo": _user_info(user)}
    out: dict[str, Any] = {"kind": kind, "apiVersion": api_version,
                           "metadata": {**meta, "creationTimestamp": None}, "status": status}
    if kind != "SelfSubjectReview":
        out["spec"] = spec
    if namespace and kind == "LocalSubjectAccessReview":
        out["metadata"]["namespace"] = namespace
    return out


__all__ = ["REVIEW_KINDS", "answer"]
