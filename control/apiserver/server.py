"""The apiserver's HTTP layer (aiohttp): authentication, routing of Kubernetes API paths, content
negotiation (JSON, YAML, Table), watch streams, discovery and health. Storage semantics live in
registry.py; this module only translates between HTTP and it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict

from control.apiserver import apply as ssa
from control.apiserver import errors, metricsapi, tables
from control.apiserver.apply.managed import MAX_MANAGER_LENGTH
from control.apiserver.auth import PUBLIC_PATHS, Attributes, Authorizer, TokenAuthenticator, User, request_name
from control.apiserver.crd import hooks as crd_hooks
from control.apiserver.crd import openapi as crd_openapi
from control.apiserver.crd.catalog import Catalog, CustomResource, sorted_versions
from control.apiserver.decoding import BodyError, check_depth, decode_json, decode_yaml, type_error
from control.apiserver.errors import APIError
from control.apiserver.escalation import compose, escalation_check
from control.apiserver.impersonation import impersonate, without_impersonation
from control.apiserver.kubeletproxy import KubeletProxy
from control.apiserver.nodegraph import NodeGraph
from control.apiserver.noderestriction import admission_for
from control.apiserver.protobuf import CONTENT_TYPE as PROTOBUF
from control.apiserver.protobuf import decode_protobuf
from control.apiserver.rbac import RBACIndex, RuleResolver
from control.apiserver.registry import DeleteOptions, ListOptions, Registry, Tracking
from control.apiserver.resources import BY_KIND, BY_PATH, RESOURCES, Resource, group_versions
from control.apiserver.reviews import REVIEW_KINDS, answer
from control.apiserver.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from control.apiserver.serviceaccount import ServiceAccountAuthenticator, TokenIssuer, token_request
from control.apiserver.watchcache import Watcher, WatchEvent, convert
from control.store import CompactedError, ValueTooLargeError

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # upstream's default request body limit
THREAD_DECODE_BYTES = 64 * 1024
"""Bodies larger than this are decoded in a worker thread: 3 MiB of YAML takes seconds of pure Python, which on
the event loop would stall every other client (watches, heartbeats) meanwhile."""
MIN_REQUEST_TIMEOUT = 1800.0
"""Upstream's --min-request-timeout: a watch without timeoutSeconds lasts a random time in [this, 2 * this], so that
watchers reconnect spread out; timeoutSeconds beyond 2 * this is clamped to it."""
MAX_WATCH_TIMEOUT = 2 * MIN_REQUEST_TIMEOUT
WATCH_BATCH_BYTES = 64 * 1024
"""A watch's queued events go out together, up to about this many bytes a write: in a burst (a ReplicaSet
creating hundreds of pods, each event fanned out to every node's watch) one chunk, one run of TLS records and
one send per batch rather than per event. The stream's bytes are the same; those sends were most of the
apiserver's time at 1000 pods (bench/pod_startup.py)."""
HEADER_READ_TIMEOUT = 32.0
"""Seconds a connection may take to send a request's headers (upstream's ReadHeaderTimeout), from its opening or
from the end of its previous response. aiohttp's keepalive timer does exactly this: armed when the connection is
made and re-armed after each response, it closes the connection if no complete request arrived by then."""
# How long a terminating apiserver gives in-flight requests (exec or log streams included) before it cuts them.
SHUTDOWN_TIMEOUT = 3.0
VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kubesim", "gitCommit": "kubesim",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python",
           "compiler": "cpython", "platform": "linux/amd64"}
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = ("application/merge-patch+json", "application/json-patch+json", "application/strategic-merge-patch+json",
               "application/apply-patch+yaml")
SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale"), "binding": ("", "v1", "Binding"),
                     "finalize": ("", "v1", "Namespace"), "exec": ("", "v1", "PodExecOptions"),
                     "attach": ("", "v1", "PodAttachOptions"), "portforward": ("", "v1", "PodPortForwardOptions"),
                     "token": ("authentication.k8s.io", "v1", "TokenRequest")}
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
                     "binding": ["create"], "log": ["get"], "finalize": ["update"], "exec": ["create", "get"],
                     "attach": ["create", "get"], "portforward": ["create", "get"], "token": ["create"],
                     "ephemeralcontainers": ["get", "patch", "update"]}
STREAM_SUBRESOURCES = ("exec", "attach", "portforward")
#: /api/v1/nodes/NAME/proxy[/PATH]: the node's kubelet API (upstream's NodeProxyOptions connect REST)
NODE_PROXY = re.compile(r"/api/v1/nodes/(?P<node>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/proxy(?P<path>/.*)?")
#: upstream's verbs of a connect request by method (nodes/proxy's discovery verbs)
NODE_PROXY_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}

class UnknownFields(Protocol):
    """unknown_fields(kind, obj, prune=...) -> JSON paths of fields the kind does not have; with prune they are
    also removed from obj."""

    def __call__(self, kind: str, obj: dict[str, Any], *, prune: bool = False) -> list[str]: ...


def _no_unknown_fields(kind: str, obj: dict[str, Any], *, prune: bool = False) -> list[str]:
    return []


