"""The client's exception tree (drawn in the package docstring) and the Status -> exception mapping."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class KubeClientError(Exception):
    """Base of every error the client raises on purpose."""


class ConfigError(KubeClientError):
    """A kubeconfig (or the arguments given to `Client`) cannot be used as it is."""


class ApiConnectionError(KubeClientError):
    """The apiserver could not be reached, or the connection broke or timed out mid-request or mid-watch."""


class ProtocolError(KubeClientError):
    """The apiserver answered something that is not the Kubernetes API's shape (bad JSON, oversized line)."""


@dataclass(frozen=True, slots=True)
class StatusCause:
    """One entry of a Status's `details.causes` (metav1.StatusCause): which field, and what is wrong with it."""

    reason: str
    message: str
    field: str


class ApiError(KubeClientError):
    """A request failed with a Kubernetes `Status` (or an HTTP error we turned into one).

    `status` is the HTTP code, `reason` the Status reason (`NotFound`, `AlreadyExists`, ...), `message` the
    server's words, `details` the Status's details (name, group, kind, causes...), `body` the whole Status.
    """

    #: What a caller can usually do about it; subclasses say it more precisely.
    hint = ""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        body: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after = retry_after
        text = f"{status} {reason}: {message}" if message else f"{status} {reason}"
        super().__init__(f"{text} ({self.hint})" if self.hint else text)

    @property
    def causes(self) -> list[StatusCause]:
        causes = self.details.get("causes") or []
        return [
            StatusCause(str(c.get("reason", "")), str(c.get("message", "")), str(c.get("field", "")))
            for c in causes
            if isinstance(c, Mapping)
        ]


class BadRequest(ApiError):
    hint = "the request itself is malformed"


class Unauthorized(ApiError):
    hint = "the apiserver did not accept the credentials: check the bearer token"


class Forbidden(ApiError):
    hint = "the identity is not allowed this verb on this resource"


class NotFound(ApiError):
    hint = ""


class AlreadyExists(ApiError):
    hint = "get it and update it instead, or pick another name"


class Conflict(ApiError):
    hint = "the object changed since it was read: get it again and retry"


class Gone(ApiError):
    hint = "the resourceVersion is too old: list again and watch from the list's resourceVersion"


class Expired(Gone):
    """410 with reason Expired: a watch or continue token older than the apiserver's history window."""


class Invalid(ApiError):
    """422: the object failed validation; `causes` names each bad field."""

    hint = ""

    def __str__(self) -> str:
        base = super().__str__()
        causes = self.causes
        if not causes or all(c.field and c.field in self.message for c in causes):
            return base
        return base + "; " + "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)


class TooManyRequests(ApiError):
    """429: the apiserver asked us to slow down; `retry_after` is its Retry-After in seconds, if it sent one."""

    hint = "the apiserver is throttling: retry after the delay it gave"


class ServerError(ApiError):
    hint = "the apiserver failed; retrying later may work"


# The reason Kubernetes puts in a Status for each code, used when a body is not a Status
# (client-go: apimachinery/pkg/api/errors NewGenericServerResponse).
_REASON_FOR_CODE: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _class_for(code: int, reason: str) -> type[ApiError]:
    if code == 400:
        return BadRequest
    if code == 401:
        return Unauthorized
    if code == 403:
        return Forbidden
    if code == 404:
        return NotFound
    if code == 409:
        # One code, two meanings: create() of a present name vs. a stale resourceVersion.
        return AlreadyExists if reason == "AlreadyExists" else Conflict
    if code == 410:
        return Expired if reason == "Expired" else Gone
    if code == 422:
        return Invalid
    if code == 429:
        return TooManyRequests
    if code >= 500:
        return ServerError
    return ApiError


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: an integer (what the apiserver sends) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_status(
    status: Mapping[str, Any], *, http_status: int | None = None, retry_after: float | None = None
) -> ApiError:
    """The exception for a metav1.Status (from an HTTP error body or a watch ERROR event)."""
    code = status.get("code")
    if not isinstance(code, int) or code <= 0:
        code = http_status or 500
    reason = str(status.get("reason") or _REASON_FOR_CODE.get(code, "Unknown"))
    details = status.get("details")
    return _class_for(code, reason)(
        code,
        reason,
        str(status.get("message") or ""),
        details if isinstance(details, Mapping) else None,
        body=status,
        retry_after=retry_after,
    )


def error_from_response(http_status: int, body: bytes, retry_after: str | None = None) -> ApiError:
    """The exception for an HTTP error response; a non-Status body becomes a Status the way client-go does."""
    after = parse_retry_after(retry_after)
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        return error_from_status(decoded, http_status=http_status, retry_after=after)
    # Not a Status (a proxy in the way, a plain-text error): keep a bounded piece of it as the message.
    text = body[:512].decode("utf-8", "replace").strip()
    reason = _REASON_FOR_CODE.get(http_status, "InternalError" if http_status >= 500 else "Unknown")
    synthetic = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": text or f"the server responded with HTTP {http_status}",
        "reason": reason,
        "code": http_status,
    }
    return error_from_status(synthetic, http_status=http_status, retry_after=after)
