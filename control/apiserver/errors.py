"""Kubernetes Status errors.

    APIError(code, reason, message, details)   -> a metav1.Status body with that HTTP code

Constructors below produce upstream's wording (k8s.io/apimachinery/pkg/api/errors), so clients that
read `reason`/`details` (kubectl, client-go, the Python client) behave as against a real apiserver.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details.update(extra)
    return details


def no_route() -> APIError:
    """A path the server does not serve. Upstream's carries empty details (NewGenericServerResponse), and
    clients read them: kubectl debug looks at details.name of a 404 and crashes on a Status without details."""
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def not_found(group: str, plural: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                    _details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists',
                    _details(name, group, plural))


def conflict(group: str, plural: str, name: str, why: str) -> APIError:
    return APIError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
                    _details(name, group, plural))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, causes: list[dict[str, Any]]) -> APIError:
    """422, with one cause per field error: {"reason": "FieldValueInvalid", "message": ..., "field": ...}."""
    summary = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    return APIError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}',
                    _details(name, group, kind, causes=causes))


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def forbidden(user: str, verb: str, group: str, plural: str, namespace: str | None, name: str | None,
              subresource: str | None = None, why: str = "") -> APIError:
    resource = f"{plural}/{subresource}" if subresource else plural
    what = f'{_qualified(group, plural)} "{name}"' if name else _qualified(group, plural)
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {scope}'
    if why:
        message += f": {why}"
    return APIError(403, "Forbidden", message, _details(name or "", group, plural))


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def gone(message: str) -> APIError:
    return APIError(410, "Gone", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def too_large(limit: int) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"the request body is larger than the limit of {limit} bytes")


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                    f"media types include: application/json, application/yaml (got {content_type!r})")


def not_acceptable(accept: str) -> APIError:
    return APIError(406, "NotAcceptable", f"only the following media types are accepted: application/json "
                    f"(got {accept!r})")


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> APIError:
    return APIError(503, "ServiceUnavailable", message)


def object_too_large(size: int, limit: int | None) -> APIError:
    """The object (after defaulting, patching) is larger than the store takes (etcd's request size limit)."""
    most = f", the limit is {limit} bytes" if limit is not None else ""
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: the object is {size} bytes{most}")