@dataclass
class Target:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_target(path: str, custom: Catalog | None = None) -> Target | tuple[str, str] | None:
    """A resource request, or (group, version) for a discovery request, or None if not ours. `custom` is the
    catalog of custom resources served besides the built-in table."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None

    def lookup(plural: str) -> Resource | None:
        found = BY_PATH.get((group, version, plural))
        return found if found is not None or custom is None else custom.lookup(group, version, plural)

    if not rest:
        served = any(r.group == group and r.version == version for r in RESOURCES) or \
            (custom is not None and version in custom.group_versions().get(group, []))
        return (group, version) if served else None
    namespace = None
    scoped = lookup(rest[2]) if rest[0] == "namespaces" and len(rest) >= 3 else None
    if scoped is not None:
        if not scoped.namespaced:
            return None  # a cluster-scoped resource has no path under a namespace (upstream: 404)
        namespace, rest = rest[1], rest[2:]
    resource = lookup(rest[0])
    if resource is None or len(rest) > 3 or (resource.namespaced and namespace is None and len(rest) > 1):
        return None
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and subresource not in resource.subresources:
        return None
    return Target(resource, namespace, name, subresource)


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _warning(text: str) -> str:
    """An RFC 7234 Warning header value; the text is JSON-escaped, so field names from the client can never
    smuggle a line break or control character into the response headers."""
    return f"299 - {json.dumps(text, ensure_ascii=True)}"


def _json(body: Any, status: int = 200, headers: CIMultiDict[str] | dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


class APIServer:
    def __init__(self, registry: Registry, authenticator: TokenAuthenticator, *,
                 unknown_fields: UnknownFields | None = None, openapi: Callable[[str], Any] | None = None,
                 advertise_address: str = "127.0.0.1", port: int = 6443, bookmark_interval: float = 15.0,
                 kubelets: KubeletProxy | None = None, service_accounts: TokenIssuer | None = None,
                 metrics_server: metricsapi.MetricsServerConfig | None = None):
        self.registry = registry
        self.authenticator = authenticator
        self.unknown_fields: UnknownFields = unknown_fields or _no_unknown_fields
        self.openapi = openapi
        self.advertise_address = advertise_address
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.kubelets = kubelets
        # metrics.k8s.io (metricsapi.py): proxied to the metrics-server registered for it, else served here
        # when the kubelets can be reached
        self.metrics_proxy = metricsapi.MetricsProxy(metrics_server) if metrics_server is not None else None
        self.metrics = metricsapi.MetricsAPI(metricsapi.RegistryLister(registry), kubelets.context) \
            if metrics_server is None and kubelets is not None and kubelets.context is not None else None
        # kube-apiserver's --service-account-signing-key-file: TokenRequest, and the tokens it issued authenticate
        self.service_accounts = service_accounts
        self.token_authenticator = ServiceAccountAuthenticator(service_accounts, self._cached) \
            if service_accounts is not None else None
        self.ready = False
        self._node_graph: NodeGraph | None = None
        # RBAC decides on the watch caches' view of the RBAC objects, never a store read per request.
        self.authorizer = Authorizer(self.node_graph, RuleResolver(RBACIndex(registry.caches)))

    def node_graph(self) -> NodeGraph:
        """The Node authorizer's graph, built from the pods cache on first use (the registry has started
        by the time a request arrives) and kept current by the cache from then on."""
        if self._node_graph is None:
            self._node_graph = NodeGraph.of(self.registry.caches["pods"],
                                            self.registry.caches.get("persistentvolumeclaims"))
        return self._node_graph

    def _cached(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as the watch cache has it (what the token authenticator checks a binding against)."""
        res = next(r for r in RESOURCES if r.group == "" and r.plural == plural)
        return self.registry.caches[plural].objects.get(res.key(namespace, name))

    def authenticate(self, authorization: str | None) -> User | None:
        """The static tokens first, then the ServiceAccount tokens (upstream's union authenticator)."""
        user = self.authenticator.authenticate(authorization)
        if user is None and self.token_authenticator is not None:
            user = self.token_authenticator.authenticate(authorization)
        return user

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors_middleware])
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def runner(self, header_read_timeout: float = HEADER_READ_TIMEOUT) -> web.AppRunner:
        """The runner to serve app() with: slow or idle clients are cut off after header_read_timeout seconds."""
        return web.AppRunner(self.app(), access_log=None, handler_cancellation=True,
                             keepalive_timeout=header_read_timeout, shutdown_timeout=SHUTDOWN_TIMEOUT)

    @web.middleware
    async def _errors_middleware(self, request: web.Request,
                                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            if request.method == "CONNECT":
                # aiohttp reads CONNECT's target as an authority (no path), which no route matches; and no
                # resource here has a CONNECT-method subresource (exec and attach are upgraded GET / POST).
                raise errors.method_not_allowed()
            return await handler(request)
        except APIError as exc:
            return _json(exc.status(), exc.code)
        except web.HTTPRequestEntityTooLarge:
            return _json(errors.too_large(MAX_BODY).status(), 413)
        except web.HTTPException as exc:  # aiohttp's own refusals, as Status objects
            if exc.status >= 500:
                raise
            return _json(APIError(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason).status(),
                         exc.status)
        except ValueTooLargeError as exc:
            return _json(errors.object_too_large(exc.size, exc.limit).status(), 413)
        except RecursionError:  # a last line of defence: bodies are depth-checked when decoded
            return _json(errors.bad_request("the request is nested too deeply").status(), 400)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must never take the server down: answer 500 and log it
            log.exception("internal error serving %s %s", request.method, request.path)
            return _json(errors.internal(type(exc).__name__).status(), 500)

    # -- entry ----------------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        user = self.authenticate(request.headers.get("Authorization"))
        if path in PUBLIC_PATHS:
            return self._public(path)
        if user is None:
            raise errors.unauthorized()
        acting_as = impersonate(user, request.headers, self.authorizer)
        if acting_as is not None:
            # From here on the request is the impersonated user's: authorized and answered as them, and the
            # Impersonate-* headers go no further (upstream's filter deletes them before the handler runs).
            user, request = acting_as, request.clone(headers=without_impersonation(request.headers))
        if path in ("/api", "/apis") or path.startswith("/openapi"):
            self._authorize_path(user, request.method, request.path)
            return self._discovery_root(path, request.headers.get("Accept", ""))
        node_proxy = NODE_PROXY.fullmatch(request.path)
        if node_proxy is not None:
            return await self._node_proxy(request, user, node_proxy["node"], node_proxy["path"] or "/")
        if self._serves_metrics and path.split("/")[1:3] == ["apis", metricsapi.GROUP]:
            return await self._metrics(request, user, path)
        group = self._group(path)
        if group is not None:
            self._authorize_path(user, request.method, request.path)
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        target = parse_target(path, self.registry.custom)
        if target is None:
            raise errors.no_route()
        if isinstance(target, tuple):
            self._authorize_path(user, request.method, request.path)
            return _json(self._resource_list(*target))
        return await self._resource(request, user, target)

    def _authorize_path(self, user: User, method: str, path: str) -> None:
        """A non-resource request: the verb is the lower-cased method (system:discovery grants get)."""
        verb = method.lower()
        if not self.authorizer.authorize(Attributes(user, verb, "", "", path=path)).allowed:
            raise APIError(403, "Forbidden", f'forbidden: User "{user.name}" cannot {verb} path "{path}"')

    async def _metrics(self, request: web.Request, user: User, path: str) -> web.Response:
        """metrics.k8s.io: its discovery, and get / list of NodeMetrics and PodMetrics (metricsapi.py)."""
        parts = path.split("/")[3:]
        if len(parts) <= 1:
            self._authorize_path(user, request.method, request.path)
            if self.metrics_proxy is not None:
                return await self.metrics_proxy.forward(user, path, request.query, request.headers)
            if not parts:
                return _json({"kind": "APIGroup", "apiVersion": "v1", **metricsapi.api_group()})
            if parts[0] == metricsapi.VERSION:
                return _json(metricsapi.resource_list())
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        found = metricsapi.parse_path(parts[1:]) if parts[0] == metricsapi.VERSION else None
        if found is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        plural, namespace, name = found
        if request.method != "GET" or _bool(request.query.get("watch")):
            raise errors.method_not_allowed()
        verb = "get" if name else "list"
        decision = self.authorizer.authorize(Attributes(user, verb, metricsapi.GROUP, plural, None, namespace, name))
        if not decision.allowed:
            raise errors.forbidden(user.name, verb, metricsapi.GROUP, plural, namespace, name, None, decision.reason)
        parse_label_selector(request.query.get("labelSelector"))  # 400 for one that does not parse
        if self.metrics_proxy is not None:
            return await self.metrics_proxy.forward(user, path, request.query, request.headers)
        try:
            body = await self.metrics_api.serve(plural, namespace, name, request.query.get("labelSelector"))
        except metricsapi.MetricsNotFound as exc:
            raise errors.not_found(metricsapi.GROUP, exc.plural, exc.name) from None
        if _wants_table(request.headers.get("Accept", "")):
            return _json(metricsapi.as_table(body, request.query.get("includeObject", "Metadata")))
        return _json(body)

    @property
    def _serves_metrics(self) -> bool:
        return self.metrics is not None or self.metrics_proxy is not None

    @property
    def metrics_api(self) -> metricsapi.MetricsAPI:
        assert self.metrics is not None  # dispatch routes here only when it is served
        return self.metrics

    def _public(self, path: str) -> web.Response:
        if path == "/version":
            return _json(VERSION)
        if path == "/readyz" and not self.ready:
            return web.Response(text="[-]informer-sync failed: not ready\nreadyz check failed", status=500)
        return web.Response(text="ok", content_type="text/plain")

    # -- discovery ------------------------------------------------------------------------------------

    def _discovery_root(self, path: str, accept: str = "") -> web.Response:
        if path == "/api":
            return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.advertise_address}:{self.port}"}]})
        if path == "/apis":
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        if self.openapi is not None:
            # client-go asks /openapi/v2 for protobuf only: the seam serves that form, as bytes, at PATH.pb.
            protobuf = "protobuf" in accept and "json" not in accept and "*/*" not in accept
            document = crd_openapi.document(self.openapi, self.registry.custom, f"{path}.pb" if protobuf else path)
            if isinstance(document, bytes):
                return web.Response(body=document, headers={
                    "Content-Type": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"})
            if protobuf:
                raise errors.not_acceptable(accept)
            if document is not None:
                return _json(document)
        raise errors.no_route()

    def _groups(self) -> list[dict[str, Any]]:
        """The named groups: the built-in ones, then the custom resources' (versions in priority order)."""
        groups = []
        custom = self.registry.custom.group_versions()
        for group, versions in [*group_versions().items(), *((g, sorted_versions(v)) for g, v in custom.items()
                                                             if g not in group_versions())]:
            listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": listed, "preferredVersion": listed[0]})
        if self._serves_metrics:
            groups.append(metricsapi.api_group())
        return groups

    def _group(self, path: str) -> dict[str, Any] | None:
        """/apis/GROUP: that group's APIGroup, or None if the path is not one."""
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] != "apis":
            return None
        found = next((g for g in self._groups() if g["name"] == parts[1]), None)
        if found is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return found

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for r in [*RESOURCES, *self.registry.custom.resources()]:
            if r.group != group or r.version != version:
                continue
            entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                     "kind": r.kind, "verbs": list(r.verbs)}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            resources.append(entry)
            for sub in r.subresources:
                sub_group, sub_version, sub_kind = SUBRESOURCE_KINDS.get(sub, (r.group, r.version, r.kind))
                sub_entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "",
                                             "namespaced": r.namespaced, "kind": sub_kind,
                                             "verbs": SUBRESOURCE_VERBS[sub]}
                if sub_group != r.group or sub_version != r.version:
                    sub_entry.update(group=sub_group, version=sub_version)
                resources.append(sub_entry)
        group_version = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    # -- resources ------------------------------------------------------------------------------------

    async def _resource(self, request: web.Request, user: User, target: Target) -> web.StreamResponse:
        res, ns, name, sub = target.resource, target.namespace, target.name, target.subresource
        method = request.method
        query = request.query
        if sub in STREAM_SUBRESOURCES and name and ns is not None and method in ("GET", "POST"):
            return await self._stream(request, user, target)
        watching = _bool(query.get("watch"))
        verb = {
            "GET": "watch" if watching else ("get" if name else "list"),
            "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method)
        if verb is None or (method == "POST" and name and sub not in ("binding", "token")) or \
                (method in ("PUT", "PATCH") and not name) or (method == "POST" and not name and sub) or \
                (res.namespaced and ns is None and method != "GET") or (sub is None and verb not in res.verbs):
            # Namespaced objects are written only through their namespace's path; a verb a resource does not serve
            # (as discovery lists them: no deletecollection of namespaces) has no route upstream, so 405.
            raise errors.method_not_allowed()
        field_selector = query.get("fieldSelector")
        decision = self.authorizer.authorize(Attributes(
            user, verb, res.group, res.plural, sub, ns, request_name(verb, name, field_selector, res.plural),
            field_selector))
        if not decision.allowed:
            raise errors.forbidden(user.name, verb, res.group, res.plural, ns, name, sub, decision.reason)
        if verb == "create" and self.registry.custom.refuses_create(res):
            raise errors.method_not_allowed(f'create is not supported on resources of kind "{res.plural}.{res.group}"'
                                            " while its CustomResourceDefinition is being deleted")
        admit = compose(admission_for(user, verb, res, sub), escalation_check(self.authorizer, user, res, ns))
        if res.kind in REVIEW_KINDS:  # POST only (their one verb is create): answered, never stored
            raw = await self._read_body(request)
            # SelfSubjectReview has no spec: nothing in its body changes the answer, so it is not decoded (kubectl
            # 1.33 sends it as protobuf, whose UserInfo.extra map the decoder does not model).
            review = {} if res.kind == "SelfSubjectReview" else await self._decode_body(request, raw)
            self._check_kind(res, review)
            return _json(answer(res.kind, res.api_version, review, user, ns, self.authenticator, self.authorizer),
                         201)

        if method == "GET":
            if sub == "log":
                await self.registry.get(res, ns, name or "")
                return await self._kubelets(ns or "", name or "", "logs").logs(request, ns or "", name or "")
            if watching or (name is None and _bool(query.get("watch"))):
                return await self._watch(request, target)
            if name is None:
                listed = await self.registry.list_objects(res, ns, self._list_options(query))
                return self._respond(request, res, listed, listing=True)
            obj = await self.registry.get(res, ns, name)
            if sub == "scale":
                return _json(self.registry.scale_of(res, obj))
            return self._respond(request, res, obj)

        if method == "DELETE":
            options = await self._delete_options(request)
            if name is None:
                result = await self.registry.delete_collection(res, ns, self._list_options(query), options)
            else:
                result = await self.registry.delete(res, ns, name, options, admit=admit)
            return _json(result)

        body_bytes = await self._read_body(request)
        dry_run = query.get("dryRun") == "All"
        mode = self._field_validation(query.get("fieldValidation"))
        warnings: list[str] = []
        if method == "PATCH":
            content_type = request.content_type
            if content_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(content_type)
            if content_type == "application/strategic-merge-patch+json" and isinstance(res, CustomResource):
                # Custom resources have no patch strategies: upstream takes only JSON and merge patches for them.
                raise errors.unsupported_media_type(f"{content_type} (custom resources take "
                                                    "application/merge-patch+json or application/json-patch+json)")
            if content_type == APPLY_PATCH:
                return await self._apply(request, target, body_bytes, dry_run=dry_run, mode=mode, admit=admit)
            if query.get("force") is not None:
                raise _options_invalid("PatchOptions", "force", "FieldValueForbidden",
                                       "Forbidden: may not be specified for non-apply patch")
            await self._decode(decode_json, body_bytes)  # refuses deep or malformed bodies before any merge
            kind = "Scale" if sub == "scale" else res.kind
            tracking = Tracking(self._manager(request, "PatchOptions"), sub or "")

            def patched(obj: dict[str, Any]) -> dict[str, Any]:
                result = self.registry.patcher(obj, body_bytes, content_type, kind)
                warnings[:] = self._check_fields(kind, result, mode, res if sub != "scale" else None)
                return result

            if sub == "scale":
                result = await self.registry.update_scale(res, ns or "", name or "", patched, tracking=tracking)
                return _json(result, 200, self._warning_headers(warnings))
            done = await self.registry.patch(res, ns, name or "", body_bytes, content_type, subresource=sub,
                                             admit=admit, patcher=patched, tracking=tracking, dry_run=dry_run)
            return _json(done, 200, self._warning_headers(warnings))

        body = await self._decode_body(request, body_bytes)
        if method == "POST" and sub == "binding":
            return _json(await self.registry.bind(ns or "", name or "", body), 201)
        if method == "POST" and sub == "token":
            return _json(await self._token_request(user, ns or "", name or "", body), 201)
        warnings = self._check_fields(res.kind if sub != "scale" else "Scale", body, mode,
                                      res if sub != "scale" else None)
        headers = self._warning_headers(warnings)
        if method == "POST":
            self._check_kind(res, body)
            created = await self.registry.create(res, ns, body, dry_run=dry_run, admit=admit,
                                                 tracking=Tracking(self._manager(request, "CreateOptions")))
            return _json(created, 201, headers)
        tracking = Tracking(self._manager(request, "UpdateOptions"), sub or "")
        # PUT
        if sub == "scale":
            self._check_types("Scale", body)
            scale_meta = body.get("metadata")
            precondition = scale_meta.get("resourceVersion") if isinstance(scale_meta, dict) else None
            return _json(await self.registry.update_scale(res, ns or "", name or "", lambda scale: body,
                                                          precondition or None, tracking=tracking), 200, headers)
        if sub == "finalize":
            return _json(await self.registry.finalize_namespace(name or "", body), 200, headers)
        self._check_kind(res, body)
        return _json(await self.registry.update(res, ns, name or "", body, subresource=sub, admit=admit,
                                                tracking=tracking), 200, headers)

    @staticmethod
    def _manager(request: web.Request, options: str) -> str:
        """The write's field manager: ?fieldManager=, else the User-Agent's product, as upstream."""
        manager = request.query.get("fieldManager") or ""
        _check_manager(manager, options)
        return manager or ssa.manager_from_user_agent(request.headers.get("User-Agent", ""))

    async def _apply(self, request: web.Request, target: Target, body: bytes, *, dry_run: bool, mode: str,
                     admit: Any) -> web.Response:
        """PATCH application/apply-patch+yaml: server-side apply, creating the object when it is missing."""
        res, ns, name, sub = target.resource, target.namespace, target.name or "", target.subresource
        if sub not in (None, "status", "scale"):
            raise errors.method_not_allowed()
        manager = request.query.get("fieldManager") or ""
        if not manager:
            raise _options_invalid("PatchOptions", "fieldManager", "FieldValueRequired",
                                   "Required value: is required for apply patch")
        _check_manager(manager, "PatchOptions")
        force = _bool(request.query.get("force"))
        config = await self._decode(decode_yaml, body)
        if sub == "scale":
            config = _scale_config(res, config, name)
        scope = ssa.Scope(res.kind, res.api_version, res.status_subresource, sub or "")
        ssa.check_config(config, scope, name)
        warnings = self._check_fields(res.kind, config, mode)

        def applied(obj: dict[str, Any] | None) -> dict[str, Any]:
            return ssa.apply(obj, config, manager=manager, force=force, scope=scope, clock=self.registry.clock)

        headers = self._warning_headers(warnings)
        for _ in range(2):
            try:
                done = await self.registry.patch(res, ns, name, body, APPLY_PATCH, admit=admit, patcher=applied,
                                                 subresource="status" if sub == "status" else None,
                                                 dry_run=dry_run)
                return _json(done, 200, headers)
            except APIError as exc:
                if exc.code != 404 or sub is not None:
                    raise
            # Apply creates what does not exist yet (upstream's forceAllowCreate for apply patches); when another
            # request created it meanwhile, apply to that one.
            try:
                return _json(await self.registry.create(res, ns, applied(None), dry_run=dry_run, admit=admit), 201,
                             headers)
            except APIError as exc:
                if exc.reason != "AlreadyExists":
                    raise
        raise errors.conflict(res.group, res.plural, name, "created and deleted concurrently; try again")

    async def _token_request(self, user: User, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """serviceaccounts/NAME/token: a TokenRequest answered with a signed token. A node may only ask for
        tokens bound to pods it runs (upstream's NodeRestriction)."""
        if self.service_accounts is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource (serviceaccounts/token "
                           "needs the apiserver's --service-account-signing-key-file)")
        if body.get("kind") not in (None, "TokenRequest"):
            raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind "
                                     "(TokenRequest)")
        account = await self.registry.get(BY_PATH[("", "v1", "serviceaccounts")], namespace, name)
        node = user.node_name
        if node is not None:
            spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
            ref = (spec or {}).get("boundObjectRef") or {}
            bound = self._cached("pods", namespace, str(ref.get("name") or "")) if isinstance(ref, dict) else None
            if bound is None or (bound.get("spec") or {}).get("nodeName") != node:
                raise errors.forbidden(user.name, "create", "", "serviceaccounts", namespace, name, "token",
                                       "node requested token not bound to a pod scheduled on this node")
        return token_request(self.service_accounts, body, account, self._cached)

    @staticmethod
    def _check_types(kind: str, body: dict[str, Any]) -> None:
        problem = type_error(kind, body)
        if problem:
            raise errors.bad_request(problem)

    @staticmethod
    def _warning_headers(warnings: list[str]) -> CIMultiDict[str] | None:
        """One Warning header per unknown field, as upstream sends them."""
        if not warnings:
            return None
        return CIMultiDict(("Warning", _warning(f'unknown field "{w}"')) for w in warnings)

    @staticmethod
    def _check_kind(res: Resource, body: dict[str, Any]) -> None:
        if body.get("apiVersion") not in (None, res.api_version):
            raise errors.bad_request(f"the API version in the data ({body['apiVersion']}) does not match the expected "
                                     f"API version ({res.api_version})")
        if body.get("kind") not in (None, res.kind):
            raise errors.bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind "
                                     f"({res.kind})")

    @staticmethod
    def _field_validation(mode: str | None) -> str:
        if mode not in (None, "", "Strict", "Warn", "Ignore"):
            raise errors.bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", '
                                     '"Strict", "Warn"')
        return mode or "Warn"

    def _check_fields(self, kind: str, body: dict[str, Any], mode: str, res: Resource | None = None) -> list[str]:
        """Unknown fields are dropped from body, as Go's decoding drops them; fieldValidation Strict refuses them
        (400), Warn (the default) returns them for Warning headers, Ignore drops them silently. A custom
        resource's unknown fields are those its schema prunes."""
        if isinstance(res, CustomResource):
            pruned = crd_hooks.prune(res, body)
            if mode == "Strict" and pruned:
                raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"'
                                                                              for u in pruned))
            return pruned if mode == "Warn" else []
        if mode == "Strict":
            unknown = self.unknown_fields(kind, body)
            if unknown:
                raise errors.bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"'
                                                                              for u in unknown))
            return []
        unknown = self.unknown_fields(kind, body, prune=True)
        return unknown if mode == "Warn" else []

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        return await request.read()

    @staticmethod
    async def _decode(decoder: Callable[[bytes], Any], raw: bytes) -> Any:
        """decoder(raw), in a worker thread when raw is large (see THREAD_DECODE_BYTES); BodyError becomes 400."""
        try:
            if len(raw) > THREAD_DECODE_BYTES:
                return await asyncio.to_thread(decoder, raw)
            return decoder(raw)
        except BodyError as exc:
            raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from None

    async def _decode_body(self, request: web.Request, raw: bytes) -> dict[str, Any]:
        content_type = request.content_type
        decoder: Callable[[bytes], Any]
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            decoder = decode_yaml
        elif content_type in ("application/json", "application/octet-stream", "", "text/plain"):
            decoder = decode_json
        elif content_type == PROTOBUF:
            decoder = _decode_protobuf_checked  # raises APIError (400) itself when malformed
        else:
            raise errors.unsupported_media_type(content_type)
        body = await self._decode(decoder, raw)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        return body

    @staticmethod
    def _list_options(query: Any) -> ListOptions:
        _check_resource_version(query.get("resourceVersion"), query.get("resourceVersionMatch"),
                                query.get("continue"))
        limit = query.get("limit", "0")
        try:
            limit_value = int(limit)
            if not -(2**63) <= limit_value < 2**63:
                raise ValueError
        except ValueError:
            raise errors.bad_request(f"limit: Invalid value: {limit!r}: must be a 64-bit integer") from None
        return ListOptions(label_selector=query.get("labelSelector"), field_selector=query.get("fieldSelector"),
                           limit=limit_value, continue_token=query.get("continue") or None,
                           resource_version=query.get("resourceVersion"),
                           resource_version_match=query.get("resourceVersionMatch"))

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        query = request.query
        body: dict[str, Any] = {}
        raw = await self._read_body(request)
        if raw.strip():
            body = await self._decode_body(request, raw)
            _check_delete_options(body)
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        try:
            grace_value = int(grace) if grace is not None else None
        except (TypeError, ValueError):
            raise errors.bad_request(f"gracePeriodSeconds: Invalid value: {grace!r}") from None
        policy = body.get("propagationPolicy", query.get("propagationPolicy"))
        if policy is None and body.get("orphanDependents") is not None:
            policy = "Orphan" if body["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                     '"Foreground", "Background", "Orphan"')
        pre = body.get("preconditions") or {}
        return DeleteOptions(grace_value, policy, pre.get("uid"), pre.get("resourceVersion"))

    def _respond(self, request: web.Request, res: Resource, body: dict[str, Any], *, listing: bool = False
                 ) -> web.Response:
        if _wants_table(request.headers.get("Accept", "")):
            objects = body["items"] if listing else [body]
            meta = body["metadata"] if listing else {"resourceVersion": body["metadata"].get("resourceVersion", "")}
            return _json(_table(res, objects, meta, request.query.get("includeObject", "Metadata")))
        return _json(body)

    def _kubelets(self, namespace: str, name: str, what: str) -> KubeletProxy:
        if self.kubelets is None:
            raise APIError(503, "ServiceUnavailable", f"{what} of pod {namespace}/{name} are not available: no "
                                                      "kubelet connection")
        return self.kubelets

    async def _node_proxy(self, request: web.Request, user: User, node: str, path: str) -> web.StreamResponse:
        """/api/v1/nodes/NODE/proxy/PATH to the node's kubelet API, authorized as upstream's node proxy: the
        verb of the method on the `proxy` subresource of `nodes` named NODE (RBAC's nodes/proxy)."""
        verb = NODE_PROXY_VERBS.get(request.method)
        if verb is None:
            raise errors.method_not_allowed()
        decision = self.authorizer.authorize(Attributes(user, verb, "", "nodes", "proxy", None, node, None))
        if not decision.allowed:
            raise errors.forbidden(user.name, verb, "", "nodes", None, node, "proxy", decision.reason)
        await self.registry.get(BY_KIND["Node"], None, node)  # 404 nodes "NODE" not found
        if self.kubelets is None:
            raise APIError(503, "ServiceUnavailable", f"nodes/{node}/proxy is not available: no kubelet connection")
        return await self.kubelets.node_proxy(request, node, path)

    async def _stream(self, request: web.Request, user: User, target: Target) -> web.StreamResponse:
        """exec / attach / portforward: `create` on the subresource whatever the method, as upstream authorizes a
        WebSocket's GET upgrade since 1.31 (AuthorizePodWebsocketUpgradeCreatePermission)."""
        res, ns, name, sub = target.resource, target.namespace or "", target.name or "", target.subresource or ""
        decision = self.authorizer.authorize(Attributes(user, "create", res.group, res.plural, sub, ns, name, None))
        if not decision.allowed:
            raise errors.forbidden(user.name, "create", res.group, res.plural, ns, name, sub, decision.reason)
        await self.registry.get(res, ns, name)
        return await self._kubelets(ns, name, sub).stream(request, ns, name, sub)

    # -- watch ----------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        res, query = target.resource, request.query
        field_selector = query.get("fieldSelector")
        if target.name:  # the deprecated GET .../NAME?watch=1 form
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={target.name}"]))
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(field_selector, res.plural)
        namespace = target.namespace

        def accepts(obj: dict[str, Any]) -> bool:
            if namespace and obj.get("metadata", {}).get("namespace") != namespace:
                return False
            return labels_match(labels, obj) and fields_match(fields, obj, res.plural)

        rv = query.get("resourceVersion") or ""
        send_initial = query.get("sendInitialEvents")
        if send_initial is not None and (not _bool(query.get("allowWatchBookmarks")) or
                                         query.get("resourceVersionMatch") != "NotOlderThan"):
            raise errors.invalid("", "ListOptions", "", [{
                "reason": "FieldValueForbidden", "field": "sendInitialEvents",
                "message": "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is "
                           "enabled and resourceVersionMatch is NotOlderThan with allowWatchBookmarks"}])
        timeout = _watch_timeout(query.get("timeoutSeconds"))
        _check_resource_version(rv, None, None)
        start = int(rv) if rv not in ("", "0") else None
        initial_wanted = start is None or _bool(send_initial)

        cache = self.registry.caches[res.cache_key]
        # A custom resource's events are shown at the version watched, with its defaults (they are stored at the
        # storage version); built-in objects go out as the cache encoded them.
        served = res.from_storage if isinstance(res, CustomResource) else None
        feeder: asyncio.Task[None] | None = None
        if start is None or _bool(send_initial):
            # With sendInitialEvents and a resourceVersion, any state not older than it will do: the current one.
            watcher, initial = cache.watch(None, accepts)
        elif cache.covers(start):
            watcher, initial = cache.watch(start, accepts)
        else:
            watcher, initial = Watcher(start, accepts), []
            feeder = asyncio.get_running_loop().create_task(self._feed_from_store(res, start, watcher))

        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        as_table = _wants_table(request.headers.get("Accept", ""))
        bookmarks = _bool(query.get("allowWatchBookmarks"))
        last = start or cache.revision

        def line(kind: str, obj: dict[str, Any]) -> bytes:
            if served is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = served(obj)
            if as_table and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = _table(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                             query.get("includeObject", "Metadata"))
            return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"

        async def send(kind: str, obj: dict[str, Any]) -> None:
            await response.write(line(kind, obj))

        def event_line(event: WatchEvent) -> bytes:
            as_is = not as_table and served is None and event.type != "ERROR"
            return event.line if as_is else line(event.type, event.object)

        def bookmark(initial_end: bool = False) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(max(last, cache.revision if feeder is None else last))}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}

        deadline = time.monotonic() + timeout
        try:
            for chunk in _chunks(line("ADDED", obj) for obj in (initial if initial_wanted else [])):
                await response.write(chunk)
            if _bool(send_initial):
                await send("BOOKMARK", bookmark(initial_end=True))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event: WatchEvent | None
                if watcher.queue.empty():
                    wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                    try:
                        event = await asyncio.wait_for(watcher.queue.get(), wait)
                    except TimeoutError:
                        if bookmarks and time.monotonic() < deadline:
                            await send("BOOKMARK", bookmark())
                        continue
                else:
                    event = watcher.queue.get_nowait()
                if event is not None and event.type != "ERROR" and watcher.queue.empty():
                    last = event.revision  # the usual case when not loaded: one event
                    await response.write(event_line(event))
                    continue
                batch, ended = take_batch(event, watcher.queue)
                if batch:
                    last = max([last, *(e.revision for e in batch if e.type != "ERROR")])
                    await response.write(b"".join([event_line(e) for e in batch]))
                if ended:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cache.unwatch(watcher)
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeder
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _feed_from_store(self, res: Resource, start: int, watcher: Watcher) -> None:
        """A resume from before the cache's window: replay from the store's history, or 410 Expired."""
        try:
            watch = await self.registry.store.watch(res.key_prefix(), start_revision=start + 1)
            async with watch:
                async for event in watch:
                    watcher.offer(convert(event))
        except CompactedError as exc:
            status = errors.expired(f"too old resource version: {start} ({getattr(exc, 'compacted', start + 1)})")
            watcher.queue.put_nowait(WatchEvent("ERROR", status.status(), None, 0))


