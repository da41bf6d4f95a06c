"""The objects `kubesim up` applies to run cluster DNS as kind runs CoreDNS: the coredns ServiceAccount,
a Deployment `coredns` (2 replicas spread over nodes, tolerating the control plane's taint as kubeadm's
does) and the Service `kube-dns` at the tenth address of the service CIDR. The image is served by the
kubelet as a built-in workload (control/kubelet/workloads.py): this package's server in the pod's
network namespace, with the ServiceAccount's credentials."""

from __future__ import annotations

import ipaddress
from typing import Any

from control.dns._zone import ZoneConfig

COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.1"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "coredns"
LABELS = {"k8s-app": "kube-dns"}


def dns_service_ip(service_cidr: str) -> str:
    """The tenth address of the service CIDR (10.96.0.10 for 10.96.0.0/16), as kubeadm and kind choose."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    if network.num_addresses < 16:
        raise ValueError(f"service CIDR {service_cidr}: too small for the DNS Service's tenth address")
    return str(network[10])


def cluster_dns_objects(service_cidr: str, config: ZoneConfig | None = None, *,
                        replicas: int = 2) -> list[dict[str, Any]]:
    zone = config or ZoneConfig()
    args = [f"--cluster-domain={zone.domain}", f"--ttl={zone.ttl}", f"--pods={zone.pods}"]
    container = {
        "name": "coredns", "image": COREDNS_IMAGE, "args": args,
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
        # kubeadm's probes: liveness on the health plugin, readiness on the ready plugin.
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 60,
                          "timeoutSeconds": 5, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": dict(LABELS)},
         "spec": {
             "replicas": replicas,
             "selector": {"matchLabels": dict(LABELS)},
             "template": {
                 "metadata": {"labels": dict(LABELS)},
                 "spec": {
                     "serviceAccountName": SERVICE_ACCOUNT,
                     "dnsPolicy": "Default",
                     "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                     {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "ScheduleAnyway",
                                                    "labelSelector": {"matchLabels": dict(LABELS)}}],
                     "containers": [container],
                 },
             },
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": NAMESPACE,
                      "labels": {**LABELS, "kubernetes.io/name": "CoreDNS"},
                      "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
         "spec": {"selector": dict(LABELS), "clusterIP": dns_service_ip(service_cidr),
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}},
    ]
