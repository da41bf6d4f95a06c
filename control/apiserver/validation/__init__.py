"""Validation of the built-in kinds, in Kubernetes' words, on defaulted JSON objects.

    validate("Service", svc)              -> [FieldError("FieldValueInvalid", "spec.ports[0].port",
                                              "Invalid value: 70000: must be between 1 and 65535, inclusive")]
    validate_update("Service", new, old)  -> the above, plus what may not change

The rules and messages follow upstream, one module for each of its packages:

    field.py         k8s.io/apimachinery/pkg/util/validation/field/errors.go (how an error reads)
    names.py         k8s.io/apimachinery/pkg/api/validation and meta/v1/validation (metadata, labels, selectors)
    ephemeral.py     pkg/apis/core/validation's ephemeral containers (pods/ephemeralcontainers)
    core.py          pkg/apis/core/validation (pods, services, namespaces, nodes, config maps, endpoints,
                     replication controllers)
    apps.py          pkg/apis/apps/validation (deployments, replica sets, daemon sets, stateful sets,
                     controller revisions)
    batch.py         pkg/apis/batch/validation (jobs, cron jobs)
    discovery.py     pkg/apis/discovery/validation (endpoint slices)
    networking.py    pkg/apis/networking/validation (network policies)
    policy.py        network-policy-api's CRD schemas (admin and baseline admin network policies)
    coordination.py  pkg/apis/coordination/validation (leases)
    storage.py       persistent volumes and claims (core) and storage classes (pkg/apis/storage/validation)
    rbac.py          pkg/apis/rbac/validation (roles, cluster roles and their bindings)

Objects are expected to be defaulted first (defaults.py), as upstream validates after defaulting. Kinds
without rules get name checks only. This module is the package's whole public surface: the per-kind
tables and the two entry points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control.api.validators import is_dns1123_subdomain
from control.apiserver.validation.apps import (
    validate_controller_revision,
    validate_controller_revision_update,
    validate_daemon_set,
    validate_daemon_set_update,
    validate_deployment,
    validate_deployment_update,
    validate_replica_set,
    validate_replica_set_update,
    validate_stateful_set,
    validate_stateful_set_update,
)
from control.apiserver.validation.batch import (
    validate_cron_job,
    validate_cron_job_update,
    validate_job,
    validate_job_update,
)
from control.apiserver.validation.coordination import validate_lease
from control.apiserver.validation.core import (
    validate_config_map,
    validate_config_map_update,
    validate_endpoints,
    validate_namespace,
    validate_node,
    validate_pod_template,
    validate_pod_update,
    validate_replication_controller,
    validate_secret,
    validate_secret_update,
    validate_service,
    validate_service_update,
)
from control.apiserver.validation.discovery import validate_endpoint_slice, validate_endpoint_slice_update
from control.apiserver.validation.ephemeral import validate_ephemeral_containers_update, validate_pod_create
from control.apiserver.validation.field import FieldError, go_value
from control.apiserver.validation.names import NameCheck, validate_object_meta
from control.apiserver.validation.networking import validate_network_policy, validate_network_policy_update
from control.apiserver.validation.policy import validate_admin_network_policy, validate_baseline_admin_network_policy
from control.apiserver.validation.rbac import (
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_cluster_role_binding_update,
    validate_role,
    validate_role_binding,
    validate_role_binding_update,
)
from control.apiserver.validation.storage import (
    validate_persistent_volume,
    validate_persistent_volume_claim,
    validate_persistent_volume_claim_update,
    validate_persistent_volume_update,
    validate_storage_class,
    validate_storage_class_update,
)

__all__ = ["FieldError", "go_value", "validate", "validate_update"]


def _names_only(check: NameCheck) -> Callable[[dict[str, Any]], list[FieldError]]:
    def validate_meta(obj: dict[str, Any]) -> list[FieldError]:
        return validate_object_meta(obj, check)

    return validate_meta


CREATE: dict[str, Callable[[dict[str, Any]], list[FieldError]]] = {
    "Pod": validate_pod_create,
    "Service": validate_service,
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replica_set,
    "ReplicationController": validate_replication_controller,
    "PodTemplate": validate_pod_template,
    "Namespace": validate_namespace,
    "Node": validate_node,
    "ConfigMap": validate_config_map,
    "Secret": validate_secret,
    "Endpoints": validate_endpoints,
    "EndpointSlice": validate_endpoint_slice,
    "Lease": validate_lease,
    "NetworkPolicy": validate_network_policy,
    "AdminNetworkPolicy": validate_admin_network_policy,
    "BaselineAdminNetworkPolicy": validate_baseline_admin_network_policy,
    "Job": validate_job,
    "CronJob": validate_cron_job,
    "DaemonSet": validate_daemon_set,
    "StatefulSet": validate_stateful_set,
    "ControllerRevision": validate_controller_revision,
    "Role": validate_role,
    "ClusterRole": validate_cluster_role,
    "RoleBinding": validate_role_binding,
    "ClusterRoleBinding": validate_cluster_role_binding,
    "PersistentVolume": validate_persistent_volume,
    "PersistentVolumeClaim": validate_persistent_volume_claim,
    "StorageClass": validate_storage_class,
}

UPDATE: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[FieldError]]] = {
    "Pod": validate_pod_update,
    "Service": validate_service_update,
    "Deployment": validate_deployment_update,
    "ReplicaSet": validate_replica_set_update,
    "ConfigMap": validate_config_map_update,
    "Secret": validate_secret_update,
    "EndpointSlice": validate_endpoint_slice_update,
    "NetworkPolicy": validate_network_policy_update,
    "Job": validate_job_update,
    "CronJob": validate_cron_job_update,
    "DaemonSet": validate_daemon_set_update,
    "StatefulSet": validate_stateful_set_update,
    "ControllerRevision": validate_controller_revision_update,
    "RoleBinding": validate_role_binding_update,
    "ClusterRoleBinding": validate_cluster_role_binding_update,
    "PersistentVolume": validate_persistent_volume_update,
    "PersistentVolumeClaim": validate_persistent_volume_claim_update,
    "StorageClass": validate_storage_class_update,
}


def validate(kind: str, obj: dict[str, Any]) -> list[FieldError]:
    """Errors of a new object of `kind` (already defaulted)."""
    return CREATE.get(kind, _names_only(is_dns1123_subdomain))(obj)


#: updates through a subresource with rules of their own (the status subresource has the kind's)
SUBRESOURCE_UPDATE: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, Any]], list[FieldError]]] = {
    ("Pod", "ephemeralcontainers"): validate_ephemeral_containers_update,
}


def validate_update(kind: str, obj: dict[str, Any], old: dict[str, Any], *,
                    subresource: str | None = None) -> list[FieldError]:
    """Errors of an updated object, including changes to what may not change."""
    check = SUBRESOURCE_UPDATE.get((kind, subresource or "")) or UPDATE.get(kind)
    if check is not None:
        return check(obj, old)
    return validate(kind, obj)