def take_batch(first: WatchEvent | None, queue: asyncio.Queue[WatchEvent | None],
               limit: int = WATCH_BATCH_BYTES) -> tuple[list[WatchEvent], bool]:
    """FIRST and the events already queued behind it, in order, until their lines reach LIMIT bytes; and
    whether the watch ends with them (the queue's end, None, which is not returned, or an ERROR event, which
    is returned last). Nothing waits: under a burst the batch is what piled up meanwhile, when idle one event."""
    batch: list[WatchEvent] = []
    size = 0
    event = first
    while event is not None:
        batch.append(event)
        if event.type == "ERROR":
            return batch, True
        size += len(event.line)
        if size >= limit or queue.empty():
            return batch, False
        event = queue.get_nowait()
    return batch, True


def _chunks(lines: Iterable[bytes], limit: int = WATCH_BATCH_BYTES) -> Iterator[bytes]:
    """LINES joined into writes of about LIMIT bytes (a watch's initial ADDED events, sent as one burst)."""
    pending: list[bytes] = []
    size = 0
    for item in lines:
        pending.append(item)
        size += len(item)
        if size >= limit:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _table(res: Resource, objects: list[dict[str, Any]], meta: dict[str, Any], include: str) -> dict[str, Any]:
    custom = crd_hooks.to_table(res, objects, meta, include)
    return custom if custom is not None else tables.to_table(res.plural, objects, meta, include)


