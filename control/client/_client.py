"""The HTTP client: paths, verbs, Status errors, retries on Retry-After, TLS and bearer tokens."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp
from yarl import URL

from control.client._errors import (
    ApiConnectionError,
    ConfigError,
    Gone,
    ProtocolError,
    error_from_response,
)
from control.client._ratelimit import TokenBucket
from control.client._resource import Resource, resource_path
from control.client._watch import DEFAULT_MAX_LINE, WatchStream

log = logging.getLogger("control.client")

JsonObject = dict[str, Any]
PatchType = Literal["merge", "json", "strategic", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

# client-go re-reads a token file at most once a minute (transport.cachingTokenSource), so a rotated
# projected service-account token is picked up without restarting.
TOKEN_FILE_REREAD_SECONDS = 60.0

Sleep = Callable[[float], Awaitable[None]]


def make_ssl_context(
    *,
    ca_file: str | Path | None = None,
    ca_data: str | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """A verifying TLS context: the given CA (file or PEM text) if any, else the system's trust store."""
    try:
        if ca_file is None and ca_data is None:
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None, cadata=ca_data)
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"cannot load TLS material (CA {ca_file or 'data'}, client cert {cert_file}): {exc}") from exc
    return context


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _items_of(page: JsonObject, transform: Callable[[Any], Any | None] | None) -> list[Any]:
    items = page.get("items") or []
    if transform is None:
        return list(items)
    return [kept for kept in map(transform, items) if kept is not None]


def _transformed(listed: JsonObject, transform: Callable[[Any], Any | None] | None) -> JsonObject:
    if transform is not None and "items" in listed:
        listed["items"] = _items_of(listed, transform)
    return listed


def _name_of(body: Mapping[str, Any]) -> str | None:
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) and name else None


def _namespace_of(body: Mapping[str, Any]) -> str | None:
    meta = body.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return ns if isinstance(ns, str) and ns else None


def _bucket(qps: float, burst: int, sleep: Sleep) -> TokenBucket | None:
    return TokenBucket(qps, max(burst, 1), sleep=sleep) if qps > 0 else None


