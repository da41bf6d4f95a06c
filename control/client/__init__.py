"""An asyncio Kubernetes API client and informers, speaking only the public API over HTTP(S).

    client = load_kubeconfig("kubeconfig")            # or Client(url, token=..., ca_file=...)
    async with client:
        svc = await client.get(SERVICES, "web", namespace="default")
        page = await client.list(PODS, field_selector="spec.nodeName=node-1", limit=500)
        async with client.watch(SERVICES, resource_version=page["metadata"]["resourceVersion"]) as events:
            async for event in events: ...            # WatchEvent(type, object)
        await client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, namespace="default")
        code = await exec_in_pod(client, "default", "web", ["sh", "-c", "exit 3"])   # 3 (pods/exec)

        informer = Informer(client, ENDPOINT_SLICES, indexers={"service": index_by_label(SERVICE_NAME_LABEL)})
        informer.add_handler(on_add=..., on_update=..., on_delete=...)
        informer.start(); await informer.wait_synced(); ...; await informer.stop()

Exceptions (`KubeClientError` is the root; `ValueError` for arguments that can never be right):

    KubeClientError
    ├── ApiError(status, reason, message, details)   a Kubernetes Status (HTTP error or watch ERROR event)
    │   ├── BadRequest          400
    │   ├── Unauthorized        401  the token was not accepted
    │   ├── Forbidden           403  the identity may not do this
    │   ├── NotFound            404
    │   ├── AlreadyExists       409, reason AlreadyExists (create of a taken name)
    │   ├── Conflict            409, any other reason (stale resourceVersion: re-read and retry)
    │   ├── Gone                410  resourceVersion out of the server's history: relist
    │   │   └── Expired         410, reason Expired
    │   ├── Invalid             422  .causes: [StatusCause(reason, message, field)]
    │   ├── TooManyRequests     429  .retry_after (seconds; already honoured max_retries times)
    │   └── ServerError         5xx
    ├── ApiConnectionError      unreachable, connection broken or timed out (also mid-watch)
    ├── ExecError               an exec session ended without an exit code
    ├── PortForwardError        a port-forward's pod side refused or broke the connection
    ├── ProtocolError           an answer not in the API's shape (not JSON, oversized watch line)
    └── ConfigError             kubeconfig or Client arguments unusable
"""

from __future__ import annotations

from control.client._client import PATCH_CONTENT_TYPES, Client, PatchType, make_ssl_context
from control.client._errors import (
    AlreadyExists,
    ApiConnectionError,
    ApiError,
    BadRequest,
    ConfigError,
    Conflict,
    Expired,
    Forbidden,
    Gone,
    Invalid,
    KubeClientError,
    NotFound,
    ProtocolError,
    ServerError,
    StatusCause,
    TooManyRequests,
    Unauthorized,
    error_from_response,
    error_from_status,
)
from control.client._exec import ExecError, ExecIO, exec_in_pod
from control.client._informer import Backoff, Informer, strip_managed_fields, wait_for_cache_sync
from control.client._kubeconfig import default_kubeconfig_path, load_kubeconfig
from control.client._parsecache import ParseCache
from control.client._portforward import PortForwardError, PortForwardStream, open_port_forward
from control.client._resource import (
    ADMIN_NETWORK_POLICIES,
    BASELINE_ADMIN_NETWORK_POLICIES,
    CONFIG_MAPS,
    CONTROLLER_REVISIONS,
    CRON_JOBS,
    DAEMON_SETS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    ENDPOINTS,
    EVENTS,
    JOBS,
    LEASES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    REPLICA_SETS,
    REPLICATION_CONTROLLERS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    STATEFUL_SETS,
    STORAGE_CLASSES,
    Resource,
    resource_path,
)
from control.client._store import (
    Indexer,
    IndexFunc,
    index_by_field,
    index_by_label,
    index_by_namespace,
    object_key,
)
from control.client._watch import LineSplitter, WatchEvent, WatchStream

#: The label an EndpointSlice carries naming its Service (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

__all__ = [
    "ADMIN_NETWORK_POLICIES",
    "BASELINE_ADMIN_NETWORK_POLICIES",
    "CONFIG_MAPS",
    "CONTROLLER_REVISIONS",
    "CRON_JOBS",
    "DAEMON_SETS",
    "DEPLOYMENTS",
    "ENDPOINTS",
    "ENDPOINT_SLICES",
    "EVENTS",
    "JOBS",
    "LEASES",
    "NAMESPACES",
    "NETWORK_POLICIES",
    "NODES",
    "PATCH_CONTENT_TYPES",
    "PERSISTENT_VOLUMES",
    "PERSISTENT_VOLUME_CLAIMS",
    "PODS",
    "REPLICATION_CONTROLLERS",
    "REPLICA_SETS",
    "SECRETS",
    "SERVICES",
    "SERVICE_ACCOUNTS",
    "SERVICE_NAME_LABEL",
    "STATEFUL_SETS",
    "STORAGE_CLASSES",
    "AlreadyExists",
    "ApiConnectionError",
    "ApiError",
    "Backoff",
    "BadRequest",
    "Client",
    "ConfigError",
    "Conflict",
    "ExecError",
    "ExecIO",
    "Expired",
    "Forbidden",
    "Gone",
    "IndexFunc",
    "Indexer",
    "Informer",
    "Invalid",
    "KubeClientError",
    "LineSplitter",
    "NotFound",
    "ParseCache",
    "PatchType",
    "PortForwardError",
    "PortForwardStream",
    "ProtocolError",
    "Resource",
    "ServerError",
    "StatusCause",
    "TooManyRequests",
    "Unauthorized",
    "WatchEvent",
    "WatchStream",
    "default_kubeconfig_path",
    "error_from_response",
    "error_from_status",
    "exec_in_pod",
    "index_by_field",
    "index_by_label",
    "index_by_namespace",
    "load_kubeconfig",
    "make_ssl_context",
    "object_key",
    "open_port_forward",
    "resource_path",
    "strip_managed_fields",
    "wait_for_cache_sync",
]