# DeleteOptions' fields (meta/v1 types.go) and the checks of Go's decoding on them.
_DELETE_OPTION_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "gracePeriodSeconds": ("int64", lambda v: isinstance(v, int) and not isinstance(v, bool) and
                           -(2**63) <= v < 2**63),
    "preconditions": ("v1.Preconditions", lambda v: isinstance(v, dict)),
    "orphanDependents": ("bool", lambda v: isinstance(v, bool)),
    "propagationPolicy": ("v1.DeletionPropagation", lambda v: isinstance(v, str)),
    "dryRun": ("[]string", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "preconditions.uid": ("types.UID", lambda v: isinstance(v, str)),
    "preconditions.resourceVersion": ("string", lambda v: isinstance(v, str)),
}


def _options_invalid(kind: str, field: str, reason: str, text: str) -> APIError:
    """422 for a bad query option, as upstream words it: PatchOptions.meta.k8s.io "" is invalid: ..."""
    return APIError(422, "Invalid", f'{kind}.meta.k8s.io "" is invalid: {field}: {text}',
                    {"group": "meta.k8s.io", "kind": kind,
                     "causes": [{"reason": reason, "message": text, "field": field}]})


def _check_manager(manager: str, options: str) -> None:
    # upstream's ValidateFieldManager
    if len(manager) > MAX_MANAGER_LENGTH:
        raise _options_invalid(options, "fieldManager", "FieldValueTooLong",
                               f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes")
    for position, char in enumerate(manager):
        if not char.isprintable():
            raise _options_invalid(options, "fieldManager", "FieldValueInvalid",
                                   f"Invalid value: {json.dumps(manager)}: invalid character U+{ord(char):04X} "
                                   f"(at position {position})")


def _scale_config(res: Resource, config: Any, name: str) -> dict[str, Any]:
    """An applied Scale as the parent's configuration: /scale owns the parent's spec.replicas."""
    if not isinstance(config, dict) or config.get("kind") != "Scale" or config.get("apiVersion") != "autoscaling/v1":
        raise errors.bad_request("an apply to /scale takes an autoscaling/v1 Scale")
    meta = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
    spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
    parent: dict[str, Any] = {"apiVersion": res.api_version, "kind": res.kind,
                              "metadata": {k: v for k, v in (meta or {}).items() if k in ("name", "managedFields")}}
    if spec and "replicas" in spec:
        parent["spec"] = {"replicas": spec["replicas"]}
    return parent


def _check_delete_options(body: dict[str, Any]) -> None:
    """A DELETE body of the wrong shape is a 400 in Go's decoding words, never a crash further on."""
    values = dict(body)
    if isinstance(body.get("preconditions"), dict):
        values.update({f"preconditions.{k}": v for k, v in body["preconditions"].items()})
    for field, value in values.items():
        checked = _DELETE_OPTION_TYPES.get(field)
        if checked is None or value is None or checked[1](value):
            continue
        found = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else \
            {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), "value")
        raise errors.bad_request(f"json: cannot unmarshal {found} into Go struct field DeleteOptions.{field} of "
                                 f"type {checked[0]}")


