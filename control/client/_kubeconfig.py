"""Reading a standard kubeconfig (clientcmd's v1 Config) into a `Client`."""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from control.client._client import Client, make_ssl_context
from control.client._errors import ConfigError


def _named(config: Mapping[str, Any], section: str, name: str, field: str, path: Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(field)
            if isinstance(value, Mapping):
                return dict(value)
            raise ConfigError(f"{path}: {section} entry {name!r} has no {field!r} mapping")
    raise ConfigError(f"{path}: no {section} entry named {name!r}")


def _resolve(base: Path, value: Any) -> Path:
    # clientcmd resolves relative file references against the kubeconfig's own directory.
    p = Path(os.path.expanduser(str(value)))
    return p if p.is_absolute() else base / p


def _b64(value: Any, what: str, path: Path) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {what} is not base64-encoded PEM: {exc}") from exc


def _read(base: Path, value: Any, what: str, path: Path) -> str:
    try:
        return _resolve(base, value).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} {value!r}: {exc}") from exc


def _pem(section: Mapping[str, Any], key: str, base: Path, path: Path) -> str | None:
    """The PEM text of KEY-data (base64, inline) or of the file KEY names; the -data form wins (clientcmd)."""
    if section.get(f"{key}-data"):
        return _b64(section[f"{key}-data"], f"{key}-data", path)
    if section.get(key):
        return _read(base, section[key], key, path)
    return None


def _ssl_context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path, path: Path) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority", base, path)
    cert = _pem(user, "client-certificate", base, path)
    key = _pem(user, "client-key", base, path)
    if (cert is None) != (key is None):
        raise ConfigError(f"{path}: a client certificate needs both client-certificate and client-key")
    if cert is None or key is None:
        return make_ssl_context(ca_data=ca)
    # ssl loads a key pair only from files: write them into a private temporary directory, load them
    # into the context, and remove them at once.
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as tmp:
        cert_path = Path(tmp) / "client.crt"
        key_path = Path(tmp) / "client.key"
        cert_path.write_text(cert)
        key_path.touch(mode=0o600)
        key_path.write_text(key)
        return make_ssl_context(ca_data=ca, cert_file=cert_path, key_file=key_path)


def default_kubeconfig_path() -> Path:
    """$KUBECONFIG's first entry, else ~/.kube/config (kubectl's order)."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def load_kubeconfig(path: str | Path | None = None, *, context: str | None = None, **client_options: Any) -> Client:
    """A `Client` for a kubeconfig's current context (or `context=`).

    Reads the cluster's `server`, `certificate-authority` / `certificate-authority-data`,
    `insecure-skip-tls-verify`, `tls-server-name`, and the user's `token` / `tokenFile` and
    `client-certificate(-data)` / `client-key(-data)`; the context's namespace becomes
    `client.default_namespace`. Other keyword arguments go to `Client` (e.g. `session=`, `timeout=`).
    Exec plugins and auth providers are not supported (ConfigError says so).
    """
    file = Path(path) if path is not None else default_kubeconfig_path()
    try:
        config = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {file} is not valid YAML: {exc}") from exc
    if not isinstance(config, Mapping):
        raise ConfigError(f"kubeconfig {file} is not a YAML mapping")
    base = file.parent
    context_name = context or config.get("current-context")
    if not context_name:
        raise ConfigError(f"{file}: no current-context; pass context=")
    ctx = _named(config, "contexts", str(context_name), "context", file)
    cluster = _named(config, "clusters", str(ctx.get("cluster")), "cluster", file)
    user = _named(config, "users", str(ctx.get("user")), "user", file) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"{file}: cluster {ctx.get('cluster')!r} has no server")
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"{file}: user {ctx.get('user')!r} uses an exec plugin / auth provider, which this "
                          "client does not run; use a token or a client certificate")

    options: dict[str, Any] = {}
    if ctx.get("namespace"):
        options["default_namespace"] = str(ctx["namespace"])
    if user.get("token"):
        options["token"] = str(user["token"])
    else:
        # clientcmd spells it tokenFile; accept the kebab-case spelling too.
        token_file = user.get("tokenFile") or user.get("token-file")
        if token_file:
            options["token_file"] = _resolve(base, token_file)
    if cluster.get("tls-server-name"):
        options["tls_server_name"] = str(cluster["tls-server-name"])

    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    has_ca = bool(cluster.get("certificate-authority") or cluster.get("certificate-authority-data"))
    if insecure and has_ca:
        # clientcmd rejects this combination too: which of the two did the author mean?
        raise ConfigError(f"{file}: cluster {ctx.get('cluster')!r} sets both insecure-skip-tls-verify and a "
                          "certificate authority; remove one")
    if insecure:
        options["insecure_skip_tls_verify"] = True
    elif str(server).startswith("https"):
        options["ssl_context"] = _ssl_context(cluster, user, base, file)
    options.update(client_options)
    return Client(str(server), **options)
