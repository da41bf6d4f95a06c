"""Kubernetes' protobuf wire format for request bodies, decoded into the JSON shape.

kubectl 1.33's typed commands (`kubectl create configmap|deployment|service|namespace`, `kubectl expose`) send
bodies as `application/vnd.kubernetes.protobuf`. Upstream's envelope
(k8s.io/apimachinery/pkg/runtime/serializer/protobuf) is

    b"k8s\\x00" + runtime.Unknown{1: typeMeta{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}

and `raw` is the typed message (k8s.io/api/<group>/<version>/generated.proto). The typed messages carry no
apiVersion/kind; the envelope does.

    decode_protobuf(body) -> {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {...}, "data": {...}}

Structure is data: schema.py's tables say what each JSON field is; FIELD_NUMBERS below says
which protobuf field number carries it, as kubectl 1.33 (k8s.io/api v0.33) writes it. The numbers come from
kubectl itself: upstream's gogo-protobuf code embeds each generated.proto's FileDescriptorProto (gzipped) in the
binary, and scripts/protobuf_field_numbers.py reads them out of the kubectl binary on PATH or given by --kubectl:

    scripts/protobuf_field_numbers.py --kubectl KUBECTL_1_33 --check    # name every disagreement, exit 1 if any
    scripts/protobuf_field_numbers.py --kubectl KUBECTL_1_33 --format python    # the table; --all: every message

The script also reads each Go field's json tag from the binary's Go type data, so it writes every entry below,
markers included; tests/unit/apiserver/test_protobuf_numbers.py checks on the machine's kubectl 1.33 that the
table is the script's output, that no field of a tabled message is left out, and that every message the
decodable kinds reach is tabled. A FIELD_NUMBERS entry is a JSON field name, with two markers:

    "image?"                        upstream's Go field is a non-pointer scalar tagged `json:",omitempty"`: gogo
                                    protobuf always writes it, encoding/json drops its zero value, so we drop
                                    "" / 0 / false to give the body the JSON path would give. Pointer fields and
                                    fields without omitempty keep their zero value.
    "...core.v1.VolumeSource"       an embedded (`json:",inline"`) struct: upstream nests it as a message, JSON
                                    flattens its fields into the parent.

Types schema.py models as free-form "object" (legacy volume sources, node config, ...) get JSON-type tables
here (EXTRA_TYPES, same notation as schema.py), reached through OBJECT_FIELDS; "RawJSON" is a message whose
field 1 holds JSON bytes (runtime.RawExtension, meta.v1.FieldsV1). DeleteOptions (DELETE bodies) is here too.

Special messages: IntOrString {1: type, 2: intVal, 3: strVal}; Quantity {1: string}; Time and MicroTime
{1: seconds, 2: nanos} (an empty message is Go's zero time, which JSON renders as null; Time drops nanos, as
upstream's Time.Unmarshal does). Maps are repeated entry messages {1: key, 2: value}. Unknown field numbers are
skipped, as upstream's generated Unmarshal does. Malformed input is a 400 BadRequest; a kind we hold no numbers
for is a 415, so the client can fall back to JSON.

Exceptions: everything raised is control.apiserver.errors.APIError.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from functools import cache
from typing import Any

from control.apiserver import errors
from control.apiserver.errors import APIError
from control.apiserver.schema import INTEGER_RANGES, PROTOBUF_KINDS, SCALARS, TYPES

__all__ = ["CONTENT_TYPE", "EXTRA_TYPES", "FIELD_NUMBERS", "OBJECT_FIELDS", "decode_protobuf"]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# -- field numbers (generated.proto, k8s.io/api v0.33) ------------------------------------------------------
FIELD_NUMBERS: dict[str, dict[int, str]] = {
    "meta.v1.Condition": {1: "type", 2: "status", 3: "observedGeneration?", 4: "lastTransitionTime", 5: "reason",
                          6: "message"},
    "meta.v1.DeleteOptions": {1: "gracePeriodSeconds", 2: "preconditions", 3: "orphanDependents",
                              4: "propagationPolicy", 5: "dryRun",
                              6: "ignoreStoreReadErrorWithClusterBreakingPotential"},
    "meta.v1.LabelSelector": {1: "matchLabels", 2: "matchExpressions"},
    "meta.v1.FieldSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    "meta.v1.LabelSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    "meta.v1.ManagedFieldsEntry": {1: "manager?", 2: "operation?", 3: "apiVersion?", 4: "time", 6: "fieldsType?",
                                   7: "fieldsV1", 8: "subresource?"},
    "meta.v1.ObjectMeta": {1: "name?", 2: "generateName?", 3: "namespace?", 4: "selfLink?", 5: "uid?",
                           6: "resourceVersion?", 7: "generation?", 8: "creationTimestamp", 9: "deletionTimestamp",
                           10: "deletionGracePeriodSeconds", 11: "labels", 12: "annotations", 13: "ownerReferences",
                           14: "finalizers", 17: "managedFields"},
    "meta.v1.OwnerReference": {1: "kind", 3: "name", 4: "uid", 5: "apiVersion", 6: "controller",
                               7: "blockOwnerDeletion"},
    "meta.v1.Preconditions": {1: "uid", 2: "resourceVersion"},
    "authorization.v1.FieldSelectorAttributes": {1: "rawSelector?", 2: "requirements"},
    "authorization.v1.LabelSelectorAttributes": {1: "rawSelector?", 2: "requirements"},
    "authorization.v1.NonResourceAttributes": {1: "path?", 2: "verb?"},
    "authorization.v1.NonResourceRule": {1: "verbs", 2: "nonResourceURLs"},
    "authorization.v1.ResourceAttributes": {1: "namespace?", 2: "verb?", 3: "group?", 4: "version?", 5: "resource?",
                                            6: "subresource?", 7: "name?", 8: "fieldSelector", 9: "labelSelector"},
    "authorization.v1.ResourceRule": {1: "verbs", 2: "apiGroups", 3: "resources", 4: "resourceNames"},
    "authorization.v1.SelfSubjectAccessReview": {1: "metadata", 2: "spec", 3: "status"},
    "authorization.v1.SelfSubjectAccessReviewSpec": {1: "resourceAttributes", 2: "nonResourceAttributes"},
    "authorization.v1.SelfSubjectRulesReview": {1: "metadata", 2: "spec", 3: "status"},
    "authorization.v1.SelfSubjectRulesReviewSpec": {1: "namespace?"},
    "authorization.v1.SubjectAccessReviewStatus": {1: "allowed", 2: "reason?", 3: "evaluationError?", 4: "denied?"},
    "authorization.v1.SubjectRulesReviewStatus": {1: "resourceRules", 2: "nonResourceRules", 3: "incomplete",
                                                  4: "evaluationError?"},
    "batch.v1.CronJob": {1: "metadata", 2: "spec", 3: "status"},
    "batch.v1.CronJobSpec": {1: "schedule", 2: "startingDeadlineSeconds", 3: "concurrencyPolicy?", 4: "suspend",
                             5: "jobTemplate", 6: "successfulJobsHistoryLimit", 7: "failedJobsHistoryLimit",
                             8: "timeZone"},
    "batch.v1.CronJobStatus": {1: "active", 4: "lastScheduleTime", 5: "lastSuccessfulTime"},
    "batch.v1.JobTemplateSpec": {1: "metadata", 2: "spec"},
    "batch.v1.Job": {1: "metadata", 2: "spec", 3: "status"},
    "batch.v1.JobSpec": {1: "parallelism", 2: "completions", 3: "activeDeadlineSeconds", 4: "selector",
                         5: "manualSelector", 6: "template", 7: "backoffLimit", 8: "ttlSecondsAfterFinished",
                         9: "completionMode", 10: "suspend", 11: "podFailurePolicy", 12: "backoffLimitPerIndex",
                         13: "maxFailedIndexes", 14: "podReplacementPolicy", 15: "managedBy", 16: "successPolicy"},
    "batch.v1.JobStatus": {1: "conditions", 2: "startTime", 3: "completionTime", 4: "active?", 5: "succeeded?",
                           6: "failed?", 7: "completedIndexes?", 8: "uncountedTerminatedPods", 9: "ready",
                           10: "failedIndexes", 11: "terminating"},
    "batch.v1.JobCondition": {1: "type", 2: "status", 3: "lastProbeTime", 4: "lastTransitionTime", 5: "reason?",
                              6: "message?"},
    "batch.v1.UncountedTerminatedPods": {1: "succeeded", 2: "failed"},
    "batch.v1.PodFailurePolicy": {1: "rules"},
    "batch.v1.PodFailurePolicyRule": {1: "action", 2: "onExitCodes", 3: "onPodConditions"},
    "batch.v1.PodFailurePolicyOnExitCodesRequirement": {1: "containerName", 2: "operator", 3: "values"},
    "batch.v1.PodFailurePolicyOnPodConditionsPattern": {1: "type", 2: "status"},
    "batch.v1.SuccessPolicy": {1: "rules"},
    "batch.v1.SuccessPolicyRule": {1: "succeededIndexes", 2: "succeededCount"},
    "core.v1.AWSElasticBlockStoreVolumeSource": {1: "volumeID", 2: "fsType?", 3: "partition?", 4: "readOnly?"},
    "core.v1.Affinity": {1: "nodeAffinity", 2: "podAffinity", 3: "podAntiAffinity"},
    "core.v1.AppArmorProfile": {1: "type", 2: "localhostProfile"},
    "core.v1.AttachedVolume": {1: "name", 2: "devicePath"},
    "core.v1.AzureDiskVolumeSource": {1: "diskName", 2: "diskURI", 3: "cachingMode", 4: "fsType", 5: "readOnly",
                                      6: "kind"},
    "core.v1.AzureFileVolumeSource": {1: "secretName", 2: "shareName", 3: "readOnly?"},
    "core.v1.Binding": {1: "metadata", 2: "target"},
    "core.v1.CSIVolumeSource": {1: "driver", 2: "readOnly", 3: "fsType", 4: "volumeAttributes",
                                5: "nodePublishSecretRef"},
    "core.v1.Capabilities": {1: "add", 2: "drop"},
    "core.v1.CephFSVolumeSource": {1: "monitors", 2: "path?", 3: "user?", 4: "secretFile?", 5: "secretRef",
                                   6: "readOnly?"},
    "core.v1.CinderVolumeSource": {1: "volumeID", 2: "fsType?", 3: "readOnly?", 4: "secretRef"},
    "core.v1.ClientIPConfig": {1: "timeoutSeconds"},
    "core.v1.ClusterTrustBundleProjection": {1: "name", 2: "signerName", 3: "labelSelector", 4: "path",
                                             5: "optional"},
    "core.v1.ConfigMap": {1: "metadata", 2: "data", 3: "binaryData", 4: "immutable"},
    "core.v1.ConfigMapEnvSource": {1: "...core.v1.LocalObjectReference", 2: "optional"},
    "core.v1.ConfigMapKeySelector": {1: "...core.v1.LocalObjectReference", 2: "key", 3: "optional"},
    "core.v1.ConfigMapNodeConfigSource": {1: "namespace", 2: "name", 3: "uid?", 4: "resourceVersion?",
                                          5: "kubeletConfigKey"},
    "core.v1.ConfigMapProjection": {1: "...core.v1.LocalObjectReference", 2: "items", 4: "optional"},
    "core.v1.ConfigMapVolumeSource": {1: "...core.v1.LocalObjectReference", 2: "items", 3: "defaultMode",
                                      4: "optional"},
    "core.v1.Container": {1: "name", 2: "image?", 3: "command", 4: "args", 5: "workingDir?", 6: "ports", 7: "env",
                          8: "resources", 9: "volumeMounts", 10: "livenessProbe", 11: "readinessProbe",
                          12: "lifecycle", 13: "terminationMessagePath?", 14: "imagePullPolicy?",
                          15: "securityContext", 16: "stdin?", 17: "stdinOnce?", 18: "tty?", 19: "envFrom",
                          20: "terminationMessagePolicy?", 21: "volumeDevices", 22: "startupProbe",
                          23: "resizePolicy", 24: "restartPolicy"},
    "core.v1.ContainerImage": {1: "names", 2: "sizeBytes?"},
    "core.v1.ContainerPort": {1: "name?", 2: "hostPort?", 3: "containerPort", 4: "protocol?", 5: "hostIP?"},
    "core.v1.ContainerResizePolicy": {1: "resourceName", 2: "restartPolicy"},
    "core.v1.ContainerState": {1: "waiting", 2: "running", 3: "terminated"},
    "core.v1.ContainerStateRunning": {1: "startedAt"},
    "core.v1.ContainerStateTerminated": {1: "exitCode", 2: "signal?", 3: "reason?", 4: "message?", 5: "startedAt",
                                         6: "finishedAt", 7: "containerID?"},
    "core.v1.ContainerStateWaiting": {1: "reason?", 2: "message?"},
    "core.v1.ContainerStatus": {1: "name", 2: "state", 3: "lastState", 4: "ready", 5: "restartCount", 6: "image",
                                7: "imageID", 8: "containerID?", 9: "started", 10: "allocatedResources",
                                11: "resources", 12: "volumeMounts", 13: "user", 14: "allocatedResourcesStatus",
                                15: "stopSignal"},
    "core.v1.ContainerUser": {1: "linux"},
    "core.v1.DaemonEndpoint": {1: "Port"},
    "core.v1.DownwardAPIProjection": {1: "items"},
    "core.v1.DownwardAPIVolumeFile": {1: "path", 2: "fieldRef", 3: "resourceFieldRef", 4: "mode"},
    "core.v1.DownwardAPIVolumeSource": {1: "items", 2: "defaultMode"},
    "core.v1.EmptyDirVolumeSource": {1: "medium?", 2: "sizeLimit"},
    "core.v1.EndpointAddress": {1: "ip", 2: "targetRef", 3: "hostname?", 4: "nodeName"},
    "core.v1.EndpointPort": {1: "name?", 2: "port", 3: "protocol?", 4: "appProtocol"},
    "core.v1.EndpointSubset": {1: "addresses", 2: "notReadyAddresses", 3: "ports"},
    "core.v1.Endpoints": {1: "metadata", 2: "subsets"},
    "core.v1.EnvFromSource": {1: "prefix?", 2: "configMapRef", 3: "secretRef"},
    "core.v1.EnvVar": {1: "name", 2: "value?", 3: "valueFrom"},
    "core.v1.EnvVarSource": {1: "fieldRef", 2: "resourceFieldRef", 3: "configMapKeyRef", 4: "secretKeyRef"},
    "core.v1.EphemeralContainer": {1: "...core.v1.EphemeralContainerCommon", 2: "targetContainerName?"},
    "core.v1.EphemeralContainerCommon": {1: "name", 2: "image?", 3: "command", 4: "args", 5: "workingDir?",
                                         6: "ports", 7: "env", 8: "resources", 9: "volumeMounts",
                                         10: "livenessProbe", 11: "readinessProbe", 12: "lifecycle",
                                         13: "terminationMessagePath?", 14: "imagePullPolicy?",
                                         15: "securityContext", 16: "stdin?", 17: "stdinOnce?", 18: "tty?",
                                         19: "envFrom", 20: "terminationMessagePolicy?", 21: "volumeDevices",
                                         22: "startupProbe", 23: "resizePolicy", 24: "restartPolicy"},
    "core.v1.EphemeralVolumeSource": {1: "volumeClaimTemplate"},
    "core.v1.Event": {1: "metadata", 2: "involvedObject", 3: "reason?", 4: "message?", 5: "source",
                      6: "firstTimestamp", 7: "lastTimestamp", 8: "count?", 9: "type?", 10: "eventTime",
                      11: "series", 12: "action?", 13: "related", 14: "reportingComponent", 15: "reportingInstance"},
    "core.v1.EventSeries": {1: "count?", 2: "lastObservedTime"},
    "core.v1.EventSource": {1: "component?", 2: "host?"},
    "core.v1.ExecAction": {1: "command"},
    "core.v1.FCVolumeSource": {1: "targetWWNs", 2: "lun", 3: "fsType?", 4: "readOnly?", 5: "wwids"},
    "core.v1.FlexVolumeSource": {1: "driver", 2: "fsType?", 3: "secretRef", 4: "readOnly?", 5: "options"},
    "core.v1.FlockerVolumeSource": {1: "datasetName?", 2: "datasetUUID?"},
    "core.v1.GCEPersistentDiskVolumeSource": {1: "pdName", 2: "fsType?", 3: "partition?", 4: "readOnly?"},
    "core.v1.GRPCAction": {1: "port", 2: "service"},
    "core.v1.GitRepoVolumeSource": {1: "repository", 2: "revision?", 3: "directory?"},
    "core.v1.GlusterfsVolumeSource": {1: "endpoints", 2: "path", 3: "readOnly?"},
    "core.v1.HTTPGetAction": {1: "path?", 2: "port", 3: "host?", 4: "scheme?", 5: "httpHeaders"},
    "core.v1.HTTPHeader": {1: "name", 2: "value"},
    "core.v1.HostAlias": {1: "ip", 2: "hostnames"},
    "core.v1.HostIP": {1: "ip"},
    "core.v1.HostPathVolumeSource": {1: "path", 2: "type"},
    "core.v1.ISCSIVolumeSource": {1: "targetPortal", 2: "iqn", 3: "lun", 4: "iscsiInterface?", 5: "fsType?",
                                  6: "readOnly?", 7: "portals", 8: "chapAuthDiscovery?", 10: "secretRef",
                                  11: "chapAuthSession?", 12: "initiatorName"},
    "core.v1.ImageVolumeSource": {1: "reference?", 2: "pullPolicy?"},
    "core.v1.KeyToPath": {1: "key", 2: "path", 3: "mode"},
    "core.v1.Lifecycle": {1: "postStart", 2: "preStop", 3: "stopSignal"},
    "core.v1.LifecycleHandler": {1: "exec", 2: "httpGet", 3: "tcpSocket", 4: "sleep"},
    "core.v1.LinuxContainerUser": {1: "uid", 2: "gid", 3: "supplementalGroups"},
    "core.v1.LoadBalancerIngress": {1: "ip?", 2: "hostname?", 3: "ipMode", 4: "ports"},
    "core.v1.LoadBalancerStatus": {1: "ingress"},
    "core.v1.LocalObjectReference": {1: "name?"},
    "core.v1.NFSVolumeSource": {1: "server", 2: "path", 3: "readOnly?"},
    "core.v1.Namespace": {1: "metadata", 2: "spec", 3: "status"},
    "core.v1.NamespaceCondition": {1: "type", 2: "status", 4: "lastTransitionTime", 5: "reason?", 6: "message?"},
    "core.v1.NamespaceSpec": {1: "finalizers"},
    "core.v1.NamespaceStatus": {1: "phase?", 2: "conditions"},
    "core.v1.Node": {1: "metadata", 2: "spec", 3: "status"},
    "core.v1.NodeAddress": {1: "type", 2: "address"},
    "core.v1.NodeAffinity": {1: "requiredDuringSchedulingIgnoredDuringExecution",
                             2: "preferredDuringSchedulingIgnoredDuringExecution"},
    "core.v1.NodeCondition": {1: "type", 2: "status", 3: "lastHeartbeatTime", 4: "lastTransitionTime", 5: "reason?",
                              6: "message?"},
    "core.v1.NodeConfigSource": {2: "configMap"},
    "core.v1.NodeConfigStatus": {1: "assigned", 2: "active", 3: "lastKnownGood", 4: "error?"},
    "core.v1.NodeDaemonEndpoints": {1: "kubeletEndpoint"},
    "core.v1.NodeFeatures": {1: "supplementalGroupsPolicy"},
    "core.v1.NodeRuntimeHandler": {1: "name", 2: "features"},
    "core.v1.NodeRuntimeHandlerFeatures": {1: "recursiveReadOnlyMounts", 2: "userNamespaces"},
    "core.v1.NodeSelector": {1: "nodeSelectorTerms"},
    "core.v1.NodeSelectorRequirement": {1: "key", 2: "operator", 3: "values"},
    "core.v1.NodeSelectorTerm": {1: "matchExpressions", 2: "matchFields"},
    "core.v1.NodeSpec": {1: "podCIDR?", 2: "externalID?", 3: "providerID?", 4: "unschedulable?", 5: "taints",
                         6: "configSource", 7: "podCIDRs"},
    "core.v1.NodeStatus": {1: "capacity", 2: "allocatable", 3: "phase?", 4: "conditions", 5: "addresses",
                           6: "daemonEndpoints", 7: "nodeInfo", 8: "images", 9: "volumesInUse",
                           10: "volumesAttached", 11: "config", 12: "runtimeHandlers", 13: "features"},
    "core.v1.NodeSwapStatus": {1: "capacity"},
    "core.v1.NodeSystemInfo": {1: "machineID", 2: "systemUUID", 3: "bootID", 4: "kernelVersion", 5: "osImage",
                               6: "containerRuntimeVersion", 7: "kubeletVersion", 8: "kubeProxyVersion",
                               9: "operatingSystem", 10: "architecture", 11: "swap"},
    "core.v1.ObjectFieldSelector": {1: "apiVersion?", 2: "fieldPath"},
    "core.v1.ObjectReference": {1: "kind?", 2: "namespace?", 3: "name?", 4: "uid?", 5: "apiVersion?",
                                6: "resourceVersion?", 7: "fieldPath?"},
    "core.v1.PersistentVolumeClaimSpec": {1: "accessModes", 2: "resources", 3: "volumeName?", 4: "selector",
                                          5: "storageClassName", 6: "volumeMode", 7: "dataSource",
                                          8: "dataSourceRef", 9: "volumeAttributesClassName"},
    "core.v1.PersistentVolumeClaimTemplate": {1: "metadata", 2: "spec"},
    "core.v1.PersistentVolumeClaimVolumeSource": {1: "claimName", 2: "readOnly?"},
    "core.v1.PhotonPersistentDiskVolumeSource": {1: "pdID", 2: "fsType?"},
    "core.v1.Pod": {1: "metadata", 2: "spec", 3: "status"},
    "core.v1.PodAffinity": {1: "requiredDuringSchedulingIgnoredDuringExecution",
                            2: "preferredDuringSchedulingIgnoredDuringExecution"},
    "core.v1.PodAffinityTerm": {1: "labelSelector", 2: "namespaces", 3: "topologyKey", 4: "namespaceSelector",
                                5: "matchLabelKeys", 6: "mismatchLabelKeys"},
    "core.v1.PodAntiAffinity": {1: "requiredDuringSchedulingIgnoredDuringExecution",
                                2: "preferredDuringSchedulingIgnoredDuringExecution"},
    "core.v1.PodCondition": {1: "type", 2: "status", 3: "lastProbeTime", 4: "lastTransitionTime", 5: "reason?",
                             6: "message?", 7: "observedGeneration?"},
    "core.v1.PodDNSConfig": {1: "nameservers", 2: "searches", 3: "options"},
    "core.v1.PodDNSConfigOption": {1: "name?", 2: "value"},
    "core.v1.PodIP": {1: "ip"},
    "core.v1.PodOS": {1: "name"},
    "core.v1.PodReadinessGate": {1: "conditionType"},
    "core.v1.PodResourceClaim": {1: "name", 3: "resourceClaimName", 4: "resourceClaimTemplateName"},
    "core.v1.PodResourceClaimStatus": {1: "name", 2: "resourceClaimName"},
    "core.v1.PodSchedulingGate": {1: "name"},
    "core.v1.PodSecurityContext": {1: "seLinuxOptions", 2: "runAsUser", 3: "runAsNonRoot", 4: "supplementalGroups",
                                   5: "fsGroup", 6: "runAsGroup", 7: "sysctls", 8: "windowsOptions",
                                   9: "fsGroupChangePolicy", 10: "seccompProfile", 11: "appArmorProfile",
                                   12: "supplementalGroupsPolicy", 13: "seLinuxChangePolicy"},
    "core.v1.PodSpec": {1: "volumes", 2: "containers", 3: "restartPolicy?", 4: "terminationGracePeriodSeconds",
                        5: "activeDeadlineSeconds", 6: "dnsPolicy?", 7: "nodeSelector", 8: "serviceAccountName?",
                        9: "serviceAccount?", 10: "nodeName?", 11: "hostNetwork?", 12: "hostPID?", 13: "hostIPC?",
                        14: "securityContext", 15: "imagePullSecrets", 16: "hostname?", 17: "subdomain?",
                        18: "affinity", 19: "schedulerName?", 20: "initContainers",
                        21: "automountServiceAccountToken", 22: "tolerations", 23: "hostAliases",
                        24: "priorityClassName?", 25: "priority", 26: "dnsConfig", 27: "shareProcessNamespace",
                        28: "readinessGates", 29: "runtimeClassName", 30: "enableServiceLinks",
                        31: "preemptionPolicy", 32: "overhead", 33: "topologySpreadConstraints",
                        34: "ephemeralContainers", 35: "setHostnameAsFQDN", 36: "os", 37: "hostUsers",
                        38: "schedulingGates", 39: "resourceClaims", 40: "resources"},
    "core.v1.PodStatus": {1: "phase?", 2: "conditions", 3: "message?", 4: "reason?", 5: "hostIP?", 6: "podIP?",
                          7: "startTime", 8: "containerStatuses", 9: "qosClass?", 10: "initContainerStatuses",
                          11: "nominatedNodeName?", 12: "podIPs", 13: "ephemeralContainerStatuses", 14: "resize?",
                          15: "resourceClaimStatuses", 16: "hostIPs", 17: "observedGeneration?"},
    "core.v1.PodTemplateSpec": {1: "metadata", 2: "spec"},
    "core.v1.PodTemplate": {1: "metadata", 2: "template"},
    "core.v1.PortStatus": {1: "port", 2: "protocol", 3: "error"},
    "core.v1.PortworxVolumeSource": {1: "volumeID", 2: "fsType?", 3: "readOnly?"},
    "core.v1.PreferredSchedulingTerm": {1: "weight", 2: "preference"},
    "core.v1.Probe": {1: "...core.v1.ProbeHandler", 2: "initialDelaySeconds?", 3: "timeoutSeconds?",
                      4: "periodSeconds?", 5: "successThreshold?", 6: "failureThreshold?",
                      7: "terminationGracePeriodSeconds"},
    "core.v1.ProbeHandler": {1: "exec", 2: "httpGet", 3: "tcpSocket", 4: "grpc"},
    "core.v1.ProjectedVolumeSource": {1: "sources", 2: "defaultMode"},
    "core.v1.QuobyteVolumeSource": {1: "registry", 2: "volume", 3: "readOnly?", 4: "user?", 5: "group?",
                                    6: "tenant?"},
    "core.v1.RBDVolumeSource": {1: "monitors", 2: "image", 3: "fsType?", 4: "pool?", 5: "user?", 6: "keyring?",
                                7: "secretRef", 8: "readOnly?"},
    "core.v1.ReplicationController": {1: "metadata", 2: "spec", 3: "status"},
    "core.v1.ReplicationControllerCondition": {1: "type", 2: "status", 3: "lastTransitionTime", 4: "reason?",
                                               5: "message?"},
    "core.v1.ReplicationControllerSpec": {1: "replicas", 2: "selector", 3: "template", 4: "minReadySeconds?"},
    "core.v1.ReplicationControllerStatus": {1: "replicas", 2: "fullyLabeledReplicas?", 3: "observedGeneration?",
                                            4: "readyReplicas?", 5: "availableReplicas?", 6: "conditions"},
    "core.v1.ResourceClaim": {1: "name", 2: "request?"},
    "core.v1.ResourceFieldSelector": {1: "containerName?", 2: "resource", 3: "divisor"},
    "core.v1.ResourceHealth": {1: "resourceID", 2: "health?"},
    "core.v1.ResourceRequirements": {1: "limits", 2: "requests", 3: "claims"},
    "core.v1.ResourceStatus": {1: "name", 2: "resources"},
    "core.v1.SELinuxOptions": {1: "user?", 2: "role?", 3: "type?", 4: "level?"},
    "core.v1.ScaleIOVolumeSource": {1: "gateway", 2: "system", 3: "secretRef", 4: "sslEnabled?",
                                    5: "protectionDomain?", 6: "storagePool?", 7: "storageMode?", 8: "volumeName?",
                                    9: "fsType?", 10: "readOnly?"},
    "core.v1.SeccompProfile": {1: "type", 2: "localhostProfile"},
    "core.v1.Secret": {1: "metadata", 2: "data", 3: "type?", 4: "stringData", 5: "immutable"},
    "core.v1.SecretEnvSource": {1: "...core.v1.LocalObjectReference", 2: "optional"},
    "core.v1.SecretKeySelector": {1: "...core.v1.LocalObjectReference", 2: "key", 3: "optional"},
    "core.v1.SecretProjection": {1: "...core.v1.LocalObjectReference", 2: "items", 4: "optional"},
    "core.v1.SecretVolumeSource": {1: "secretName?", 2: "items", 3: "defaultMode", 4: "optional"},
    "core.v1.SecurityContext": {1: "capabilities", 2: "privileged", 3: "seLinuxOptions", 4: "runAsUser",
                                5: "runAsNonRoot", 6: "readOnlyRootFilesystem", 7: "allowPrivilegeEscalation",
                                8: "runAsGroup", 9: "procMount", 10: "windowsOptions", 11: "seccompProfile",
                                12: "appArmorProfile"},
    "core.v1.Service": {1: "metadata", 2: "spec", 3: "status"},
    "core.v1.ServiceAccount": {1: "metadata", 2: "secrets", 3: "imagePullSecrets", 4: "automountServiceAccountToken"},
    "core.v1.ServiceAccountTokenProjection": {1: "audience?", 2: "expirationSeconds", 3: "path"},
    "core.v1.ServicePort": {1: "name?", 2: "protocol?", 3: "port", 4: "targetPort", 5: "nodePort?", 6: "appProtocol"},
    "core.v1.ServiceSpec": {1: "ports", 2: "selector", 3: "clusterIP?", 4: "type?", 5: "externalIPs",
                            7: "sessionAffinity?", 8: "loadBalancerIP?", 9: "loadBalancerSourceRanges",
                            10: "externalName?", 11: "externalTrafficPolicy?", 12: "healthCheckNodePort?",
                            13: "publishNotReadyAddresses?", 14: "sessionAffinityConfig", 17: "ipFamilyPolicy",
                            18: "clusterIPs", 19: "ipFamilies", 20: "allocateLoadBalancerNodePorts",
                            21: "loadBalancerClass", 22: "internalTrafficPolicy", 23: "trafficDistribution"},
    "core.v1.ServiceStatus": {1: "loadBalancer", 2: "conditions"},
    "core.v1.SessionAffinityConfig": {1: "clientIP"},
    "core.v1.SleepAction": {1: "seconds"},
    "core.v1.StorageOSVolumeSource": {1: "volumeName?", 2: "volumeNamespace?", 3: "fsType?", 4: "readOnly?",
                                      5: "secretRef"},
    "core.v1.Sysctl": {1: "name", 2: "value"},
    "core.v1.TCPSocketAction": {1: "port", 2: "host?"},
    "core.v1.Taint": {1: "key", 2: "value?", 3: "effect", 4: "timeAdded"},
    "core.v1.Toleration": {1: "key?", 2: "operator?", 3: "value?", 4: "effect?", 5: "tolerationSeconds"},
    "core.v1.TopologySpreadConstraint": {1: "maxSkew", 2: "topologyKey", 3: "whenUnsatisfiable", 4: "labelSelector",
                                         5: "minDomains", 6: "nodeAffinityPolicy", 7: "nodeTaintsPolicy",
                                         8: "matchLabelKeys"},
    "core.v1.TypedLocalObjectReference": {1: "apiGroup", 2: "kind", 3: "name"},
    "core.v1.TypedObjectReference": {1: "apiGroup", 2: "kind", 3: "name", 4: "namespace"},
    "core.v1.Volume": {1: "name", 2: "...core.v1.VolumeSource"},
    "core.v1.VolumeDevice": {1: "name", 2: "devicePath"},
    "core.v1.VolumeMount": {1: "name", 2: "readOnly?", 3: "mountPath", 4: "subPath?", 5: "mountPropagation",
                            6: "subPathExpr?", 7: "recursiveReadOnly"},
    "core.v1.VolumeMountStatus": {1: "name", 2: "mountPath", 3: "readOnly?", 4: "recursiveReadOnly"},
    "core.v1.VolumeProjection": {1: "secret", 2: "downwardAPI", 3: "configMap", 4: "serviceAccountToken",
                                 5: "clusterTrustBundle"},
    "core.v1.VolumeResourceRequirements": {1: "limits", 2: "requests"},
    "core.v1.VolumeSource": {1: "hostPath", 2: "emptyDir", 3: "gcePersistentDisk", 4: "awsElasticBlockStore",
                             5: "gitRepo", 6: "secret", 7: "nfs", 8: "iscsi", 9: "glusterfs",
                             10: "persistentVolumeClaim", 11: "rbd", 12: "flexVolume", 13: "cinder", 14: "cephfs",
                             15: "flocker", 16: "downwardAPI", 17: "fc", 18: "azureFile", 19: "configMap",
                             20: "vsphereVolume", 21: "quobyte", 22: "azureDisk", 23: "photonPersistentDisk",
                             24: "portworxVolume", 25: "scaleIO", 26: "projected", 27: "storageos", 28: "csi",
                             29: "ephemeral", 30: "image"},
    "core.v1.VsphereVirtualDiskVolumeSource": {1: "volumePath", 2: "fsType?", 3: "storagePolicyName?",
                                               4: "storagePolicyID?"},
    "core.v1.WeightedPodAffinityTerm": {1: "weight", 2: "podAffinityTerm"},
    "core.v1.WindowsSecurityContextOptions": {1: "gmsaCredentialSpecName", 2: "gmsaCredentialSpec",
                                              3: "runAsUserName", 4: "hostProcess"},
    "apps.v1.Deployment": {1: "metadata", 2: "spec", 3: "status"},
    "apps.v1.DeploymentCondition": {1: "type", 2: "status", 4: "reason?", 5: "message?", 6: "lastUpdateTime",
                                    7: "lastTransitionTime"},
    "apps.v1.DeploymentSpec": {1: "replicas", 2: "selector", 3: "template", 4: "strategy", 5: "minReadySeconds?",
                               6: "revisionHistoryLimit", 7: "paused?", 9: "progressDeadlineSeconds"},
    "apps.v1.DeploymentStatus": {1: "observedGeneration?", 2: "replicas?", 3: "updatedReplicas?",
                                 4: "availableReplicas?", 5: "unavailableReplicas?", 6: "conditions",
                                 7: "readyReplicas?", 8: "collisionCount", 9: "terminatingReplicas"},
    "apps.v1.DeploymentStrategy": {1: "type?", 2: "rollingUpdate"},
    "apps.v1.ReplicaSet": {1: "metadata", 2: "spec", 3: "status"},
    "apps.v1.ReplicaSetCondition": {1: "type", 2: "status", 3: "lastTransitionTime", 4: "reason?", 5: "message?"},
    "apps.v1.ReplicaSetSpec": {1: "replicas", 2: "selector", 3: "template", 4: "minReadySeconds?"},
    "apps.v1.ReplicaSetStatus": {1: "replicas", 2: "fullyLabeledReplicas?", 3: "observedGeneration?",
                                 4: "readyReplicas?", 5: "availableReplicas?", 6: "conditions",
                                 7: "terminatingReplicas"},
    "apps.v1.RollingUpdateDeployment": {1: "maxUnavailable", 2: "maxSurge"},
    "discovery.v1.Endpoint": {1: "addresses", 2: "conditions", 3: "hostname", 4: "targetRef",
                              5: "deprecatedTopology", 6: "nodeName", 7: "zone", 8: "hints"},
    "discovery.v1.EndpointConditions": {1: "ready", 2: "serving", 3: "terminating"},
    "discovery.v1.EndpointHints": {1: "forZones", 2: "forNodes"},
    "discovery.v1.EndpointPort": {1: "name", 2: "protocol", 3: "port", 4: "appProtocol"},
    "discovery.v1.EndpointSlice": {1: "metadata", 2: "endpoints", 3: "ports", 4: "addressType"},
    "discovery.v1.ForNode": {1: "name"},
    "discovery.v1.ForZone": {1: "name"},
    "coordination.v1.Lease": {1: "metadata", 2: "spec"},
    "coordination.v1.LeaseSpec": {1: "holderIdentity", 2: "leaseDurationSeconds", 3: "acquireTime", 4: "renewTime",
                                  5: "leaseTransitions", 6: "strategy", 7: "preferredHolder"},
    "networking.v1.IPBlock": {1: "cidr", 2: "except"},
    "networking.v1.NetworkPolicy": {1: "metadata", 2: "spec"},
    "networking.v1.NetworkPolicyEgressRule": {1: "ports", 2: "to"},
    "networking.v1.NetworkPolicyIngressRule": {1: "ports", 2: "from"},
    "networking.v1.NetworkPolicyPeer": {1: "podSelector", 2: "namespaceSelector", 3: "ipBlock"},
    "networking.v1.NetworkPolicyPort": {1: "protocol", 2: "port", 3: "endPort"},
    "networking.v1.NetworkPolicySpec": {1: "podSelector", 2: "ingress", 3: "egress", 4: "policyTypes"},
    "autoscaling.v1.Scale": {1: "metadata", 2: "spec", 3: "status"},
    "autoscaling.v1.ScaleSpec": {1: "replicas?"},
    "autoscaling.v1.ScaleStatus": {1: "replicas", 2: "selector?"},
    "rbac.v1.AggregationRule": {1: "clusterRoleSelectors"},
    "rbac.v1.ClusterRole": {1: "metadata", 2: "rules", 3: "aggregationRule"},
    "rbac.v1.ClusterRoleBinding": {1: "metadata", 2: "subjects", 3: "roleRef"},
    "rbac.v1.PolicyRule": {1: "verbs", 2: "apiGroups", 3: "resources", 4: "resourceNames", 5: "nonResourceURLs"},
    "rbac.v1.Role": {1: "metadata", 2: "rules"},
    "rbac.v1.RoleBinding": {1: "metadata", 2: "subjects", 3: "roleRef"},
    "rbac.v1.RoleRef": {1: "apiGroup", 2: "kind", 3: "name"},
    "rbac.v1.Subject": {1: "kind", 2: "apiGroup?", 3: "name", 4: "namespace?"},
}

EXTRA_TYPES: dict[str, dict[str, str]] = {
    "batch.v1.PodFailurePolicy": {"rules": "[]batch.v1.PodFailurePolicyRule"},
    "batch.v1.PodFailurePolicyRule": {"action": "string",
                                      "onExitCodes": "batch.v1.PodFailurePolicyOnExitCodesRequirement",
                                      "onPodConditions": "[]batch.v1.PodFailurePolicyOnPodConditionsPattern"},
    "batch.v1.PodFailurePolicyOnExitCodesRequirement": {"containerName": "string", "operator": "string",
                                                        "values": "[]int32"},
    "batch.v1.PodFailurePolicyOnPodConditionsPattern": {"type": "string", "status": "string"},
    "batch.v1.SuccessPolicy": {"rules": "[]batch.v1.SuccessPolicyRule"},
    "batch.v1.SuccessPolicyRule": {"succeededIndexes": "string", "succeededCount": "int32"},
    "core.v1.AWSElasticBlockStoreVolumeSource": {"volumeID": "string", "fsType": "string", "partition": "int32",
                                                 "readOnly": "boolean"},
    "core.v1.AzureDiskVolumeSource": {"diskName": "string", "diskURI": "string", "cachingMode": "string",
                                      "fsType": "string", "readOnly": "boolean", "kind": "string"},
    "core.v1.AzureFileVolumeSource": {"secretName": "string", "shareName": "string", "readOnly": "boolean"},
    "core.v1.CSIVolumeSource": {"driver": "string", "readOnly": "boolean", "fsType": "string",
                                "volumeAttributes": "{}string",
                                "nodePublishSecretRef": "core.v1.LocalObjectReference"},
    "core.v1.CephFSVolumeSource": {"monitors": "[]string", "path": "string", "user": "string",
                                   "secretFile": "string", "secretRef": "core.v1.LocalObjectReference",
                                   "readOnly": "boolean"},
    "core.v1.CinderVolumeSource": {"volumeID": "string", "fsType": "string", "readOnly": "boolean",
                                   "secretRef": "core.v1.LocalObjectReference"},
    "core.v1.ClusterTrustBundleProjection": {"name": "string", "signerName": "string",
                                             "labelSelector": "meta.v1.LabelSelector", "optional": "boolean",
                                             "path": "string"},
    "core.v1.ConfigMapNodeConfigSource": {"namespace": "string", "name": "string", "uid": "string",
                                          "resourceVersion": "string", "kubeletConfigKey": "string"},
    "core.v1.ContainerUser": {"linux": "core.v1.LinuxContainerUser"},
    "core.v1.EphemeralVolumeSource": {"volumeClaimTemplate": "core.v1.PersistentVolumeClaimTemplate"},
    "core.v1.FCVolumeSource": {"targetWWNs": "[]string", "lun": "int32", "fsType": "string", "readOnly": "boolean",
                               "wwids": "[]string"},
    "core.v1.FlexVolumeSource": {"driver": "string", "fsType": "string", "secretRef": "core.v1.LocalObjectReference",
                                 "readOnly": "boolean", "options": "{}string"},
    "core.v1.FlockerVolumeSource": {"datasetName": "string", "datasetUUID": "string"},
    "core.v1.GCEPersistentDiskVolumeSource": {"pdName": "string", "fsType": "string", "partition": "int32",
                                              "readOnly": "boolean"},
    "core.v1.GitRepoVolumeSource": {"repository": "string", "revision": "string", "directory": "string"},
    "core.v1.GlusterfsVolumeSource": {"endpoints": "string", "path": "string", "readOnly": "boolean"},
    "core.v1.ISCSIVolumeSource": {"targetPortal": "string", "iqn": "string", "lun": "int32",
                                  "iscsiInterface": "string", "fsType": "string", "readOnly": "boolean",
                                  "portals": "[]string", "chapAuthDiscovery": "boolean",
                                  "chapAuthSession": "boolean", "secretRef": "core.v1.LocalObjectReference",
                                  "initiatorName": "string"},
    "core.v1.LinuxContainerUser": {"uid": "int64", "gid": "int64", "supplementalGroups": "[]int64"},
    "core.v1.NodeConfigSource": {"configMap": "core.v1.ConfigMapNodeConfigSource"},
    "core.v1.NodeConfigStatus": {"assigned": "core.v1.NodeConfigSource", "active": "core.v1.NodeConfigSource",
                                 "lastKnownGood": "core.v1.NodeConfigSource", "error": "string"},
    "core.v1.NodeFeatures": {"supplementalGroupsPolicy": "boolean"},
    "core.v1.NodeRuntimeHandler": {"name": "string", "features": "core.v1.NodeRuntimeHandlerFeatures"},
    "core.v1.NodeRuntimeHandlerFeatures": {"recursiveReadOnlyMounts": "boolean", "userNamespaces": "boolean"},
    "core.v1.NodeSwapStatus": {"capacity": "int64"},
    "core.v1.PersistentVolumeClaimTemplate": {"metadata": "meta.v1.ObjectMeta",
                                              "spec": "core.v1.PersistentVolumeClaimSpec"},
    "core.v1.PhotonPersistentDiskVolumeSource": {"pdID": "string", "fsType": "string"},
    "core.v1.PodResourceClaim": {"name": "string", "resourceClaimName": "string",
                                 "resourceClaimTemplateName": "string"},
    "core.v1.PodResourceClaimStatus": {"name": "string", "resourceClaimName": "string"},
    "core.v1.PortworxVolumeSource": {"volumeID": "string", "fsType": "string", "readOnly": "boolean"},
    "core.v1.QuobyteVolumeSource": {"registry": "string", "volume": "string", "readOnly": "boolean",
                                    "user": "string", "group": "string", "tenant": "string"},
    "core.v1.RBDVolumeSource": {"monitors": "[]string", "image": "string", "fsType": "string", "pool": "string",
                                "user": "string", "keyring": "string", "secretRef": "core.v1.LocalObjectReference",
                                "readOnly": "boolean"},
    "core.v1.ResourceHealth": {"resourceID": "string", "health": "string"},
    "core.v1.ResourceStatus": {"name": "string", "resources": "[]core.v1.ResourceHealth"},
    "core.v1.ScaleIOVolumeSource": {"gateway": "string", "system": "string",
                                    "secretRef": "core.v1.LocalObjectReference", "sslEnabled": "boolean",
                                    "protectionDomain": "string", "storagePool": "string", "storageMode": "string",
                                    "volumeName": "string", "fsType": "string", "readOnly": "boolean"},
    "core.v1.StorageOSVolumeSource": {"volumeName": "string", "volumeNamespace": "string", "fsType": "string",
                                      "readOnly": "boolean", "secretRef": "core.v1.LocalObjectReference"},
    "core.v1.VsphereVirtualDiskVolumeSource": {"volumePath": "string", "fsType": "string",
                                               "storagePolicyName": "string", "storagePolicyID": "string"},
    "meta.v1.DeleteOptions": {"gracePeriodSeconds": "int64", "preconditions": "meta.v1.Preconditions",
                              "orphanDependents": "boolean", "propagationPolicy": "string", "dryRun": "[]string",
                              "ignoreStoreReadErrorWithClusterBreakingPotential": "boolean"},
    "meta.v1.Preconditions": {"uid": "string", "resourceVersion": "string"},
}

OBJECT_FIELDS: dict[str, dict[str, str]] = {
    "batch.v1.JobSpec": {"podFailurePolicy": "batch.v1.PodFailurePolicy", "successPolicy": "batch.v1.SuccessPolicy"},
    "meta.v1.ManagedFieldsEntry": {"fieldsV1": "RawJSON"},
    "core.v1.NodeSpec": {"configSource": "core.v1.NodeConfigSource"},
    "core.v1.NodeStatus": {"config": "core.v1.NodeConfigStatus", "runtimeHandlers": "core.v1.NodeRuntimeHandler",
                           "features": "core.v1.NodeFeatures"},
    "core.v1.NodeSystemInfo": {"swap": "core.v1.NodeSwapStatus"},
    "core.v1.PodSpec": {"resourceClaims": "core.v1.PodResourceClaim"},
    "core.v1.VolumeProjection": {"clusterTrustBundle": "core.v1.ClusterTrustBundleProjection"},
    "core.v1.PodStatus": {"resourceClaimStatuses": "core.v1.PodResourceClaimStatus"},
    "core.v1.ContainerStatus": {"user": "core.v1.ContainerUser",
                                "allocatedResourcesStatus": "core.v1.ResourceStatus"},
    "core.v1.Volume": {"gcePersistentDisk": "core.v1.GCEPersistentDiskVolumeSource",
                       "awsElasticBlockStore": "core.v1.AWSElasticBlockStoreVolumeSource",
                       "gitRepo": "core.v1.GitRepoVolumeSource", "iscsi": "core.v1.ISCSIVolumeSource",
                       "glusterfs": "core.v1.GlusterfsVolumeSource", "rbd": "core.v1.RBDVolumeSource",
                       "flexVolume": "core.v1.FlexVolumeSource", "cinder": "core.v1.CinderVolumeSource",
                       "cephfs": "core.v1.CephFSVolumeSource", "flocker": "core.v1.FlockerVolumeSource",
                       "fc": "core.v1.FCVolumeSource", "azureFile": "core.v1.AzureFileVolumeSource",
                       "vsphereVolume": "core.v1.VsphereVirtualDiskVolumeSource",
                       "quobyte": "core.v1.QuobyteVolumeSource", "azureDisk": "core.v1.AzureDiskVolumeSource",
                       "photonPersistentDisk": "core.v1.PhotonPersistentDiskVolumeSource",
                       "portworxVolume": "core.v1.PortworxVolumeSource", "scaleIO": "core.v1.ScaleIOVolumeSource",
                       "storageos": "core.v1.StorageOSVolumeSource", "csi": "core.v1.CSIVolumeSource",
                       "ephemeral": "core.v1.EphemeralVolumeSource"},
}

# Map fields whose values are protobuf `bytes`, which upstream's JSON renders as base64.
_BASE64_MAPS = frozenset({("core.v1.ConfigMap", "binaryData"), ("core.v1.Secret", "data")})
# Kinds decodable outside schema.KINDS (any apiVersion: clients send DeleteOptions under the resource's group).
_EXTRA_KINDS = {"DeleteOptions": "meta.v1.DeleteOptions"}

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_GO_ZERO_TIME = -62135596800  # time.Time{}.Unix(): 0001-01-01T00:00:00Z
_MAX_DEPTH = 64


class _Malformed(Exception):
    """Internal: the body is not a valid encoding; becomes a 400."""


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object in an `application/vnd.kubernetes.protobuf` request body."""
    try:
        return _decode_envelope(body)
    except APIError:
        raise
    except (_Malformed, ValueError, OverflowError, OSError, RecursionError, struct.error) as exc:
        raise errors.bad_request(f"the body of the request could not be decoded as protobuf: {exc}") from None


