"""The cluster's certificates, made at `kubesim up` as kubeadm's `init phase certs` makes them:
ECDSA P-256, CAs valid 10 years, leaf certificates 1 year.

    ca.crt / ca.key                                the cluster CA
    apiserver.crt                                  the apiserver's serving certificate
    apiserver-kubelet-client.crt                   the apiserver's client certificate for kubelet APIs
                                                   (CN kube-apiserver-kubelet-client, O system:masters)
    kubelet/<node>.crt                             a kubelet's serving certificate (SAN: the node's IP)
    etcd/ca.crt / etcd/ca.key                      etcd's own CA, as kubeadm's: a certificate from the
                                                   cluster CA opens no door to etcd
    etcd/server.crt                                etcd's serving and peer certificate (127.0.0.1)
    apiserver-etcd-client.crt                      the apiserver's client certificate for etcd

Every .key file is written readable by its owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                 "localhost")
#: kubeadm's names (cmd/kubeadm/app/constants): the apiserver's client identities towards kubelets and etcd
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
ETCD_CLIENT_USER = "kube-apiserver-etcd-client"


@dataclass(frozen=True)
class Issued:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _window() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now


def make_ca(cert: Path, key: Path, common_name: str) -> Issued:
    """A self-signed CA certificate at CERT with its key at KEY."""
    start, now = _window()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_private(key, ca_key)
    return Issued(cert, key)


def issue(ca: Issued, cert: Path, key: Path, *, common_name: str, organizations: tuple[str, ...] = (),
          dns_names: tuple[str, ...] = (), ip_addresses: tuple[str, ...] = (), server: bool = False,
          client: bool = False) -> Issued:
    """A certificate signed by CA for COMMON_NAME (a user, to Kubernetes' x509 authenticator) in groups
    ORGANIZATIONS, valid for serving DNS_NAMES and IP_ADDRESSES if SERVER, for client auth if CLIENT."""
    if not (server or client):
        raise ValueError(f"certificate {common_name!r}: it must be for server auth, client auth or both")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key}: not an ECDSA key of a kubesim CA")
    start, now = _window()
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = [usage for usage, wanted in ((ExtendedKeyUsageOID.SERVER_AUTH, server),
                                          (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if wanted]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ip_addresses)]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    _write_private(key, leaf_key)
    return Issued(cert, key)


def cluster_ca(directory: Path) -> Issued:
    return Issued(directory / "ca.crt", directory / "ca.key")


def etcd_ca(directory: Path) -> Issued:
    return Issued(directory / "etcd" / "ca.crt", directory / "etcd" / "ca.key")


def make_certificates(directory: Path, *, addresses: list[str], names: tuple[str, ...] = SERVICE_NAMES) -> None:
    """The cluster CA, the apiserver's serving certificate (for NAMES, ADDRESSES and 127.0.0.1), its
    kubelet client certificate and metrics-server's serving certificate, in DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(*_paths(cluster_ca(directory)), "kubesim-ca")
    issue(ca, directory / "apiserver.crt", directory / "apiserver.key", common_name="kube-apiserver",
          dns_names=names, ip_addresses=(*addresses, "127.0.0.1"), server=True)
    # kubeadm puts it in system:masters, which upstream's default RBAC lets use every kubelet API
    issue(ca, directory / "apiserver-kubelet-client.crt", directory / "apiserver-kubelet-client.key",
          common_name=KUBELET_CLIENT_USER, organizations=("system:masters",), client=True)
    # metrics-server's serving certificate: the apiserver reaches it on the control-plane node's loopback
    issue(ca, directory / "metrics-server.crt", directory / "metrics-server.key", common_name="metrics-server",
          dns_names=("metrics-server.kube-system.svc",), ip_addresses=("127.0.0.1",), server=True)


def make_kubelet_certificate(directory: Path, node: str, address: str) -> Issued:
    """A kubelet's serving certificate from the cluster CA: the apiserver reaches it by the node's IP."""
    return issue(cluster_ca(directory), directory / "kubelet" / f"{node}.crt", directory / "kubelet" / f"{node}.key",
                 common_name=f"system:node:{node}", organizations=("system:nodes",), ip_addresses=(address,),
                 server=True)


def make_etcd_certificates(directory: Path) -> None:
    """etcd's CA, its serving (and peer) certificate for loopback, and the apiserver's client certificate."""
    ca = make_ca(*_paths(etcd_ca(directory)), "etcd-ca")
    issue(ca, directory / "etcd" / "server.crt", directory / "etcd" / "server.key", common_name="kube-etcd",
          dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True, client=True)
    issue(ca, directory / "apiserver-etcd-client.crt", directory / "apiserver-etcd-client.key",
          common_name=ETCD_CLIENT_USER, client=True)


def _paths(issued: Issued) -> tuple[Path, Path]:
    return issued.cert, issued.key
