"""The files the kubelet writes for a pod's sandbox, as pure functions of the pod (upstream's
pkg/kubelet/kubelet_pods.go and pkg/util/hostname): the runtime binds them over the pod's /etc files.

    pod_hostname(pod, cluster_domain) -> (hostname, domain)   GeneratePodHostNameAndDomain
    uts_hostname(pod, cluster_domain) -> what `hostname` prints in the pod (setHostnameAsFQDN: the FQDN)
    hosts_file(pod_ips, hostname, domain, host_aliases) -> /etc/hosts   managedHostsFileContent
    hostname_file(hostname) -> /etc/hostname
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

HOSTNAME_MAX = 63  # a DNS-1123 label
FQDN_MAX = 64  # the kernel's limit on a hostname, which setHostnameAsFQDN must fit

_HOSTS_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


class PodFileError(ValueError):
    """The pod's spec cannot give it these files; the message names the field and the fix."""


def _truncated(name: str) -> str:
    # upstream's truncatePodHostnameIfNeeded: a pod name may be a 253-character subdomain, a hostname not;
    # cut to 63 and drop what would end the label badly
    if len(name) <= HOSTNAME_MAX:
        return name
    return name[:HOSTNAME_MAX].rstrip("-.")


def pod_hostname(pod: Mapping[str, Any], cluster_domain: str) -> tuple[str, str]:
    """(hostname, domain): spec.hostname or the pod's name (cut to 63 characters), and
    <subdomain>.<namespace>.svc.<cluster domain> when spec.subdomain is set, else ""."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    hostname = str(spec.get("hostname") or _truncated(str(meta.get("name") or "")))
    subdomain = str(spec.get("subdomain") or "")
    domain = ""
    if subdomain and cluster_domain:
        domain = f"{subdomain}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
    return hostname, domain


def uts_hostname(pod: Mapping[str, Any], cluster_domain: str) -> str:
    """The pod's kernel hostname: its hostname, or its FQDN with spec.setHostnameAsFQDN (upstream refuses
    a FQDN longer than 64 characters, and so do we)."""
    hostname, domain = pod_hostname(pod, cluster_domain)
    if not ((pod.get("spec") or {}).get("setHostnameAsFQDN") and domain):
        return hostname
    fqdn = f"{hostname}.{domain}"
    if len(fqdn) > FQDN_MAX:
        raise PodFileError(f"spec.setHostnameAsFQDN: the FQDN {fqdn!r} is {len(fqdn)} characters, longer than "
                           f"the {FQDN_MAX} a hostname may have; shorten spec.hostname or spec.subdomain")
    return fqdn


def hosts_file(pod_ips: Sequence[str], hostname: str, domain: str,
               host_aliases: Sequence[Mapping[str, Any]] = ()) -> str:
    """The kubelet-managed /etc/hosts: the localhost lines, each pod IP with its FQDN and hostname (or
    the hostname alone without a domain), then spec.hostAliases, one line per IP, names tab-separated."""
    lines = [_HOSTS_HEADER]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n")
    if host_aliases:
        lines.append("\n# Entries added by HostAliases.\n")
        for alias in host_aliases:
            names = [str(n) for n in alias.get("hostnames") or []]
            lines.append(f"{alias.get('ip', '')}\t" + "\t".join(names) + "\n")
    return "".join(lines)


def hostname_file(hostname: str) -> str:
    return hostname + "\n"
