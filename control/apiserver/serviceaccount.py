"""ServiceAccount tokens, TokenRequest style (pkg/serviceaccount, pkg/registry/core/serviceaccount/storage
/token.go), and the ServiceAccount admission's projected volume (plugin/pkg/admission/serviceaccount).

    TokenIssuer(private_key_pem, issuer)      signs and verifies RS256 JWTs (PyJWT)
    token_request(issuer, body, account, pod) -> the TokenRequest answered (status.token, expiration)
    ServiceAccountAuthenticator(issuer, lookup).authenticate(header) -> User | None
    add_api_access_volume(pod)                 kube-api-access-xxxxx at /var/run/secrets/kubernetes.io/...

A token is bound: its claims name the ServiceAccount and the Pod (with their uids), and it authenticates
only while both still exist with those uids, besides its signature, issuer, audience and expiry. The
user is system:serviceaccount:<ns>:<name> in system:serviceaccounts and system:serviceaccounts:<ns>.
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from control.apiserver import errors
from control.apiserver.auth import User

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ALGORITHM = "RS256"
MIN_EXPIRATION = 600  # upstream's validation: expirationSeconds may not be less than 10 minutes
MAX_EXPIRATION = 2 ** 32
DEFAULT_EXPIRATION = 3600
# The admission's token lifetime: upstream asks 3607 s, the odd 7 telling it from a user's request.
ADMISSION_EXPIRATION = 3607
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"

Lookup = Callable[[str, str, str], "dict[str, Any] | None"]
"""lookup(plural, namespace, name) -> the stored object or None (the apiserver's watch caches)."""


def make_signing_key(path: Path) -> None:
    """kube-apiserver's --service-account-signing-key-file: an RSA key, readable by root only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


class TokenIssuer:
    def __init__(self, private_key_pem: bytes, issuer: str = DEFAULT_ISSUER, *,
                 audiences: tuple[str, ...] = (), clock: Callable[[], float] = time.time):
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service account signing key must be an RSA private key (PEM)")
        self._key = key
        self._public = key.public_key()
        self.issuer = issuer
        # kube-apiserver's --api-audiences: the issuer when not given
        self.audiences = audiences or (issuer,)
        self.clock = clock

    @classmethod
    def from_file(cls, path: str | Path, issuer: str = DEFAULT_ISSUER) -> TokenIssuer:
        return cls(Path(path).read_bytes(), issuer)

    def issue(self, *, namespace: str, account: str, account_uid: str, pod: tuple[str, str] | None,
              audiences: list[str], expiration: int) -> tuple[str, int]:
        """(token, expiry as Unix time) for the ServiceAccount, bound to POD (name, uid) if given."""
        now = int(self.clock())
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": account, "uid": account_uid}}
        if pod is not None:
            private["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {"iss": self.issuer, "sub": f"system:serviceaccount:{namespace}:{account}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": now + expiration, "jti": str(uuid.uuid4()),
                  "kubernetes.io": private}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), now + expiration

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed that is valid now for one of the API audiences."""
        try:
            claims: dict[str, Any] = jwt.decode(token, self._public, algorithms=[ALGORITHM], issuer=self.issuer,
                                                audience=list(self.audiences),
                                                options={"require": ["exp", "iat", "sub", "aud"],
                                                         "verify_exp": False, "verify_nbf": False,
                                                         "verify_iat": False})
        except jwt.PyJWTError:
            return None
        # The times are checked on the issuer's clock (PyJWT's own checks use the system's).
        now = self.clock()
        try:
            if not float(claims.get("nbf", claims["iat"])) <= now < float(claims["exp"]):
                return None
        except (TypeError, ValueError):
            return None
        return claims


def _rfc3339(when: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def token_request(issuer: TokenIssuer, body: Mapping[str, Any], account: Mapping[str, Any],
                  lookup: Lookup) -> dict[str, Any]:
    """Answer a TokenRequest for ACCOUNT (the stored ServiceAccount): validate its spec (422 naming the
    field), check the bound object (a Pod of the account's namespace, with that uid if given), sign."""
    meta = account.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    problems: list[tuple[str, str]] = []
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if not isinstance(expiration, int) or isinstance(expiration, bool):
        problems.append(("spec.expirationSeconds", "must be an integer number of seconds"))
    elif expiration < MIN_EXPIRATION:
        problems.append(("spec.expirationSeconds", "may not specify a duration less than 10 minutes"))
    elif expiration > MAX_EXPIRATION:
        problems.append(("spec.expirationSeconds", "may not specify a duration larger than 2^32 seconds"))
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        problems.append(("spec.audiences", "must be a list of non-empty strings"))
    pod: tuple[str, str] | None = None
    ref = spec.get("boundObjectRef")
    if ref is not None:
        if not isinstance(ref, dict) or ref.get("kind") != "Pod" or ref.get("apiVersion", "v1") != "v1":
            problems.append(("spec.boundObjectRef.kind", 'kubesim binds tokens to Pods only: give kind "Pod", '
                                                         'apiVersion "v1"'))
        else:
            found = lookup("pods", namespace, str(ref.get("name") or ""))
            if found is None:
                raise errors.not_found("", "pods", str(ref.get("name") or ""))
            uid = str((found.get("metadata") or {}).get("uid") or "")
            if ref.get("uid") and ref.get("uid") != uid:
                raise errors.conflict("", "pods", str(ref.get("name")),
                                      f"the UID in the bound object reference ({ref.get('uid')}) does not match the "
                                      f"UID in record ({uid}). The object might have been deleted and then recreated")
            pod = (str(ref.get("name")), uid)
    if problems:
        raise errors.invalid("authentication.k8s.io", "TokenRequest", name,
                             [{"reason": "FieldValueInvalid", "message": message, "field": field}
                              for field, message in problems])
    chosen = [str(a) for a in audiences] or list(issuer.audiences)
    assert isinstance(expiration, int)
    token, expires = issuer.issue(namespace=namespace, account=name, account_uid=str(meta.get("uid") or ""),
                                  pod=pod, audiences=chosen, expiration=expiration)
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {"audiences": chosen, "expirationSeconds": expiration, "boundObjectRef": ref},
            "status": {"token": token, "expirationTimestamp": _rfc3339(expires)}}


class ServiceAccountAuthenticator:
    """Bearer tokens this apiserver issued (upstream's service account token authenticator)."""

    def __init__(self, issuer: TokenIssuer, lookup: Lookup):
        self.issuer = issuer
        self.lookup = lookup

    def authenticate(self, authorization: str | None) -> User | None:
        parts = (authorization or "").split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or parts[1].count(".") != 2:
            return None
        claims = self.issuer.verify(parts[1])
        if claims is None:
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        namespace = str(private.get("namespace") or "")
        account = private.get("serviceaccount") or {}
        name = str(account.get("name") or "")
        if claims.get("sub") != f"system:serviceaccount:{namespace}:{name}":
            return None
        # Bound: the ServiceAccount (and the pod, if any) must still be the ones it was issued for.
        stored = self.lookup("serviceaccounts", namespace, name)
        if stored is None or (stored.get("metadata") or {}).get("uid") != account.get("uid"):
            return None
        pod = private.get("pod")
        if isinstance(pod, dict):
            live = self.lookup("pods", namespace, str(pod.get("name") or ""))
            if live is None or (live.get("metadata") or {}).get("uid") != pod.get("uid") or \
                    (live.get("metadata") or {}).get("deletionTimestamp"):
                return None
        return User(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


def _suffix() -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet: no vowels, no look-alikes
    assert set(alphabet) <= set(string.ascii_lowercase + string.digits)
    return "".join(secrets.choice(alphabet) for _ in range(5))


def add_api_access_volume(pod: dict[str, Any]) -> None:
    """The ServiceAccount admission on a pod's create: unless automountServiceAccountToken is false or a
    container already mounts something at the token path, a projected kube-api-access-xxxxx volume (the
    token, the cluster CA from kube-root-ca.crt, the namespace) mounted read-only there in every container."""
    spec = pod.get("spec")
    if not isinstance(spec, dict) or spec.get("automountServiceAccountToken") is False:
        return
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]
    if any(m.get("mountPath") == TOKEN_MOUNT for c in containers for m in c.get("volumeMounts") or []
           if isinstance(m, dict)):
        return
    volumes = spec.setdefault("volumes", [])
    if not isinstance(volumes, list):
        return
    name = f"kube-api-access-{_suffix()}"
    volumes.append({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": ADMISSION_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
    for container in containers:
        mounts = container.setdefault("volumeMounts", [])
        if isinstance(mounts, list):
            mounts.append({"name": name, "mountPath": TOKEN_MOUNT, "readOnly": True})
