"""User impersonation (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go semantics).

`kubectl --as=USER --as-group=G --as-uid=U` sends these headers; the authenticated requester must hold the
RBAC verb `impersonate` on each thing it asks to act as:

    Impersonate-User: jane                         users "jane"                       (group "")
    Impersonate-User: system:serviceaccount:NS:SA  serviceaccounts "SA" in NS         (group "")
    Impersonate-Group: devs          (repeatable)  groups "devs"                      (group "")
    Impersonate-Uid: 1234                          uids "1234"                        (authentication.k8s.io)
    Impersonate-Extra-<key>: value   (repeatable)  userextras/<key> "value"           (authentication.k8s.io)

    parse(headers) -> [ImpersonationRequest]    400 when groups, uid or extras come without a user
    impersonate(requester, headers, authorizer) -> the User the request then runs as, or None (no headers)
    without_impersonation(headers) -> the headers with every Impersonate-* removed (nothing is passed on)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy

from control.apiserver import errors
from control.apiserver.auth import AUTHENTICATED, Attributes, Authorizer, User

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "Impersonate-Extra-"

UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_NAME = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"
AUTHENTICATION_GROUP = "authentication.k8s.io"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


Headers = CIMultiDictProxy[str] | CIMultiDict[str]


@dataclass(frozen=True)
class ImpersonationRequest:
    """One thing to act as: kind is User, ServiceAccount, Group, UID or UserExtra (field_path = the extra's key)."""
    kind: str
    name: str
    namespace: str = ""
    field_path: str = ""

    def attributes(self, requester: User) -> Attributes:
        """What the requester must be authorized for: verb `impersonate` on this object."""
        group, resource, subresource = {
            "User": ("", "users", None),
            "ServiceAccount": ("", "serviceaccounts", None),
            "Group": ("", "groups", None),
            "UID": (AUTHENTICATION_GROUP, "uids", None),
            "UserExtra": (AUTHENTICATION_GROUP, "userextras", self.field_path),
        }[self.kind]
        return Attributes(requester, "impersonate", group, resource, subresource, self.namespace or None, self.name)

    def __str__(self) -> str:  # the shape of upstream's ObjectReference in its error message
        fields = [f"Kind:{self.kind}", f"Namespace:{self.namespace}", f"Name:{self.name}"]
        if self.field_path:
            fields.append(f"FieldPath:{self.field_path}")
        return "{" + " ".join(fields) + "}"


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a `system:serviceaccount:NS:NAME` user name with valid parts, as upstream's
    serviceaccount.SplitUsername; None for any other name (then it is impersonated as a plain user)."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX):].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if not (len(namespace) <= 63 and _DNS_LABEL.fullmatch(namespace)) or \
            not (len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name)):
        return None
    return namespace, name


def _extra_key(header: str) -> str:
    """An extra's key from its header name: lower-cased, then percent-decoded (keys such as
    `example.com/scopes` cannot be written in a header name otherwise), as upstream's unescapeExtraKey."""
    return unquote(header[len(EXTRA_PREFIX):].lower())


def parse(headers: Headers) -> list[ImpersonationRequest]:
    """Every impersonation the headers ask for, the user first. An empty Impersonate-User counts as absent."""
    found: list[ImpersonationRequest] = []
    username = headers.get(USER_HEADER) or ""
    if username:
        account = split_service_account(username)
        found.append(ImpersonationRequest("ServiceAccount", account[1], account[0]) if account
                     else ImpersonationRequest("User", username))
    groups = headers.getall(GROUP_HEADER, [])
    found.extend(ImpersonationRequest("Group", group) for group in groups)
    extra_headers = sorted({str(k) for k in headers
                            if str(k).lower().startswith(EXTRA_PREFIX.lower())}, key=str.lower)
    seen: set[str] = set()
    for header in extra_headers:
        if header.lower() in seen:
            continue
        seen.add(header.lower())
        key = _extra_key(header)
        found.extend(ImpersonationRequest("UserExtra", value, field_path=key)
                     for value in headers.getall(header, []))
    uid = headers.get(UID_HEADER) or ""
    if uid:
        found.append(ImpersonationRequest("UID", uid))
    if (groups or extra_headers or uid) and not username:
        raise errors.bad_request(f"requested [{' '.join(map(str, found))}] without impersonating a user")
    return found


def impersonate(requester: User, headers: Headers, authorizer: Authorizer) -> User | None:
    """The identity the request runs as, after checking `impersonate` on each asked-for piece in order (the
    first refusal is the answer, 403 in upstream's words); None when the request impersonates nobody."""
    asked = parse(headers)
    if not asked:
        return None
    groups_given = any(r.kind == "Group" for r in asked)
    username, uid = "", ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for request in asked:
        attrs = request.attributes(requester)
        if request.kind == "ServiceAccount":
            username = f"{SA_PREFIX}{request.namespace}:{request.name}"
            if not groups_given:  # a ServiceAccount's groups are a fixed mapping of its namespace
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{request.namespace}"]
        elif request.kind == "User":
            username = request.name
        elif request.kind == "Group":
            groups.append(request.name)
        elif request.kind == "UserExtra":
            extra.setdefault(request.field_path, []).append(request.name)
        else:
            uid = request.name
        decision = authorizer.authorize(attrs)
        if not decision.allowed:
            raise errors.forbidden(requester.name, attrs.verb, attrs.group, attrs.resource, attrs.namespace,
                                   attrs.name, attrs.subresource, decision.reason)
    if username != ANONYMOUS_NAME:
        # Everyone impersonated is authenticated, unless the caller asked for system:unauthenticated.
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    return User(username, tuple(groups), uid, tuple((k, tuple(v)) for k, v in sorted(extra.items())))


def is_impersonation_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in (USER_HEADER.lower(), GROUP_HEADER.lower(), UID_HEADER.lower()) or \
        lowered.startswith(EXTRA_PREFIX.lower())


def without_impersonation(headers: Headers) -> CIMultiDict[str]:
    """A copy of the headers without any Impersonate-*: the request must not carry them past this point."""
    return CIMultiDict((k, v) for k, v in headers.items() if not is_impersonation_header(k))


__all__ = ["ImpersonationRequest", "impersonate", "parse", "split_service_account", "without_impersonation"]
