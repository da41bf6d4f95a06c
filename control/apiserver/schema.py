"""The structure of the built-in API types as data, and the strict-decoding check on it.

Each type is a table of JSON field name -> field type, transcribed from upstream's Go types
(staging/src/k8s.io/api/*/types.go, k8s.io/apimachinery/pkg/apis/meta/v1/types.go) and their OpenAPI
rendering (api/openapi-spec/swagger.json). A field type is written as a small string:

    "string" "number" "boolean"                JSON scalars
    "int32" "int64"                             integers of upstream's Go widths (decoding range-checks
                                                them; OpenAPI renders them with that format)
    "IntOrString" "Quantity" "Time" "MicroTime"  upstream's special string-ish types
    "object"                                    free-form JSON (RawExtension, FieldsV1, or a volume
                                                source we do not model field by field)
    "[]T"   "{}T"                              array of T, map of string to T
    "Name"  "pkg.Name"                          another table: looked up in the field's own package,
                                                then core.v1, then meta.v1; or qualified

and an optional patch annotation after a space, as upstream's struct tags carry it:
"@key" = patchStrategy merge with patchMergeKey key, "@" = merge without a key (lists of scalars),
"@key+retainKeys" and "retainKeys". These drive OpenAPI's x-kubernetes-patch-* extensions, which
`kubectl apply` reads to compute strategic merge patches.

    unknown_fields("Pod", pod)  ->  ["spec.containers[0].imagePullPolicyy"]

as kube-apiserver's strict decoding reports them (`unknown field "spec.containers[0].imagePullPolicyy"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["INTEGER_RANGES", "KINDS", "PACKAGES", "PROTOBUF_KINDS",
           "SCALARS", "TYPES", "FieldType", "Kind", "field_type", "resolve",
           "unknown_fields"]

# The inclusive range of each integer type: Go's JSON decoding refuses a number outside it.
INTEGER_RANGES: dict[str, tuple[int, int]] = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

SCALARS = frozenset({"string", *INTEGER_RANGES, "number", "boolean", "IntOrString", "Quantity", "Time", "MicroTime",
                     "object"})

_OBJECT_HEADER = {"apiVersion": "string", "kind": "string", "metadata": "meta.v1.ObjectMeta"}

# Volume sources that real manifests use but we do not model: accepted as free-form objects.
_LEGACY_VOLUME_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "iscsi", "glusterfs", "rbd",
                          "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "azureDisk",
                          "vsphereVolume", "quobyte", "photonPersistentDisk", "portworxVolume", "scaleIO",
                          "storageos", "csi", "ephemeral")

_META: dict[str, dict[str, str]] = {
    "ObjectMeta": {
        "name": "string", "generateName": "string", "namespace": "string", "selfLink": "string", "uid": "string",
        "resourceVersion": "string", "generation": "int64", "creationTimestamp": "Time",
        "deletionTimestamp": "Time", "deletionGracePeriodSeconds": "int64", "labels": "{}string",
        "annotations": "{}string", "ownerReferences": "[]OwnerReference @uid", "finalizers": "[]string @",
        "managedFields": "[]ManagedFieldsEntry",
    },
    "OwnerReference": {"apiVersion": "string", "kind": "string", "name": "string", "uid": "string",
                       "controller": "boolean", "blockOwnerDeletion": "boolean"},
    "ManagedFieldsEntry": {"manager": "string", "operation": "string", "apiVersion": "string", "time": "Time",
                           "fieldsType": "string", "fieldsV1": "object", "subresource": "string"},
    "LabelSelector": {"matchLabels": "{}string", "matchExpressions": "[]LabelSelectorRequirement"},
    "LabelSelectorRequirement": {"key": "string", "operator": "string", "values": "[]string"},
    "FieldSelectorRequirement": {"key": "string", "operator": "string", "values": "[]string"},
    "Condition": {"type": "string", "status": "string", "observedGeneration": "int64",
                  "lastTransitionTime": "Time", "reason": "string", "message": "string"},
}

_PROBE_HANDLERS = {"exec": "ExecAction", "httpGet": "HTTPGetAction", "tcpSocket": "TCPSocketAction",
                   "grpc": "GRPCAction"}
_SECURITY_COMMON = {
    "seLinuxOptions": "SELinuxOptions", "windowsOptions": "WindowsSecurityContextOptions",
    "runAsUser": "int64", "runAsGroup": "int64", "runAsNonRoot": "boolean", "seccompProfile": "SeccompProfile",
    "appArmorProfile": "AppArmorProfile",
}
_CONDITION = {"type": "string", "status": "string", "lastTransitionTime": "Time", "reason": "string",
              "message": "string"}
_STATUS_COUNTS = {"replicas": "int32", "fullyLabeledReplicas": "int32", "readyReplicas": "int32",
                  "availableReplicas": "int32", "observedGeneration": "int64"}

_CORE: dict[str, dict[str, str]] = {
    # -- objects ------------------------------------------------------------------------------------
    "Namespace": {**_OBJECT_HEADER, "spec": "NamespaceSpec", "status": "NamespaceStatus"},
    "NamespaceSpec": {"finalizers": "[]string"},
    "NamespaceStatus": {"phase": "string", "conditions": "[]NamespaceCondition @type"},
    "NamespaceCondition": dict(_CONDITION),
    "Node": {**_OBJECT_HEADER, "spec": "NodeSpec", "status": "NodeStatus"},
    "Pod": {**_OBJECT_HEADER, "spec": "PodSpec", "status": "PodStatus"},
    "Service": {**_OBJECT_HEADER, "spec": "ServiceSpec", "status": "ServiceStatus"},
    "Endpoints": {**_OBJECT_HEADER, "subsets": "[]EndpointSubset"},
    "ServiceAccount": {**_OBJECT_HEADER, "secrets": "[]ObjectReference @name",
                       "imagePullSecrets": "[]LocalObjectReference", "automountServiceAccountToken": "boolean"},
    "Event": {**_OBJECT_HEADER, "involvedObject": "ObjectReference", "reason": "string", "message": "string",
              "source": "EventSource", "firstTimestamp": "Time", "lastTimestamp": "Time", "count": "int32",
              "type": "string", "eventTime": "MicroTime", "series": "EventSeries", "action": "string",
              "related": "ObjectReference", "reportingComponent": "string", "reportingInstance": "string"},
    "EventSource": {"component": "string", "host": "string"},
    "EventSeries": {"count": "int32", "lastObservedTime": "MicroTime"},
    "ConfigMap": {**_OBJECT_HEADER, "immutable": "boolean", "data": "{}string", "binaryData": "{}string"},
    # data's values are bytes, base64 in JSON (decoding checks them); stringData is write-only plain text.
    "Secret": {**_OBJECT_HEADER, "immutable": "boolean", "data": "{}string", "stringData": "{}string",
               "type": "string"},
    "ReplicationController": {**_OBJECT_HEADER, "spec": "ReplicationControllerSpec",
                              "status": "ReplicationControllerStatus"},
    "ReplicationControllerSpec": {"replicas": "int32", "minReadySeconds": "int32", "selector": "{}string",
                                  "template": "PodTemplateSpec"},
    "ReplicationControllerStatus": {**_STATUS_COUNTS, "conditions": "[]ReplicationControllerCondition @type"},
    "ReplicationControllerCondition": dict(_CONDITION),
    "Binding": {**_OBJECT_HEADER, "target": "ObjectReference"},
    "ObjectReference": {"kind": "string", "namespace": "string", "name": "string", "uid": "string",
                        "apiVersion": "string", "resourceVersion": "string", "fieldPath": "string"},
    "LocalObjectReference": {"name": "string"},
    "PodTemplateSpec": {"metadata": "meta.v1.ObjectMeta", "spec": "PodSpec"},
    "PodTemplate": {**_OBJECT_HEADER, "template": "PodTemplateSpec"},
    # -- pods -----------------------------------------------------------------------------------------
    "PodSpec": {
        "volumes": "[]Volume @name+retainKeys", "initContainers": "[]Container @name",
        "containers": "[]Container @name", "ephemeralContainers": "[]EphemeralContainer @name",
        "restartPolicy": "string", "terminationGracePeriodSeconds": "int64", "activeDeadlineSeconds": "int64",
        "dnsPolicy": "string", "nodeSelector": "{}string", "serviceAccountName": "string",
        "serviceAccount": "string", "automountServiceAccountToken": "boolean", "nodeName": "string",
        "hostNetwork": "boolean", "hostPID": "boolean", "hostIPC": "boolean", "shareProcessNamespace": "boolean",
        "securityContext": "PodSecurityContext", "imagePullSecrets": "[]LocalObjectReference @name",
        "hostname": "string", "subdomain": "string", "affinity": "Affinity", "schedulerName": "string",
        "tolerations": "[]Toleration", "hostAliases": "[]HostAlias @ip", "priorityClassName": "string",
        "priority": "int32", "dnsConfig": "PodDNSConfig", "readinessGates": "[]PodReadinessGate",
        "runtimeClassName": "string", "enableServiceLinks": "boolean", "preemptionPolicy": "string",
        "overhead": "{}Quantity", "topologySpreadConstraints": "[]TopologySpreadConstraint @topologyKey",
        "setHostnameAsFQDN": "boolean", "os": "PodOS", "hostUsers": "boolean",
        "schedulingGates": "[]PodSchedulingGate @name", "resourceClaims": "[]object @name+retainKeys",
        "resources": "ResourceRequirements",
    },
    "Container": {
        "name": "string", "image": "string", "command": "[]string", "args": "[]string", "workingDir": "string",
        "ports": "[]ContainerPort @containerPort", "envFrom": "[]EnvFromSource", "env": "[]EnvVar @name",
        "resources": "ResourceRequirements", "resizePolicy": "[]ContainerResizePolicy",
        "restartPolicy": "string", "volumeMounts": "[]VolumeMount @mountPath",
        "volumeDevices": "[]VolumeDevice @devicePath", "livenessProbe": "Probe", "readinessProbe": "Probe",
        "startupProbe": "Probe", "lifecycle": "Lifecycle", "terminationMessagePath": "string",
        "terminationMessagePolicy": "string", "imagePullPolicy": "string", "securityContext": "SecurityContext",
        "stdin": "boolean", "stdinOnce": "boolean", "tty": "boolean",
    },
    "ContainerPort": {"name": "string", "hostPort": "int32", "containerPort": "int32", "protocol": "string",
                      "hostIP": "string"},
    "EnvVar": {"name": "string", "value": "string", "valueFrom": "EnvVarSource"},
    "EnvVarSource": {"fieldRef": "ObjectFieldSelector", "resourceFieldRef": "ResourceFieldSelector",
                     "configMapKeyRef": "ConfigMapKeySelector", "secretKeyRef": "SecretKeySelector"},
    "ObjectFieldSelector": {"apiVersion": "string", "fieldPath": "string"},
    "ResourceFieldSelector": {"containerName": "string", "resource": "string", "divisor": "Quantity"},
    "ConfigMapKeySelector": {"name": "string", "key": "string", "optional": "boolean"},
    "SecretKeySelector": {"name": "string", "key": "string", "optional": "boolean"},
    "EnvFromSource": {"prefix": "string", "configMapRef": "ConfigMapEnvSource", "secretRef": "SecretEnvSource"},
    "ConfigMapEnvSource": {"name": "string", "optional": "boolean"},
    "SecretEnvSource": {"name": "string", "optional": "boolean"},
    "ResourceRequirements": {"limits": "{}Quantity", "requests": "{}Quantity", "claims": "[]ResourceClaim"},
    "ResourceClaim": {"name": "string", "request": "string"},
    "ContainerResizePolicy": {"resourceName": "string", "restartPolicy": "string"},
    "VolumeMount": {"name": "string", "readOnly": "boolean", "recursiveReadOnly": "string", "mountPath": "string",
                    "subPath": "string", "mountPropagation": "string", "subPathExpr": "string"},
    "VolumeDevice": {"name": "string", "devicePath": "string"},
    "Probe": {**_PROBE_HANDLERS, "initialDelaySeconds": "int32", "timeoutSeconds": "int32",
              "periodSeconds": "int32", "successThreshold": "int32", "failureThreshold": "int32",
              "terminationGracePeriodSeconds": "int64"},
    "ExecAction": {"command": "[]string"},
    "HTTPGetAction": {"path": "string", "port": "IntOrString", "host": "string", "scheme": "string",
                      "httpHeaders": "[]HTTPHeader"},
    "HTTPHeader": {"name": "string", "value": "string"},
    "TCPSocketAction": {"port": "IntOrString", "host": "string"},
    "GRPCAction": {"port": "int32", "service": "string"},
    "Lifecycle": {"postStart": "LifecycleHandler", "preStop": "LifecycleHandler", "stopSignal": "string"},
    "LifecycleHandler": {"exec": "ExecAction", "httpGet": "HTTPGetAction", "tcpSocket": "TCPSocketAction",
                         "sleep": "SleepAction"},
    "SleepAction": {"seconds": "int64"},
    "EphemeralContainer": {
        "name": "string", "image": "string", "command": "[]string", "args": "[]string", "workingDir": "string",
        "ports": "[]ContainerPort @containerPort", "envFrom": "[]EnvFromSource", "env": "[]EnvVar @name",
        "resources": "ResourceRequirements", "resizePolicy": "[]ContainerResizePolicy",
        "restartPolicy": "string", "volumeMounts": "[]VolumeMount @mountPath",
        "volumeDevices": "[]VolumeDevice @devicePath", "livenessProbe": "Probe", "readinessProbe": "Probe",
        "startupProbe": "Probe", "lifecycle": "Lifecycle", "terminationMessagePath": "string",
        "terminationMessagePolicy": "string", "imagePullPolicy": "string", "securityContext": "SecurityContext",
        "stdin": "boolean", "stdinOnce": "boolean", "tty": "boolean", "targetContainerName": "string",
    },
    "SecurityContext": {**_SECURITY_COMMON, "capabilities": "Capabilities", "privileged": "boolean",
                        "readOnlyRootFilesystem": "boolean", "allowPrivilegeEscalation": "boolean",
                        "procMount": "string"},
    "PodSecurityContext": {**_SECURITY_COMMON, "supplementalGroups": "[]int64",
                           "supplementalGroupsPolicy": "string", "fsGroup": "int64", "sysctls": "[]Sysctl",
                           "fsGroupChangePolicy": "string", "seLinuxChangePolicy": "string"},
    "Capabilities": {"add": "[]string", "drop": "[]string"},
    "SELinuxOptions": {"user": "string", "role": "string", "type": "string", "level": "string"},
    "WindowsSecurityContextOptions": {"gmsaCredentialSpecName": "string", "gmsaCredentialSpec": "string",
                                      "runAsUserName": "string", "hostProcess": "boolean"},
    "SeccompProfile": {"type": "string", "localhostProfile": "string"},
    "AppArmorProfile": {"type": "string", "localhostProfile": "string"},
    "Sysctl": {"name": "string", "value": "string"},
    "Volume": {
        "name": "string", "hostPath": "HostPathVolumeSource", "emptyDir": "EmptyDirVolumeSource",
        "secret": "SecretVolumeSource", "configMap": "ConfigMapVolumeSource", "projected": "ProjectedVolumeSource",
        "downwardAPI": "DownwardAPIVolumeSource", "persistentVolumeClaim": "PersistentVolumeClaimVolumeSource",
        "nfs": "NFSVolumeSource", "image": "ImageVolumeSource",
        **dict.fromkeys(_LEGACY_VOLUME_SOURCES, "object"),
    },
    "HostPathVolumeSource": {"path": "string", "type": "string"},
    "EmptyDirVolumeSource": {"medium": "string", "sizeLimit": "Quantity"},
    "SecretVolumeSource": {"secretName": "string", "items": "[]KeyToPath", "defaultMode": "int32",
                           "optional": "boolean"},
    "ConfigMapVolumeSource": {"name": "string", "items": "[]KeyToPath", "defaultMode": "int32",
                              "optional": "boolean"},
    "KeyToPath": {"key": "string", "path": "string", "mode": "int32"},
    "ProjectedVolumeSource": {"sources": "[]VolumeProjection", "defaultMode": "int32"},
    "VolumeProjection": {"secret": "SecretProjection", "downwardAPI": "DownwardAPIProjection",
                         "configMap": "ConfigMapProjection", "serviceAccountToken": "ServiceAccountTokenProjection",
                         "clusterTrustBundle": "object"},
    "SecretProjection": {"name": "string", "items": "[]KeyToPath", "optional": "boolean"},
    "ConfigMapProjection": {"name": "string", "items": "[]KeyToPath", "optional": "boolean"},
    "DownwardAPIProjection": {"items": "[]DownwardAPIVolumeFile"},
    "ServiceAccountTokenProjection": {"audience": "string", "expirationSeconds": "int64", "path": "string"},
    "DownwardAPIVolumeSource": {"items": "[]DownwardAPIVolumeFile", "defaultMode": "int32"},
    "DownwardAPIVolumeFile": {"path": "string", "fieldRef": "ObjectFieldSelector",
                              "resourceFieldRef": "ResourceFieldSelector", "mode": "int32"},
    "PersistentVolumeClaimVolumeSource": {"claimName": "string", "readOnly": "boolean"},
    "NFSVolumeSource": {"server": "string", "path": "string", "readOnly": "boolean"},
    "PersistentVolume": {**_OBJECT_HEADER, "spec": "PersistentVolumeSpec", "status": "PersistentVolumeStatus"},
    "PersistentVolumeSpec": {
        "capacity": "{}Quantity", "accessModes": "[]string", "claimRef": "ObjectReference",
        "persistentVolumeReclaimPolicy": "string", "storageClassName": "string", "mountOptions": "[]string",
        "volumeMode": "string", "nodeAffinity": "VolumeNodeAffinity", "volumeAttributesClassName": "string",
        "hostPath": "HostPathVolumeSource", "local": "LocalVolumeSource", "nfs": "NFSVolumeSource",
        **dict.fromkeys(("gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "rbd", "iscsi", "cinder", "cephfs",
                         "fc", "flocker", "flexVolume", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
                         "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos", "csi"), "object"),
    },
    "LocalVolumeSource": {"path": "string", "fsType": "string"},
    "VolumeNodeAffinity": {"required": "NodeSelector"},
    "PersistentVolumeStatus": {"phase": "string", "message": "string", "reason": "string",
                               "lastPhaseTransitionTime": "Time"},
    "PersistentVolumeClaim": {**_OBJECT_HEADER, "spec": "PersistentVolumeClaimSpec",
                              "status": "PersistentVolumeClaimStatus"},
    "PersistentVolumeClaimSpec": {
        "accessModes": "[]string", "selector": "meta.v1.LabelSelector", "resources": "VolumeResourceRequirements",
        "volumeName": "string", "storageClassName": "string", "volumeMode": "string",
        "dataSource": "TypedLocalObjectReference", "dataSourceRef": "TypedObjectReference",
        "volumeAttributesClassName": "string"},
    "VolumeResourceRequirements": {"limits": "{}Quantity", "requests": "{}Quantity"},
    "TypedLocalObjectReference": {"apiGroup": "string", "kind": "string", "name": "string"},
    "TypedObjectReference": {"apiGroup": "string", "kind": "string", "name": "string", "namespace": "string"},
    "PersistentVolumeClaimStatus": {
        "phase": "string", "accessModes": "[]string", "capacity": "{}Quantity",
        "conditions": "[]PersistentVolumeClaimCondition @type", "allocatedResources": "{}Quantity",
        "allocatedResourceStatuses": "{}string", "currentVolumeAttributesClassName": "string",
        "modifyVolumeStatus": "object"},
    "PersistentVolumeClaimCondition": {"type": "string", "status": "string", "lastProbeTime": "Time",
                                       "lastTransitionTime": "Time", "reason": "string", "message": "string"},
    "TopologySelectorTerm": {"matchLabelExpressions": "[]TopologySelectorLabelRequirement"},
    "TopologySelectorLabelRequirement": {"key": "string", "values": "[]string"},
    "ImageVolumeSource": {"reference": "string", "pullPolicy": "string"},
    "Affinity": {"nodeAffinity": "NodeAffinity", "podAffinity": "PodAffinity",
                 "podAntiAffinity": "PodAntiAffinity"},
    "NodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "NodeSelector",
                     "preferredDuringSchedulingIgnoredDuringExecution": "[]PreferredSchedulingTerm"},
    "NodeSelector": {"nodeSelectorTerms": "[]NodeSelectorTerm"},
    "NodeSelectorTerm": {"matchExpressions": "[]NodeSelectorRequirement",
                         "matchFields": "[]NodeSelectorRequirement"},
    "NodeSelectorRequirement": {"key": "string", "operator": "string", "values": "[]string"},
    "PreferredSchedulingTerm": {"weight": "int32", "preference": "NodeSelectorTerm"},
    "PodAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "[]PodAffinityTerm",
                    "preferredDuringSchedulingIgnoredDuringExecution": "[]WeightedPodAffinityTerm"},
    "PodAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "[]PodAffinityTerm",
                        "preferredDuringSchedulingIgnoredDuringExecution": "[]WeightedPodAffinityTerm"},
    "PodAffinityTerm": {"labelSelector": "meta.v1.LabelSelector", "namespaces": "[]string",
                        "topologyKey": "string", "namespaceSelector": "meta.v1.LabelSelector",
                        "matchLabelKeys": "[]string", "mismatchLabelKeys": "[]string"},
    "WeightedPodAffinityTerm": {"weight": "int32", "podAffinityTerm": "PodAffinityTerm"},
    "Toleration": {"key": "string", "operator": "string", "value": "string", "effect": "string",
                   "tolerationSeconds": "int64"},
    "Taint": {"key": "string", "value": "string", "effect": "string", "timeAdded": "Time"},
    "HostAlias": {"ip": "string", "hostnames": "[]string"},
    "PodDNSConfig": {"nameservers": "[]string", "searches": "[]string", "options": "[]PodDNSConfigOption"},
    "PodDNSConfigOption": {"name": "string", "value": "string"},
    "PodReadinessGate": {"conditionType": "string"},
    "PodOS": {"name": "string"},
    "PodSchedulingGate": {"name": "string"},
    "TopologySpreadConstraint": {"maxSkew": "int32", "topologyKey": "string", "whenUnsatisfiable": "string",
                                 "labelSelector": "meta.v1.LabelSelector", "minDomains": "int32",
                                 "nodeAffinityPolicy": "string", "nodeTaintsPolicy": "string",
                                 "matchLabelKeys": "[]string"},
    "PodStatus": {
        "observedGeneration": "int64", "phase": "string", "conditions": "[]PodCondition @type",
        "message": "string", "reason": "string", "nominatedNodeName": "string", "hostIP": "string",
        "hostIPs": "[]HostIP @ip", "podIP": "string", "podIPs": "[]PodIP @ip", "startTime": "Time",
        "initContainerStatuses": "[]ContainerStatus", "containerStatuses": "[]ContainerStatus",
        "ephemeralContainerStatuses": "[]ContainerStatus", "qosClass": "string", "resize": "string",
        "resourceClaimStatuses": "[]object @name+retainKeys",
    },
    "PodCondition": {**_CONDITION, "observedGeneration": "int64", "lastProbeTime": "Time"},
    "HostIP": {"ip": "string"},
    "PodIP": {"ip": "string"},
    "ContainerStatus": {
        "name": "string", "state": "ContainerState", "lastState": "ContainerState", "ready": "boolean",
        "restartCount": "int32", "image": "string", "imageID": "string", "containerID": "string",
        "started": "boolean", "allocatedResources": "{}Quantity", "resources": "ResourceRequirements",
        "volumeMounts": "[]VolumeMountStatus @mountPath", "user": "object", "allocatedResourcesStatus": "[]object",
        "stopSignal": "string",
    },
    "VolumeMountStatus": {"name": "string", "mountPath": "string", "readOnly": "boolean",
                          "recursiveReadOnly": "string"},
    "ContainerState": {"waiting": "ContainerStateWaiting", "running": "ContainerStateRunning",
                       "terminated": "ContainerStateTerminated"},
    "ContainerStateWaiting": {"reason": "string", "message": "string"},
    "ContainerStateRunning": {"startedAt": "Time"},
    "ContainerStateTerminated": {"exitCode": "int32", "signal": "int32", "reason": "string",
                                 "message": "string", "startedAt": "Time", "finishedAt": "Time",
                                 "containerID": "string"},
    # -- services and endpoints -----------------------------------------------------------------------
    "ServiceSpec": {
        "ports": "[]ServicePort @port", "selector": "{}string", "clusterIP": "string", "clusterIPs": "[]string",
        "type": "string", "externalIPs": "[]string", "sessionAffinity": "string", "loadBalancerIP": "string",
        "loadBalancerSourceRanges": "[]string", "externalName": "string", "externalTrafficPolicy": "string",
        "healthCheckNodePort": "int32", "publishNotReadyAddresses": "boolean",
        "sessionAffinityConfig": "SessionAffinityConfig", "ipFamilies": "[]string", "ipFamilyPolicy": "string",
        "allocateLoadBalancerNodePorts": "boolean", "loadBalancerClass": "string",
        "internalTrafficPolicy": "string", "trafficDistribution": "string",
    },
    "ServicePort": {"name": "string", "protocol": "string", "appProtocol": "string", "port": "int32",
                    "targetPort": "IntOrString", "nodePort": "int32"},
    "SessionAffinityConfig": {"clientIP": "ClientIPConfig"},
    "ClientIPConfig": {"timeoutSeconds": "int32"},
    "ServiceStatus": {"loadBalancer": "LoadBalancerStatus", "conditions": "[]meta.v1.Condition @type"},
    "LoadBalancerStatus": {"ingress": "[]LoadBalancerIngress"},
    "LoadBalancerIngress": {"ip": "string", "hostname": "string", "ipMode": "string", "ports": "[]PortStatus"},
    "PortStatus": {"port": "int32", "protocol": "string", "error": "string"},
    "EndpointSubset": {"addresses": "[]EndpointAddress", "notReadyAddresses": "[]EndpointAddress",
                       "ports": "[]EndpointPort"},
    "EndpointAddress": {"ip": "string", "hostname": "string", "nodeName": "string",
                        "targetRef": "ObjectReference"},
    "EndpointPort": {"name": "string", "port": "int32", "protocol": "string", "appProtocol": "string"},
    # -- nodes ----------------------------------------------------------------------------------------
    "NodeSpec": {"podCIDR": "string", "podCIDRs": "[]string @", "providerID": "string",
                 "unschedulable": "boolean", "taints": "[]Taint", "configSource": "object", "externalID": "string"},
    "NodeStatus": {
        "capacity": "{}Quantity", "allocatable": "{}Quantity", "phase": "string",
        "conditions": "[]NodeCondition @type", "addresses": "[]NodeAddress @type",
        "daemonEndpoints": "NodeDaemonEndpoints", "nodeInfo": "NodeSystemInfo", "images": "[]ContainerImage",
        "volumesInUse": "[]string", "volumesAttached": "[]AttachedVolume", "config": "object",
        "runtimeHandlers": "[]object", "features": "object",
    },
    "NodeCondition": {"type": "string", "status": "string", "lastHeartbeatTime": "Time",
                      "lastTransitionTime": "Time", "reason": "string", "message": "string"},
    "NodeAddress": {"type": "string", "address": "string"},
    "NodeDaemonEndpoints": {"kubeletEndpoint": "DaemonEndpoint"},
    "DaemonEndpoint": {"Port": "int32"},  # upstream's one capitalised JSON name
    "NodeSystemInfo": {"machineID": "string", "systemUUID": "string", "bootID": "string",
                       "kernelVersion": "string", "osImage": "string", "containerRuntimeVersion": "string",
                       "kubeletVersion": "string", "kubeProxyVersion": "string", "operatingSystem": "string",
                       "architecture": "string", "swap": "object"},
    "ContainerImage": {"names": "[]string", "sizeBytes": "int64"},
    "AttachedVolume": {"name": "string", "devicePath": "string"},
}

_APPS: dict[str, dict[str, str]] = {
    "Deployment": {**_OBJECT_HEADER, "spec": "DeploymentSpec", "status": "DeploymentStatus"},
    "DeploymentSpec": {"replicas": "int32", "selector": "meta.v1.LabelSelector", "template": "PodTemplateSpec",
                       "strategy": "DeploymentStrategy retainKeys", "minReadySeconds": "int32",
                       "revisionHistoryLimit": "int32", "paused": "boolean",
                       "progressDeadlineSeconds": "int32"},
    "DeploymentStrategy": {"type": "string", "rollingUpdate": "RollingUpdateDeployment"},
    "RollingUpdateDeployment": {"maxUnavailable": "IntOrString", "maxSurge": "IntOrString"},
    "DeploymentStatus": {"observedGeneration": "int64", "replicas": "int32", "updatedReplicas": "int32",
                         "readyReplicas": "int32", "availableReplicas": "int32",
                         "unavailableReplicas": "int32", "terminatingReplicas": "int32",
                         "conditions": "[]DeploymentCondition @type", "collisionCount": "int32"},
    "DeploymentCondition": {**_CONDITION, "lastUpdateTime": "Time"},
    "ReplicaSet": {**_OBJECT_HEADER, "spec": "ReplicaSetSpec", "status": "ReplicaSetStatus"},
    "ReplicaSetSpec": {"replicas": "int32", "minReadySeconds": "int32", "selector": "meta.v1.LabelSelector",
                       "template": "PodTemplateSpec"},
    "ReplicaSetStatus": {**_STATUS_COUNTS, "terminatingReplicas": "int32",
                         "conditions": "[]ReplicaSetCondition @type"},
    "ReplicaSetCondition": dict(_CONDITION),
    "DaemonSet": {**_OBJECT_HEADER, "spec": "DaemonSetSpec", "status": "DaemonSetStatus"},
    "DaemonSetSpec": {"selector": "meta.v1.LabelSelector", "template": "PodTemplateSpec",
                      "updateStrategy": "DaemonSetUpdateStrategy", "minReadySeconds": "int32",
                      "revisionHistoryLimit": "int32"},
    "DaemonSetUpdateStrategy": {"type": "string", "rollingUpdate": "RollingUpdateDaemonSet"},
    "RollingUpdateDaemonSet": {"maxUnavailable": "IntOrString", "maxSurge": "IntOrString"},
    "DaemonSetStatus": {"currentNumberScheduled": "int32", "numberMisscheduled": "int32",
                        "desiredNumberScheduled": "int32", "numberReady": "int32", "observedGeneration": "int64",
                        "updatedNumberScheduled": "int32", "numberAvailable": "int32",
                        "numberUnavailable": "int32", "collisionCount": "int32",
                        "conditions": "[]DaemonSetCondition @type"},
    "DaemonSetCondition": dict(_CONDITION),
    "StatefulSet": {**_OBJECT_HEADER, "spec": "StatefulSetSpec", "status": "StatefulSetStatus"},
    "StatefulSetSpec": {"replicas": "int32", "selector": "meta.v1.LabelSelector", "template": "PodTemplateSpec",
                        "volumeClaimTemplates": "[]core.v1.PersistentVolumeClaim", "serviceName": "string",
                        "podManagementPolicy": "string", "updateStrategy": "StatefulSetUpdateStrategy",
                        "revisionHistoryLimit": "int32", "minReadySeconds": "int32",
                        "persistentVolumeClaimRetentionPolicy": "StatefulSetPersistentVolumeClaimRetentionPolicy",
                        "ordinals": "StatefulSetOrdinals"},
    "StatefulSetUpdateStrategy": {"type": "string", "rollingUpdate": "RollingUpdateStatefulSetStrategy"},
    "RollingUpdateStatefulSetStrategy": {"partition": "int32", "maxUnavailable": "IntOrString"},
    "StatefulSetPersistentVolumeClaimRetentionPolicy": {"whenDeleted": "string", "whenScaled": "string"},
    "StatefulSetOrdinals": {"start": "int32"},
    "StatefulSetStatus": {"observedGeneration": "int64", "replicas": "int32", "readyReplicas": "int32",
                          "currentReplicas": "int32", "updatedReplicas": "int32", "currentRevision": "string",
                          "updateRevision": "string", "collisionCount": "int32",
                          "conditions": "[]StatefulSetCondition @type", "availableReplicas": "int32"},
    "StatefulSetCondition": dict(_CONDITION),
    # data is a RawExtension: the patch that restores the owner's template (see control.controllers._history).
    "ControllerRevision": {**_OBJECT_HEADER, "data": "object", "revision": "int64"},
}

_DISCOVERY: dict[str, dict[str, str]] = {
    "EndpointSlice": {**_OBJECT_HEADER, "addressType": "string", "endpoints": "[]Endpoint",
                      "ports": "[]EndpointPort"},
    "Endpoint": {"addresses": "[]string", "conditions": "EndpointConditions", "hostname": "string",
                 "targetRef": "core.v1.ObjectReference", "deprecatedTopology": "{}string", "nodeName": "string",
                 "zone": "string", "hints": "EndpointHints"},
    "EndpointConditions": {"ready": "boolean", "serving": "boolean", "terminating": "boolean"},
    "EndpointHints": {"forZones": "[]ForZone", "forNodes": "[]ForNode"},
    "ForZone": {"name": "string"},
    "ForNode": {"name": "string"},
    "EndpointPort": {"name": "string", "protocol": "string", "port": "int32", "appProtocol": "string"},
}

_COORDINATION: dict[str, dict[str, str]] = {
    "Lease": {**_OBJECT_HEADER, "spec": "LeaseSpec"},
    "LeaseSpec": {"holderIdentity": "string", "leaseDurationSeconds": "int32", "acquireTime": "MicroTime",
                  "renewTime": "MicroTime", "leaseTransitions": "int32", "strategy": "string",
                  "preferredHolder": "string"},
}

# networking.k8s.io/v1 (staging/src/k8s.io/api/networking/v1/types.go): its lists are atomic, no patch tags.
_NETWORKING: dict[str, dict[str, str]] = {
    "NetworkPolicy": {**_OBJECT_HEADER, "spec": "NetworkPolicySpec"},
    "NetworkPolicySpec": {"podSelector": "meta.v1.LabelSelector", "ingress": "[]NetworkPolicyIngressRule",
                          "egress": "[]NetworkPolicyEgressRule", "policyTypes": "[]string"},
    "NetworkPolicyIngressRule": {"ports": "[]NetworkPolicyPort", "from": "[]NetworkPolicyPeer"},
    "NetworkPolicyEgressRule": {"ports": "[]NetworkPolicyPort", "to": "[]NetworkPolicyPeer"},
    "NetworkPolicyPort": {"protocol": "string", "port": "IntOrString", "endPort": "int32"},
    "NetworkPolicyPeer": {"podSelector": "meta.v1.LabelSelector", "namespaceSelector": "meta.v1.LabelSelector",
                          "ipBlock": "IPBlock"},
    "IPBlock": {"cidr": "string", "except": "[]string"},
}

# policy.networking.k8s.io/v1alpha1 (sig-network's network-policy-api, apis/v1alpha1, standard channel): the
# admin tiers around NetworkPolicy. The experimental fields (egress `nodes` and `domainNames` peers) are
# not served, so strict decoding refuses them as unknown.
_ADMIN_RULE = {"name": "string", "action": "string"}
_POLICY: dict[str, dict[str, str]] = {
    "AdminNetworkPolicy": {**_OBJECT_HEADER, "spec": "AdminNetworkPolicySpec",
                           "status": "AdminNetworkPolicyStatus"},
    "AdminNetworkPolicySpec": {"priority": "int32", "subject": "AdminNetworkPolicySubject",
                               "ingress": "[]AdminNetworkPolicyIngressRule",
                               "egress": "[]AdminNetworkPolicyEgressRule"},
    "AdminNetworkPolicyStatus": {"conditions": "[]meta.v1.Condition @type"},
    "AdminNetworkPolicySubject": {"namespaces": "meta.v1.LabelSelector", "pods": "NamespacedPod"},
    "NamespacedPod": {"namespaceSelector": "meta.v1.LabelSelector", "podSelector": "meta.v1.LabelSelector"},
    "AdminNetworkPolicyIngressRule": {**_ADMIN_RULE, "from": "[]AdminNetworkPolicyIngressPeer",
                                      "ports": "[]AdminNetworkPolicyPort"},
    "AdminNetworkPolicyEgressRule": {**_ADMIN_RULE, "to": "[]AdminNetworkPolicyEgressPeer",
                                     "ports": "[]AdminNetworkPolicyPort"},
    "AdminNetworkPolicyIngressPeer": {"namespaces": "meta.v1.LabelSelector", "pods": "NamespacedPod"},
    "AdminNetworkPolicyEgressPeer": {"namespaces": "meta.v1.LabelSelector", "pods": "NamespacedPod",
                                     "networks": "[]string"},
    "AdminNetworkPolicyPort": {"portNumber": "Port", "namedPort": "string", "portRange": "PortRange"},
    "Port": {"protocol": "string", "port": "int32"},
    "PortRange": {"protocol": "string", "start": "int32", "end": "int32"},
    "BaselineAdminNetworkPolicy": {**_OBJECT_HEADER, "spec": "BaselineAdminNetworkPolicySpec",
                                   "status": "BaselineAdminNetworkPolicyStatus"},
    "BaselineAdminNetworkPolicySpec": {"subject": "AdminNetworkPolicySubject",
                                       "ingress": "[]BaselineAdminNetworkPolicyIngressRule",
                                       "egress": "[]BaselineAdminNetworkPolicyEgressRule"},
    "BaselineAdminNetworkPolicyStatus": {"conditions": "[]meta.v1.Condition @type"},
    "BaselineAdminNetworkPolicyIngressRule": {**_ADMIN_RULE, "from": "[]AdminNetworkPolicyIngressPeer",
                                              "ports": "[]AdminNetworkPolicyPort"},
    "BaselineAdminNetworkPolicyEgressRule": {**_ADMIN_RULE, "to": "[]AdminNetworkPolicyEgressPeer",
                                             "ports": "[]AdminNetworkPolicyPort"},
}

_BATCH: dict[str, dict[str, str]] = {
    "Job": {**_OBJECT_HEADER, "spec": "JobSpec", "status": "JobStatus"},
    "JobSpec": {"parallelism": "int32", "completions": "int32", "activeDeadlineSeconds": "int64",
                "podFailurePolicy": "object", "successPolicy": "object", "backoffLimit": "int32",
                "backoffLimitPerIndex": "int32", "maxFailedIndexes": "int32", "selector": "meta.v1.LabelSelector",
                "manualSelector": "boolean", "template": "core.v1.PodTemplateSpec",
                "ttlSecondsAfterFinished": "int32", "completionMode": "string", "suspend": "boolean",
                "podReplacementPolicy": "string", "managedBy": "string"},
    "JobStatus": {"conditions": "[]JobCondition @type", "startTime": "Time", "completionTime": "Time",
                  "active": "int32", "succeeded": "int32", "failed": "int32", "terminating": "int32",
                  "completedIndexes": "string", "failedIndexes": "string",
                  "uncountedTerminatedPods": "UncountedTerminatedPods", "ready": "int32"},
    "JobCondition": {**_CONDITION, "lastProbeTime": "Time"},
    "UncountedTerminatedPods": {"succeeded": "[]string", "failed": "[]string"},
    "CronJob": {**_OBJECT_HEADER, "spec": "CronJobSpec", "status": "CronJobStatus"},
    "CronJobSpec": {"schedule": "string", "timeZone": "string", "startingDeadlineSeconds": "int64",
                    "concurrencyPolicy": "string", "suspend": "boolean", "jobTemplate": "JobTemplateSpec",
                    "successfulJobsHistoryLimit": "int32", "failedJobsHistoryLimit": "int32"},
    "JobTemplateSpec": {"metadata": "meta.v1.ObjectMeta", "spec": "JobSpec"},
    "CronJobStatus": {"active": "[]core.v1.ObjectReference", "lastScheduleTime": "Time",
                      "lastSuccessfulTime": "Time"},
}

_STORAGE: dict[str, dict[str, str]] = {
    "StorageClass": {**_OBJECT_HEADER, "provisioner": "string", "parameters": "{}string", "reclaimPolicy": "string",
                     "mountOptions": "[]string", "allowVolumeExpansion": "boolean", "volumeBindingMode": "string",
                     "allowedTopologies": "[]core.v1.TopologySelectorTerm"},
}

_AUTOSCALING: dict[str, dict[str, str]] = {
    "Scale": {**_OBJECT_HEADER, "spec": "ScaleSpec", "status": "ScaleStatus"},
    "ScaleSpec": {"replicas": "int32"},
    "ScaleStatus": {"replicas": "int32", "selector": "string"},
}

# rbac.authorization.k8s.io/v1 (k8s.io/api/rbac/v1/types.go)
_RBAC: dict[str, dict[str, str]] = {
    "Role": {**_OBJECT_HEADER, "rules": "[]PolicyRule"},
    "ClusterRole": {**_OBJECT_HEADER, "rules": "[]PolicyRule", "aggregationRule": "AggregationRule"},
    "RoleBinding": {**_OBJECT_HEADER, "subjects": "[]Subject", "roleRef": "RoleRef"},
    "ClusterRoleBinding": {**_OBJECT_HEADER, "subjects": "[]Subject", "roleRef": "RoleRef"},
    "PolicyRule": {"verbs": "[]string", "apiGroups": "[]string", "resources": "[]string",
                   "resourceNames": "[]string", "nonResourceURLs": "[]string"},
    "AggregationRule": {"clusterRoleSelectors": "[]meta.v1.LabelSelector"},
    "Subject": {"kind": "string", "apiGroup": "string", "name": "string", "namespace": "string"},
    "RoleRef": {"apiGroup": "string", "kind": "string", "name": "string"},
}

# authorization.k8s.io/v1 (k8s.io/api/authorization/v1/types.go): the access reviews, never stored.
_ACCESS_STATUS = {"allowed": "boolean", "denied": "boolean", "reason": "string", "evaluationError": "string"}
_AUTHORIZATION: dict[str, dict[str, str]] = {
    "SubjectAccessReview": {**_OBJECT_HEADER, "spec": "SubjectAccessReviewSpec", "status": "SubjectAccessReviewStatus"},
    "LocalSubjectAccessReview": {**_OBJECT_HEADER, "spec": "SubjectAccessReviewSpec",
                                 "status": "SubjectAccessReviewStatus"},
    "SelfSubjectAccessReview": {**_OBJECT_HEADER, "spec": "SelfSubjectAccessReviewSpec",
                                "status": "SubjectAccessReviewStatus"},
    "SelfSubjectRulesReview": {**_OBJECT_HEADER, "spec": "SelfSubjectRulesReviewSpec",
                               "status": "SubjectRulesReviewStatus"},
    "SubjectAccessReviewSpec": {"resourceAttributes": "ResourceAttributes",
                                "nonResourceAttributes": "NonResourceAttributes", "user": "string",
                                "groups": "[]string", "extra": "{}object", "uid": "string"},
    "SelfSubjectAccessReviewSpec": {"resourceAttributes": "ResourceAttributes",
                                    "nonResourceAttributes": "NonResourceAttributes"},
    "ResourceAttributes": {"namespace": "string", "verb": "string", "group": "string", "version": "string",
                           "resource": "string", "subresource": "string", "name": "string",
                           "fieldSelector": "FieldSelectorAttributes", "labelSelector": "LabelSelectorAttributes"},
    "FieldSelectorAttributes": {"rawSelector": "string", "requirements": "[]meta.v1.FieldSelectorRequirement"},
    "LabelSelectorAttributes": {"rawSelector": "string", "requirements": "[]meta.v1.LabelSelectorRequirement"},
    "NonResourceAttributes": {"path": "string", "verb": "string"},
    "SubjectAccessReviewStatus": dict(_ACCESS_STATUS),
    "SelfSubjectRulesReviewSpec": {"namespace": "string"},
    "SubjectRulesReviewStatus": {"resourceRules": "[]ResourceRule", "nonResourceRules": "[]NonResourceRule",
                                 "incomplete": "boolean", "evaluationError": "string"},
    "ResourceRule": {"verbs": "[]string", "apiGroups": "[]string", "resources": "[]string",
                     "resourceNames": "[]string"},
    "NonResourceRule": {"verbs": "[]string", "nonResourceURLs": "[]string"},
}

# authentication.k8s.io/v1 (k8s.io/api/authentication/v1/types.go); SelfSubjectReview is also served as v1beta1,
# the version kubectl 1.27's `auth whoami` asks for.
_AUTHENTICATION: dict[str, dict[str, str]] = {
    "TokenReview": {**_OBJECT_HEADER, "spec": "TokenReviewSpec", "status": "TokenReviewStatus"},
    "TokenReviewSpec": {"token": "string", "audiences": "[]string"},
    "TokenReviewStatus": {"authenticated": "boolean", "user": "UserInfo", "audiences": "[]string",
                          "error": "string"},
    "UserInfo": {"username": "string", "uid": "string", "groups": "[]string", "extra": "{}object"},
    "SelfSubjectReview": {**_OBJECT_HEADER, "status": "SelfSubjectReviewStatus"},
    "SelfSubjectReviewStatus": {"userInfo": "UserInfo"},
}

# apiextensions.k8s.io/v1 (apiextensions-apiserver's types.go). A version's openAPIV3Schema is free-form here:
# its JSONSchemaProps are checked by the CRD's own validation (crd/definition.py), not by strict decoding.
_CRD_NAMES = {"plural": "string", "singular": "string", "shortNames": "[]string", "kind": "string",
              "listKind": "string", "categories": "[]string"}
_APIEXTENSIONS: dict[str, dict[str, str]] = {
    "CustomResourceDefinition": {**_OBJECT_HEADER, "spec": "CustomResourceDefinitionSpec",
                                 "status": "CustomResourceDefinitionStatus"},
    "CustomResourceDefinitionSpec": {"group": "string", "names": "CustomResourceDefinitionNames", "scope": "string",
                                     "versions": "[]CustomResourceDefinitionVersion",
                                     "conversion": "CustomResourceConversion", "preserveUnknownFields": "boolean"},
    "CustomResourceDefinitionNames": _CRD_NAMES,
    "CustomResourceDefinitionVersion": {
        "name": "string", "served": "boolean", "storage": "boolean", "deprecated": "boolean",
        "deprecationWarning": "string", "schema": "CustomResourceValidation",
        "subresources": "CustomResourceSubresources",
        "additionalPrinterColumns": "[]CustomResourceColumnDefinition", "selectableFields": "[]SelectableField"},
    "CustomResourceValidation": {"openAPIV3Schema": "object"},
    "CustomResourceSubresources": {"status": "object", "scale": "CustomResourceSubresourceScale"},
    "CustomResourceSubresourceScale": {"specReplicasPath": "string", "statusReplicasPath": "string",
                                       "labelSelectorPath": "string"},
    "CustomResourceColumnDefinition": {"name": "string", "type": "string", "format": "string",
                                       "description": "string", "priority": "int32", "jsonPath": "string"},
    "SelectableField": {"jsonPath": "string"},
    "CustomResourceConversion": {"strategy": "string", "webhook": "object"},
    "CustomResourceDefinitionStatus": {"conditions": "[]CustomResourceDefinitionCondition",
                                       "acceptedNames": "CustomResourceDefinitionNames",
                                       "storedVersions": "[]string"},
    "CustomResourceDefinitionCondition": dict(_CONDITION),
}
# apiregistration.k8s.io/v1 (kube-aggregator's types.go).
_APIREGISTRATION: dict[str, dict[str, str]] = {
    "APIService": {**_OBJECT_HEADER, "spec": "APIServiceSpec", "status": "APIServiceStatus"},
    "APIServiceSpec": {"service": "ServiceReference", "group": "string", "version": "string",
                       "insecureSkipTLSVerify": "boolean", "caBundle": "string", "groupPriorityMinimum": "int32",
                       "versionPriority": "int32"},
    "ServiceReference": {"namespace": "string", "name": "string", "port": "int32"},
    "APIServiceStatus": {"conditions": "[]APIServiceCondition @type"},
    "APIServiceCondition": dict(_CONDITION),
}

# Package -> (OpenAPI definition prefix, its types).
PACKAGES: dict[str, tuple[str, dict[str, dict[str, str]]]] = {
    "meta.v1": ("io.k8s.apimachinery.pkg.apis.meta.v1", _META),
    "core.v1": ("io.k8s.api.core.v1", _CORE),
    "apps.v1": ("io.k8s.api.apps.v1", _APPS),
    "discovery.v1": ("io.k8s.api.discovery.v1", _DISCOVERY),
    "coordination.v1": ("io.k8s.api.coordination.v1", _COORDINATION),
    "networking.v1": ("io.k8s.api.networking.v1", _NETWORKING),
    # As kube-apiserver names a CRD's definitions: the group reversed, then the version.
    "policy.v1alpha1": ("io.k8s.networking.policy.v1alpha1", _POLICY),
    "autoscaling.v1": ("io.k8s.api.autoscaling.v1", _AUTOSCALING),
    "storage.v1": ("io.k8s.api.storage.v1", _STORAGE),
    "batch.v1": ("io.k8s.api.batch.v1", _BATCH),
    "rbac.v1": ("io.k8s.api.rbac.v1", _RBAC),
    "authorization.v1": ("io.k8s.api.authorization.v1", _AUTHORIZATION),
    "authentication.v1": ("io.k8s.api.authentication.v1", _AUTHENTICATION),
    "apiextensions.v1": ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1", _APIEXTENSIONS),
    "apiregistration.v1": ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1", _APIREGISTRATION),
}

# Every type by qualified name ("core.v1.Pod").
TYPES: dict[str, dict[str, str]] = {f"{pkg}.{name}": fields for pkg, (_, table) in PACKAGES.items()
                                    for name, fields in table.items()}


@dataclass(frozen=True)
class Kind:
    """A top-level kind: its API group and version, and where its table lives."""

    group: str
    version: str
    kind: str
    package: str
    # Whether clients may send it as protobuf: not custom resources' kinds, as upstream serves them as JSON only.
    protobuf: bool = True

    @property
    def type_name(self) -> str:
        return f"{self.package}.{self.kind}"


KINDS: dict[str, Kind] = {k.kind: k for k in (
    *(Kind("", "v1", name, "core.v1") for name in (
        "Namespace", "Node", "Pod", "Service", "Endpoints", "ServiceAccount", "Event", "ConfigMap", "Secret",
        "ReplicationController", "Binding", "PodTemplate")),
    Kind("apps", "v1", "Deployment", "apps.v1"),
    Kind("apps", "v1", "ReplicaSet", "apps.v1"),
    Kind("batch", "v1", "Job", "batch.v1"),
    Kind("batch", "v1", "CronJob", "batch.v1"),  # `kubectl create cronjob` sends protobuf
    # JSON only for now: their protobuf field numbers are not transcribed (kubectl sends them as JSON).
    Kind("apps", "v1", "DaemonSet", "apps.v1", protobuf=False),
    Kind("apps", "v1", "StatefulSet", "apps.v1", protobuf=False),
    Kind("apps", "v1", "ControllerRevision", "apps.v1", protobuf=False),
    Kind("discovery.k8s.io", "v1", "EndpointSlice", "discovery.v1"),
    Kind("coordination.k8s.io", "v1", "Lease", "coordination.v1"),
    Kind("networking.k8s.io", "v1", "NetworkPolicy", "networking.v1"),
    Kind("policy.networking.k8s.io", "v1alpha1", "AdminNetworkPolicy", "policy.v1alpha1", protobuf=False),
    Kind("policy.networking.k8s.io", "v1alpha1", "BaselineAdminNetworkPolicy", "policy.v1alpha1", protobuf=False),
    Kind("autoscaling", "v1", "Scale", "autoscaling.v1"),
    # JSON only: their protobuf field numbers are not transcribed.
    Kind("", "v1", "PersistentVolume", "core.v1", protobuf=False),
    Kind("", "v1", "PersistentVolumeClaim", "core.v1", protobuf=False),
    Kind("storage.k8s.io", "v1", "StorageClass", "storage.v1", protobuf=False),
    # kubectl 1.33's `create role|clusterrole|rolebinding|clusterrolebinding` and `auth can-i [--list]` send
    # these as protobuf. The other reviews are JSON only (no kubectl command sends them; their spec's `extra` is
    # a map of ExtraValue messages the decoder does not model); SelfSubjectReview's body carries nothing its
    # answer reads, so the server never decodes it (reviews.py).
    *(Kind("rbac.authorization.k8s.io", "v1", name, "rbac.v1")
      for name in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
    *(Kind("authorization.k8s.io", "v1", name, "authorization.v1", protobuf=name.startswith("Self"))
      for name in ("SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectAccessReview",
                   "SelfSubjectRulesReview")),
    *(Kind("authentication.k8s.io", "v1", name, "authentication.v1", protobuf=False)
      for name in ("TokenReview", "SelfSubjectReview")),
    Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "apiextensions.v1", protobuf=False),
    Kind("apiregistration.k8s.io", "v1", "APIService", "apiregistration.v1", protobuf=False),
)}

# The kinds the protobuf decoder takes.
PROTOBUF_KINDS: dict[str, Kind] = {name: kind for name, kind in KINDS.items() if kind.protobuf}


@dataclass(frozen=True)
class FieldType:
    """A parsed field type: `container` is "" (plain), "array" or "map"; `item` is a scalar name or a
    qualified type name; `merge_key`/`strategy` are upstream's patch tags."""

    container: str
    item: str
    merge_key: str | None = None
    strategy: str | None = None

    @property
    def is_scalar(self) -> bool:
        return self.item in SCALARS