def _decode_protobuf_checked(raw: bytes) -> Any:
    body = decode_protobuf(raw)
    check_depth(body)
    return body


def _watch_timeout(value: str | None) -> float:
    """Seconds a watch lasts: timeoutSeconds clamped to MAX_WATCH_TIMEOUT, or a random time in [MIN_REQUEST_TIMEOUT,
    2 * MIN_REQUEST_TIMEOUT] without one (upstream's ListResource). Fractions are accepted (tests use them);
    NaN and infinities are refused, as they are not numbers a watch can end by."""
    if not value or value == "0":
        return random.uniform(MIN_REQUEST_TIMEOUT, 2 * MIN_REQUEST_TIMEOUT)
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise errors.bad_request(f'timeoutSeconds: Invalid value: "{value}": must be a number of seconds')
    return min(seconds, MAX_WATCH_TIMEOUT)


_RESOURCE_VERSION_MATCHES = ("Exact", "NotOlderThan")


def _check_resource_version(rv: str | None, match: str | None, continue_token: str | None) -> None:
    """resourceVersion is a non-negative integer when given; resourceVersionMatch follows upstream's
    ValidateListOptions (422 naming the field)."""
    if rv and not (rv.isascii() and rv.isdigit()):
        raise errors.bad_request(f"invalid resource version {rv!r}: must be a non-negative integer")
    if not match:
        return
    problems: list[dict[str, Any]] = []
    if match not in _RESOURCE_VERSION_MATCHES:
        problems.append({"reason": "FieldValueNotSupported", "field": "resourceVersionMatch",
                         "message": f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan", ""'})
    else:
        if not rv:
            problems.append({"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                             "message": "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is "
                                        "provided"})
        if continue_token:
            problems.append({"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                             "message": "Forbidden: resourceVersionMatch is forbidden when continue is provided"})
    if match == "Exact" and rv == "0":
        problems.append({"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                         "message": 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'})
    if problems:
        raise errors.invalid("", "ListOptions", "", problems)


__all__ = ["APIServer", "Target", "parse_target"]