def _decode_envelope(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise _Malformed("missing the k8s\\x00 prefix")
    type_meta: bytes = b""
    raw: bytes = b""
    encoding = ""
    for number, wire, value in _fields(body[len(MAGIC):]):
        if number == 1:
            type_meta = _bytes(wire, value)
        elif number == 2:
            raw = _bytes(wire, value)
        elif number == 3:
            encoding = _string(wire, value)
    api_version = kind = ""
    for number, wire, value in _fields(type_meta):
        if number == 1:
            api_version = _string(wire, value)
        elif number == 2:
            kind = _string(wire, value)
    if encoding:
        raise _Malformed(f"unsupported content encoding {encoding!r}")
    type_name = _EXTRA_KINDS.get(kind)
    known = PROTOBUF_KINDS.get(kind)
    if known is not None and api_version == (f"{known.group}/{known.version}" if known.group else known.version):
        type_name = known.type_name
    if type_name is None:
        raise APIError(415, "UnsupportedMediaType", f"the protobuf body holds {api_version or '?'}/{kind or '?'}, "
                       f"which this server decodes only from application/json or application/yaml")
    obj: dict[str, Any] = {}
    if api_version:
        obj["apiVersion"] = api_version
    if kind:
        obj["kind"] = kind
    obj.update(_message(raw, type_name, 0))
    return obj


# -- wire format ------------------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) in order: an int for varint and fixed fields, bytes for length-delimited."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise _Malformed("truncated fixed-width field")
            value = int.from_bytes(data[pos:pos + size], "little")
            pos += size
        elif wire == _LENGTH:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed(f"field {number} runs past the end of its message")
            value = data[pos:pos + length]
            pos += length
        else:
            raise _Malformed(f"unsupported wire type {wire} (field {number})")
        out.append((number, wire, value))
    return out


def _bytes(wire: int, value: int | bytes) -> bytes:
    if wire != _LENGTH or not isinstance(value, bytes):
        raise _Malformed(f"wire type {wire} where a length-delimited field was expected")
    return value


def _int(wire: int, value: int | bytes) -> int:
    if wire != _VARINT or not isinstance(value, int):
        raise _Malformed(f"wire type {wire} where a varint was expected")
    return value - (1 << 64) if value >= 1 << 63 else value  # int32/int64: two's complement over 64 bits


def _string(wire: int, value: int | bytes) -> str:
    try:
        return _bytes(wire, value).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a string field is not valid UTF-8") from None


# -- types ------------------------------------------------------------------------------------------------


def _table(type_name: str) -> dict[str, str]:
    table = TYPES.get(type_name) or EXTRA_TYPES.get(type_name)
    if table is None:
        raise KeyError(f"protobuf: no table for {type_name}")
    return table


@cache
def _parse(spec: str, package: str) -> tuple[str, str]:
    """("array" | "map" | "", item) for a table entry, the item a scalar or a qualified type name."""
    text = spec.split(" ", 1)[0]
    container = ""
    if text.startswith("[]"):
        container, text = "array", text[2:]
    elif text.startswith("{}"):
        container, text = "map", text[2:]
    if text in SCALARS or text == "bytes" or text.count(".") >= 2:
        return container, text
    for pkg in (package, "core.v1", "meta.v1"):
        if f"{pkg}.{text}" in TYPES or f"{pkg}.{text}" in EXTRA_TYPES:
            return container, f"{pkg}.{text}"
    raise KeyError(f"protobuf: unknown type {text!r} referenced from {package}")


def _message(data: bytes, type_name: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise _Malformed("messages nested too deeply")
    out: dict[str, Any] = {}
    _fill(data, type_name, type_name, out, depth)
    return out


def _fill(data: bytes, type_name: str, numbering: str, out: dict[str, Any], depth: int) -> None:
    """Decode `data` into `out`: JSON types from `type_name`'s table, numbers from FIELD_NUMBERS[numbering] (the
    same type, or a struct embedded inline in it)."""
    numbers = FIELD_NUMBERS[numbering]
    table = _table(type_name)
    package = type_name.rsplit(".", 1)[0]
    omit_zero: list[str] = []
    for number, wire, value in _fields(data):
        entry = numbers.get(number)
        if entry is None:
            continue
        if entry.startswith("..."):
            _fill(_bytes(wire, value), type_name, entry[3:], out, depth + 1)
            continue
        name = entry.rstrip("?")
        if entry.endswith("?"):
            omit_zero.append(name)
        container, item = _parse(table[name], package)
        if item == "object":
            item = OBJECT_FIELDS[type_name][name]
        if container == "array":
            items = out.setdefault(name, [])
            if wire == _LENGTH and (item in INTEGER_RANGES or item == "boolean"):  # packed, which proto3 writers use
                payload = _bytes(wire, value)
                pos = 0
                while pos < len(payload):
                    number_value, pos = _varint(payload, pos)
                    items.append(_scalar(item, _VARINT, number_value, depth))
            else:
                items.append(_scalar(item, wire, value, depth))
        elif container == "map":
            if (type_name, name) in _BASE64_MAPS:
                item = "bytes"
            key, element = _entry(_bytes(wire, value), item, depth)
            out.setdefault(name, {})[key] = element
        else:
            out[name] = _scalar(item, wire, value, depth)
    for name in omit_zero:
        if name in out and out[name] in ("", 0):  # 0 == False
            del out[name]


def _entry(data: bytes, item: str, depth: int) -> tuple[str, Any]:
    key = ""
    element: Any = None
    seen_value = False
    for number, wire, value in _fields(data):
        if number == 1:
            key = _string(wire, value)
        elif number == 2:
            element, seen_value = _scalar(item, wire, value, depth), True
    if not seen_value:  # gogo always writes both; an absent value is the type's zero
        element = _scalar(item, _LENGTH, b"", depth) if item not in (*INTEGER_RANGES, "boolean", "number") else \
            {"int32": 0, "int64": 0, "boolean": False, "number": 0.0}[item]
    return key, element


def _scalar(item: str, wire: int, value: int | bytes, depth: int) -> Any:
    """One value of type `item` (a scalar, a special message, or a typed message)."""
    if item == "string":
        return _string(wire, value)
    if item in INTEGER_RANGES:
        return _int(wire, value)
    if item == "boolean":
        return _int(wire, value) != 0
    if item == "number":
        if wire == _FIXED64 and isinstance(value, int):
            return float(struct.unpack("<d", value.to_bytes(8, "little"))[0])
        if wire == _FIXED32 and isinstance(value, int):
            return float(struct.unpack("<f", value.to_bytes(4, "little"))[0])
        return float(_int(wire, value))
    if item == "bytes":
        return base64.b64encode(_bytes(wire, value)).decode("ascii")
    data = _bytes(wire, value)
    if item == "IntOrString":
        return _int_or_string(data)
    if item == "Quantity":
        text = "0"  # an empty message is the zero Quantity, which JSON renders as "0"
        for number, field_wire, field_value in _fields(data):
            if number == 1:
                text = _string(field_wire, field_value)
        return text
    if item in ("Time", "MicroTime"):
        return _time(data, micro=item == "MicroTime")
    if item == "RawJSON":
        raw = b""
        for number, field_wire, field_value in _fields(data):
            if number == 1:
                raw = _bytes(field_wire, field_value)
        return json.loads(raw) if raw else None
    return _message(data, item, depth + 1)


def _int_or_string(data: bytes) -> int | str:
    kind, int_value, str_value = 0, 0, ""
    for number, wire, value in _fields(data):
        if number == 1:
            kind = _int(wire, value)
        elif number == 2:
            int_value = _int(wire, value)
        elif number == 3:
            str_value = _string(wire, value)
    if kind not in (0, 1):
        raise _Malformed(f"IntOrString type {kind}")
    return str_value if kind == 1 else int_value


def _time(data: bytes, *, micro: bool) -> str | None:
    seconds = nanos = 0
    for number, wire, value in _fields(data):
        if number == 1:
            seconds = _int(wire, value)
        elif number == 2:
            nanos = _int(wire, value)
    if not data or (seconds == _GO_ZERO_TIME and nanos == 0):
        return None  # Go's zero time; upstream's JSON writes null
    if not 0 <= nanos < 1_000_000_000:
        raise _Malformed(f"timestamp nanos {nanos} out of range")
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