def resolve(name: str, package: str) -> str:
    """The qualified name of a type referenced from `package`."""
    if name in SCALARS:
        return name
    if name.count(".") >= 2:
        qualified = name
    else:
        qualified = next((f"{pkg}.{name}" for pkg in (package, "core.v1", "meta.v1") if f"{pkg}.{name}" in TYPES),
                         f"{package}.{name}")
    if qualified not in TYPES:
        raise KeyError(f"schema: unknown type {name!r} referenced from {package}")
    return qualified


def field_type(spec: str, package: str) -> FieldType:
    """Parse one table entry ("[]Container @name") as seen from `package`."""
    text, _, patch = spec.partition(" ")
    container = ""
    if text.startswith("[]"):
        container, text = "array", text[2:]
    elif text.startswith("{}"):
        container, text = "map", text[2:]
    merge_key: str | None = None
    strategy: str | None = None
    if patch.startswith("@"):
        key, _, extra = patch[1:].partition("+")
        merge_key = key or None
        strategy = "merge" + (f",{extra}" if extra else "")
    elif patch:
        strategy = patch
    return FieldType(container, resolve(text, package), merge_key, strategy)


def _package_of(qualified: str) -> str:
    return qualified.rsplit(".", 1)[0]


def _walk(type_name: str, value: Any, path: str, found: list[str], prune: bool) -> None:
    if not isinstance(value, dict):
        return  # a type mismatch is a decoding error, not an unknown field
    table = TYPES[type_name]
    package = _package_of(type_name)
    unknown: list[str] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        spec = table.get(key)
        if spec is None:
            found.append(where)
            unknown.append(key)
            continue
        ftype = field_type(spec, package)
        if ftype.is_scalar:
            continue
        if ftype.container == "array":
            if isinstance(item, list):
                for i, element in enumerate(item):
                    _walk(ftype.item, element, f"{where}[{i}]", found, prune)
        elif ftype.container == "map":
            if isinstance(item, dict):
                for map_key, element in item.items():
                    _walk(ftype.item, element, f"{where}[{map_key}]", found, prune)
        else:
            _walk(ftype.item, item, where, found, prune)
    if prune:
        for key in unknown:
            del value[key]


def unknown_fields(kind: str, obj: dict[str, Any], *, prune: bool = False) -> list[str]:
    """Dotted paths of the fields in obj that `kind` does not have, in document order; [] for kinds
    this table does not describe (they are not checked). With prune, they are also removed from obj, as
    Go's decoding drops them: kube-apiserver never stores a field its types do not have."""
    known = KINDS.get(kind)
    if known is None:
        return []
    found: list[str] = []
    _walk(known.type_name, obj, "", found, prune)
    return found