class Client:
    """An asyncio client of one Kubernetes apiserver (any apiserver: it speaks the public API only).

        async with Client("https://10.96.0.1:443", token=..., ca_file="ca.crt") as client:
            pod = await client.get(PODS, "web", namespace="default")

    `session=` injects an aiohttp session (tests, shared pools); the client then never closes it.
    `sleep=` is the clock seam for Retry-After waits. TLS is always verified unless
    `insecure_skip_tls_verify=True` is asked for explicitly (and then logged as a warning).
    `qps=`/`burst=` limit the rate of requests and watch starts as client-go's token bucket does; by
    default there is no limit (as in the Python kubernetes client; client-go's default is 5/10).
    `rate_limited()` gives a component's parts buckets of their own over the same connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        ca_data: str | None = None,
        client_cert_file: str | Path | None = None,
        client_key_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        insecure_skip_tls_verify: bool = False,
        tls_server_name: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_retries: int = 10,
        default_namespace: str = "default",
        user_agent: str = "kubesim-client/0.1",
        max_watch_line: int = DEFAULT_MAX_LINE,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        qps: float = 0.0,
        burst: int = 0,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"apiserver URL {base_url!r} must be http(s)://HOST[:PORT][/PREFIX]")
        if token is not None and token_file is not None:
            raise ConfigError("give either token= or token_file=, not both")
        self.base_url = str(url).rstrip("/")
        self.default_namespace = default_namespace
        self._token = token
        self._token_file = Path(token_file) if token_file is not None else None
        self._token_read_at = -float("inf")
        self._ssl: ssl.SSLContext | bool
        if insecure_skip_tls_verify:
            if ssl_context is not None or ca_file is not None or ca_data is not None:
                raise ConfigError("insecure_skip_tls_verify=True contradicts a CA: give one or the other")
            log.warning("TLS verification of %s is disabled (insecure_skip_tls_verify): anyone on the path "
                        "can impersonate the apiserver", self.base_url)
            self._ssl = False
        elif ssl_context is not None:
            self._ssl = ssl_context
        elif url.scheme == "https":
            self._ssl = make_ssl_context(
                ca_file=ca_file, ca_data=ca_data, cert_file=client_cert_file, key_file=client_key_file)
        else:
            self._ssl = True
        self._server_hostname = tls_server_name
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_retries = max_retries
        self._user_agent = user_agent
        self._max_watch_line = max_watch_line
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._closed = False
        self._limiter = _bucket(qps, burst, sleep)
        self._shares: Client | None = None  # rate_limited(): the client whose session this one uses

    def rate_limited(self, qps: float, burst: int) -> Client:
        """This client with a token bucket of its own (QPS <= 0: none), sharing its connections; closing
        it closes only itself. As kube-controller-manager builds each controller's client from one config:
        the controllers' buckets are apart, so one controller's burst does not hold up another's."""
        limited = copy.copy(self)
        limited._limiter = _bucket(qps, burst, self._sleep)
        limited._shares = self._shares or self
        limited._owns_session = False
        return limited

    def __repr__(self) -> str:
        # Never the token: reprs end up in logs and tracebacks.
        return f"Client({self.base_url!r})"

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the session the client made (an injected one stays open: its owner closes it)."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigError(f"{self!r} is closed: make a new Client")
        if self._shares is not None:
            return self._shares._get_session()
        if self._session is None:
            # Made lazily: a ClientSession must be created inside the running event loop.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self._session

    # --- plumbing --------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        if self._token_file is None:
            return self._token
        now = time.monotonic()
        if now - self._token_read_at >= TOKEN_FILE_REREAD_SECONDS:
            try:
                self._token = self._token_file.read_text().strip()
            except OSError as exc:
                if self._token is None:
                    raise ConfigError(f"cannot read the token file {self._token_file}: {exc}") from exc
                log.warning("cannot re-read the token file %s (%s); keeping the previous token",
                            self._token_file, exc)
            self._token_read_at = now
        return self._token

    def _headers(self, content_type: str | None = None, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self._user_agent}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str) -> URL:
        # Path segments are already quoted by resource_path(); don't let yarl quote them again.
        return URL(self.base_url + path, encoded=True)

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ssl": self._ssl}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        return kwargs

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        """One API call: JSON in, JSON object out; a Status error raises its `ApiError`.

        Like client-go's rest client, a 429 or 5xx carrying Retry-After is retried (any verb: the server
        said it did not act) after the delay it asks for, up to `max_retries` times.
        """
        session = self._get_session()
        url = self._url(path)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            if self._limiter is not None:
                await self._limiter.wait()  # each attempt, as client-go's throttle before every try
            try:
                async with session.request(
                    method,
                    url,
                    params=dict(params) if params else None,
                    data=data,
                    headers=self._headers(content_type if data is not None else None),
                    timeout=aiohttp.ClientTimeout(total=self._timeout, connect=self._connect_timeout),
                    **self._request_kwargs(),
                ) as response:
                    payload = await response.read()
                    if response.status < 400:
                        return self._decode(method, url, payload)
                    error = error_from_response(response.status, payload, response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ApiConnectionError(f"{method} {url.path}: {exc or type(exc).__name__}") from exc
            retryable = error.status == 429 or error.status >= 500
            if retryable and error.retry_after is not None and attempt < self._max_retries:
                attempt += 1
                log.info("%s %s: %s %s, retrying in %.1fs (attempt %d of %d)", method, url.path, error.status,
                         error.reason, error.retry_after, attempt, self._max_retries)
                await self._sleep(error.retry_after)
                continue
            raise error

    @staticmethod
    def _decode(method: str, url: URL, payload: bytes) -> JsonObject:
        if not payload:
            return {}
        try:
            decoded = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"{method} {url.path}: the response is not JSON: {payload[:200]!r}") from exc
        if not isinstance(decoded, dict):
            raise ProtocolError(f"{method} {url.path}: expected a JSON object, got {type(decoded).__name__}")
        return decoded

    @staticmethod
    def _namespace(resource: Resource, namespace: str | None, body: Mapping[str, Any] | None = None) -> str | None:
        if not resource.namespaced:
            return None
        ns = namespace or (_namespace_of(body) if body is not None else None)
        if ns is None:
            raise ValueError(f"{resource.plural} live in namespaces: give namespace= or metadata.namespace")
        return ns

    # --- verbs -----------------------------------------------------------------------------------

    async def get(
        self, resource: Resource, name: str, *, namespace: str | None = None, subresource: str | None = None
    ) -> JsonObject:
        return await self.request("GET", resource.path(self._namespace(resource, namespace), name, subresource))

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        all_pages: bool = True,
        full_list_if_expired: bool = True,
        transform: Callable[[Any], Any | None] | None = None,
    ) -> JsonObject:
        """A List object. `namespace=None` lists a namespaced resource across all namespaces.

        With `limit` and `all_pages=True` (the default) pages are followed transparently, as client-go's
        pager does: the items are joined and the metadata (so the resourceVersion to watch from) is the
        first page's, since every page comes from that one snapshot. If a continue token expires (410)
        mid-way, one unpaginated list at the requested resourceVersion replaces it (pager's
        FullListIfExpired). With `all_pages=False` one page comes back; pass its
        `metadata["continue"]` as `continue_=` for the next.

        `transform` is applied to each item as its page arrives, and an item it turns into None is left
        out: a caller that keeps a little of each object (an informer's transform) then never holds
        more than one page of whole objects, instead of every page of a 10k-object list at once.
        """
        if not resource.namespaced and namespace is not None:
            raise ValueError(f"{resource.plural} are cluster-scoped: drop namespace={namespace!r}")
        path = resource.path(namespace)
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if resource_version_match:
            params["resourceVersionMatch"] = resource_version_match
        if continue_:
            # The apiserver rejects resourceVersion together with continue: the token carries it.
            params.pop("resourceVersion", None)
            params.pop("resourceVersionMatch", None)
            params["continue"] = continue_
        page = await self.request("GET", path, params=params)
        if not all_pages or not limit:
            return _transformed(page, transform)
        # Every page comes from the first one's snapshot: its metadata (resourceVersion) is the list's.
        result = {k: v for k, v in page.items() if k != "items"}
        meta = dict(page.get("metadata") or {})
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        result["metadata"] = meta
        items: list[Any] = []
        while True:
            items.extend(_items_of(page, transform))
            token = (page.get("metadata") or {}).get("continue")
            del page  # the page's whole objects go now, before the next page is read
            if not token:
                break
            next_params = {k: v for k, v in params.items() if k not in ("resourceVersion", "resourceVersionMatch")}
            next_params["continue"] = str(token)
            try:
                page = await self.request("GET", path, params=next_params)
            except Gone:
                if not full_list_if_expired:
                    raise
                log.info("list %s: continue token expired, falling back to one full list", path)
                full = {k: v for k, v in params.items() if k not in ("limit", "continue")}
                return _transformed(await self.request("GET", path, params=full), transform)
        result["items"] = items
        return result

    def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_watch_bookmarks: bool = True,
        read_timeout: float | None = None,
    ) -> WatchStream:
        """A watch from `resource_version` (events after it), as an async iterator of `WatchEvent`s.

            async with client.watch(SERVICES, resource_version=rv, timeout_seconds=300) as events:
                async for event in events: ...

        A failed start raises the Status's `ApiError` (a 410 `Gone` among them); an ERROR event is
        yielded as such (`event.error()`). `read_timeout` bounds the silence between chunks; by default it
        is `timeout_seconds` plus a minute, so a dead connection that never closes is noticed.
        """
        if not resource.namespaced and namespace is not None:
            raise ValueError(f"{resource.plural} are cluster-scoped: drop namespace={namespace!r}")
        path = resource.path(namespace)
        params: dict[str, str] = {"watch": "1"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        if allow_watch_bookmarks:
            params["allowWatchBookmarks"] = "true"
        if read_timeout is None and timeout_seconds is not None:
            read_timeout = timeout_seconds + 60.0
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout, sock_connect=self._connect_timeout, sock_read=read_timeout)

        async def opener() -> aiohttp.ClientResponse:
            session = self._get_session()
            if self._limiter is not None:
                await self._limiter.wait()
            url = self._url(path)
            try:
                response = await session.get(
                    url, params=params, headers=self._headers(), timeout=timeout, **self._request_kwargs())
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ApiConnectionError(f"watch {path}: {exc or type(exc).__name__}") from exc
            if response.status >= 400:
                try:
                    payload = await response.read()
                except (TimeoutError, aiohttp.ClientError):
                    payload = b""
                finally:
                    response.close()
                raise error_from_response(response.status, payload, response.headers.get("Retry-After"))
            return response

        return WatchStream(opener, describe=path, max_line=self._max_watch_line)

    async def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        name: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> JsonObject:
        """POST the object (namespace from the argument or `metadata.namespace`); AlreadyExists on a taken name.

        `subresource` posts to NAME/SUBRESOURCE instead (e.g. pods/NAME/binding, pods/NAME/eviction).
        """
        ns = self._namespace(resource, namespace, body)
        path = resource.path(ns, name, subresource) if subresource else resource.path(ns)
        return await self.request("POST", path, params=self._write_params(dry_run, field_manager), body=body)

    async def update(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> JsonObject:
        """PUT the whole object; its `metadata.resourceVersion`, if set, makes it a compare-and-swap (409 Conflict)."""
        name = _name_of(body)
        if name is None:
            raise ValueError(f"update of {resource.plural} needs metadata.name in the body")
        path = resource.path(self._namespace(resource, namespace, body), name, subresource)
        return await self.request("PUT", path, params=self._write_params(dry_run, field_manager), body=body)

    async def update_status(
        self, resource: Resource, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> JsonObject:
        """PUT .../status: only the status is written (spec changes in the body are ignored by the server)."""
        return await self.update(resource, body, namespace=namespace, subresource="status")

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> JsonObject:
        """PATCH with a JSON merge patch (`merge`), a JSON patch list (`json`), a strategic merge patch
        (`strategic`) or a server-side apply configuration (`apply`, needs `field_manager`)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type {patch_type!r}: use one of {', '.join(PATCH_CONTENT_TYPES)}")
        if (patch_type == "json") != (not isinstance(patch, Mapping)):
            raise ValueError("a json patch is a list of operations; merge/strategic/apply patches are objects")
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs field_manager=")
        params = self._write_params(dry_run, field_manager)
        if force is not None:
            params["force"] = _flag(force)
        path = resource.path(self._namespace(resource, namespace), name, subresource)
        return await self.request(
            "PATCH", path, params=params, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: Literal["Orphan", "Background", "Foreground"] | None = None,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> JsonObject:
        """DELETE with DeleteOptions. Returns what the server returns: the object (still there with a
        deletionTimestamp while finalizers or a grace period run) or a Success Status.

        `preconditions` takes `uid` and/or `resourceVersion`: delete only that incarnation / version.
        """
        options: JsonObject = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            unknown = set(preconditions) - {"uid", "resourceVersion"}
            if unknown:
                raise ValueError(f"preconditions take uid and resourceVersion, not {sorted(unknown)}")
            options["preconditions"] = dict(preconditions)
        if dry_run:
            options["dryRun"] = ["All"]
        path = resource.path(self._namespace(resource, namespace), name)
        return await self.request("DELETE", path, body=options)

    async def bind(self, name: str, node_name: str, *, namespace: str, uid: str | None = None) -> JsonObject:
        """What the scheduler does: POST pods/NAME/binding with a Binding whose target is the Node."""
        meta: JsonObject = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        path = resource_path("", "v1", "pods", namespace, name, "binding")
        return await self.request("POST", path, body=binding)

    async def create_event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        component: str,
        event_type: Literal["Normal", "Warning"] = "Normal",
        host: str | None = None,
        kind: str | None = None,
        api_version: str | None = None,
        now: dt.datetime | None = None,
    ) -> JsonObject:
        """Records a core/v1 Event about `involved` (an object as read from the API), the way client-go's
        EventRecorder does: named `<object name>.<unix nanoseconds in hex>`, in the object's namespace or
        "default" for cluster-scoped objects. Objects from a List lack kind/apiVersion: pass them then.
        """
        meta = involved.get("metadata") or {}
        obj_name = str(meta.get("name") or "")
        if not obj_name:
            raise ValueError("the involved object has no metadata.name")
        namespace = str(meta.get("namespace") or "default")
        when = now or dt.datetime.now(dt.UTC)
        stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ref: JsonObject = {
            "kind": kind or involved.get("kind") or "",
            "apiVersion": api_version or involved.get("apiVersion") or "",
            "name": obj_name,
        }
        if meta.get("namespace"):
            ref["namespace"] = meta["namespace"]
        for key in ("uid", "resourceVersion"):
            if meta.get(key):
                ref[key] = meta[key]
        source: JsonObject = {"component": component}
        if host:
            source["host"] = host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{obj_name}.{int(when.timestamp() * 1e9):x}", "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": host or "",
        }
        return await self.request("POST", resource_path("", "v1", "events", namespace), body=event)

    @staticmethod
    def _write_params(dry_run: bool, field_manager: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if dry_run:
            params["dryRun"] = "All"
        if field_manager:
            params["fieldManager"] = field_manager
        return params
