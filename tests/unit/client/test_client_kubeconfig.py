"""TLS verification and kubeconfig loading, against the fake apiserver served over HTTPS on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from kubefake import FakeApiServer

from control.client import NODES, ApiConnectionError, Client, ConfigError, load_kubeconfig
from tests.conftest import require_module

x509 = require_module("cryptography.x509", install="a dependency of kubesim: pip install cryptography")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def _cert(subject: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool = False,
          server: bool = False) -> Any:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("kubernetes.default.svc")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_cert(cert: Any) -> bytes:
    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _pem_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A cluster CA with a serving and a client certificate, plus an unrelated CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("kubesim-test-ca", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("kube-apiserver", server_key, ("kubesim-test-ca", ca_key), server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("system:kube-proxy", client_key, ("kubesim-test-ca", ca_key))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("someone-else", other_key, None, ca=True)
    files = {
        "ca": _pem_cert(ca), "server.crt": _pem_cert(server), "server.key": _pem_key(server_key),
        "client.crt": _pem_cert(client), "client.key": _pem_key(client_key), "other-ca": _pem_cert(other),
    }
    paths: dict[str, Path] = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths[name] = tmp_path / name
    return paths


@contextlib.asynccontextmanager
async def tls_server(fake: FakeApiServer, pki: dict[str, Path], *,
                     require_client_cert: bool = False) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    if require_client_cert:
        context.load_verify_locations(cafile=pki["ca"])
        context.verify_mode = ssl.CERT_REQUIRED
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server(ssl=context)
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def test_tls_is_verified_against_the_given_ca(pki: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        fake = FakeApiServer()
        fake.put("nodes", {"metadata": {"name": "n1"}})
        async with tls_server(fake, pki) as url:
            assert url.startswith("https://127.0.0.1:")
            async with Client(url, token="test-token", ca_file=pki["ca"]) as client:
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            async with Client(url, token="test-token", ca_data=pki["ca"].read_text()) as client:
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            # The system trust store, or another CA, does not vouch for this apiserver.
            for ca_file in (None, pki["other-ca"]):
                async with Client(url, token="test-token", ca_file=ca_file) as client:
                    with pytest.raises(ApiConnectionError, match=r"(?i)certificate"):
                        await client.get(NODES, "n1")
            # Turning verification off works only when asked for by name, and says so in the log.
            with caplog.at_level(logging.WARNING):
                async with Client(url, token="test-token", insecure_skip_tls_verify=True) as client:
                    assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            assert "TLS verification" in caplog.text and "disabled" in caplog.text
            # The certificate names kubernetes.default.svc: checking that name instead of the address works
            # (kubeconfig's tls-server-name); a name it does not carry fails.
            async with Client(url, token="test-token", ca_file=pki["ca"],
                              tls_server_name="kubernetes.default.svc") as client:
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            async with Client(url, token="test-token", ca_file=pki["ca"], tls_server_name="evil.example") as client:
                with pytest.raises(ApiConnectionError):
                    await client.get(NODES, "n1")

    asyncio.run(scenario())


def _kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any], *, namespace: str | None = None,
                current: str | None = "test") -> Path:
    ctx: dict[str, Any] = {"cluster": "kubesim", "user": "admin"}
    if namespace:
        ctx["namespace"] = namespace
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesim", "cluster": cluster}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": "test", "context": ctx},
                     {"name": "elsewhere", "context": {"cluster": "missing", "user": "admin"}}],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def test_load_kubeconfig_with_inline_ca_and_token(pki: dict[str, Path], tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeApiServer(token="admin-token")
        fake.put("nodes", {"metadata": {"name": "n1"}})
        async with tls_server(fake, pki) as url:
            cfg = _kubeconfig(tmp_path / "kubeconfig", {
                "server": url,
                "certificate-authority-data": base64.b64encode(pki["ca"].read_bytes()).decode(),
            }, {"token": "admin-token"}, namespace="team-a")
            async with load_kubeconfig(cfg) as client:
                assert client.default_namespace == "team-a"
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
                assert fake.requests[-1][4]["Authorization"] == "Bearer admin-token"
                assert "admin-token" not in repr(client)

    asyncio.run(scenario())


def test_load_kubeconfig_with_relative_files_token_file_and_client_cert(pki: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeApiServer(token="from-a-file")
        fake.put("nodes", {"metadata": {"name": "n1"}})
        (tmp_path / "token").write_text("from-a-file\n")
        async with tls_server(fake, pki, require_client_cert=True) as url:
            # Files named relative to the kubeconfig's own directory, as clientcmd resolves them.
            cfg = _kubeconfig(tmp_path / "kubeconfig", {"server": url, "certificate-authority": "ca"},
                              {"tokenFile": "token", "client-certificate": "client.crt", "client-key": "client.key"})
            async with load_kubeconfig(cfg) as client:
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            inline = _kubeconfig(tmp_path / "inline", {"server": url, "certificate-authority": str(pki["ca"])}, {
                "token": "from-a-file",
                "client-certificate-data": base64.b64encode(pki["client.crt"].read_bytes()).decode(),
                "client-key-data": base64.b64encode(pki["client.key"].read_bytes()).decode(),
            })
            async with load_kubeconfig(inline, timeout=5) as client:
                assert (await client.get(NODES, "n1"))["metadata"]["name"] == "n1"
            # Without a client certificate this server refuses the handshake.
            bare = _kubeconfig(tmp_path / "bare", {"server": url, "certificate-authority": "ca"},
                               {"token": "from-a-file"})
            async with load_kubeconfig(bare) as client:
                with pytest.raises(ApiConnectionError):
                    await client.get(NODES, "n1")

    asyncio.run(scenario())


def test_kubeconfig_problems_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_kubeconfig(tmp_path / "absent")
    cfg = _kubeconfig(tmp_path / "k", {"server": "https://127.0.0.1:6443"}, {"token": "t"}, current=None)
    with pytest.raises(ConfigError, match="no current-context"):
        load_kubeconfig(cfg)
    with pytest.raises(ConfigError, match="no clusters entry named 'missing'"):
        load_kubeconfig(cfg, context="elsewhere")
    exec_user = _kubeconfig(tmp_path / "e", {"server": "https://127.0.0.1:6443"},
                            {"exec": {"command": "aws"}})
    with pytest.raises(ConfigError, match="exec plugin"):
        load_kubeconfig(exec_user)
    bad_ca = _kubeconfig(tmp_path / "b", {"server": "https://127.0.0.1:6443",
                                          "certificate-authority-data": "not base64!"}, {"token": "t"})
    with pytest.raises(ConfigError, match="base64"):
        load_kubeconfig(bad_ca)
    both = _kubeconfig(tmp_path / "both", {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True,
                                           "certificate-authority": "ca"}, {"token": "t"})
    with pytest.raises(ConfigError, match="both insecure-skip-tls-verify and a certificate authority"):
        load_kubeconfig(both)
    half = _kubeconfig(tmp_path / "half", {"server": "https://127.0.0.1:6443"},
                       {"client-certificate-data": base64.b64encode(b"x").decode()})
    with pytest.raises(ConfigError, match="needs both"):
        load_kubeconfig(half)
    missing = _kubeconfig(tmp_path / "missing", {"server": "https://127.0.0.1:6443",
                                                 "certificate-authority": "nope.crt"}, {"token": "t"})
    with pytest.raises(ConfigError, match="cannot read certificate-authority"):
        load_kubeconfig(missing)
    (tmp_path / "y").write_text("{unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_kubeconfig(tmp_path / "y")
    # $KUBECONFIG's first entry is the default, as for kubectl.
    plain = _kubeconfig(tmp_path / "plain", {"server": "http://127.0.0.1:8080"}, {"token": "t"})
    monkeypatch.setenv("KUBECONFIG", f"{plain}:{tmp_path / 'other'}")
    client = load_kubeconfig()
    assert client.base_url == "http://127.0.0.1:8080"
