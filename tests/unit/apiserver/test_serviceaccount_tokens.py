"""ServiceAccount tokens (control.apiserver.serviceaccount): TokenRequest validation and signing, the
bound-token authenticator, and the admission's kube-api-access volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

from control.apiserver.errors import APIError
from control.apiserver.serviceaccount import (
    TOKEN_MOUNT,
    ServiceAccountAuthenticator,
    TokenIssuer,
    add_api_access_volume,
    make_signing_key,
    token_request,
)

ACCOUNT = {"metadata": {"name": "builder", "namespace": "ci", "uid": "sa-1"}}
POD = {"metadata": {"name": "job", "namespace": "ci", "uid": "pod-1"}, "spec": {"nodeName": "worker-1"}}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pki") / "sa.key"
    make_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    return path


class World:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {
            ("serviceaccounts", "ci", "builder"): ACCOUNT, ("pods", "ci", "job"): POD}

    def lookup(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))


def request(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def issued(issuer: TokenIssuer, world: World, **spec: Any) -> str:
    answer = token_request(issuer, request(**spec), ACCOUNT, world.lookup)
    return str(answer["status"]["token"])


def test_a_bound_token_authenticates_as_the_service_account(key: Path) -> None:
    now = [1_800_000_000.0]
    issuer = TokenIssuer(key.read_bytes(), clock=lambda: now[0])
    world = World()
    answer = token_request(issuer, request(expirationSeconds=3607, boundObjectRef={
        "kind": "Pod", "apiVersion": "v1", "name": "job", "uid": "pod-1"}), ACCOUNT, world.lookup)
    token = answer["status"]["token"]
    assert answer["status"]["expirationTimestamp"] == "2027-01-15T09:00:07Z"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:ci:builder"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["kubernetes.io"]["pod"] == {"name": "job", "uid": "pod-1"}
    authn = ServiceAccountAuthenticator(issuer, world.lookup)
    user = authn.authenticate(f"Bearer {token}")
    assert user is not None and user.name == "system:serviceaccount:ci:builder"
    assert user.groups[:2] == ("system:serviceaccounts", "system:serviceaccounts:ci")
    now[0] -= 1
    assert authn.authenticate(f"Bearer {token}") is None, "not valid before it was issued"
    # expired by the issuer's clock
    now[0] += 3609
    assert authn.authenticate(f"Bearer {token}") is None


def test_forged_unbound_and_wrong_audience_tokens_are_refused(key: Path, tmp_path: Path) -> None:
    issuer, world = TokenIssuer(key.read_bytes()), World()
    authn = ServiceAccountAuthenticator(issuer, world.lookup)
    token = issued(issuer, world, boundObjectRef={"kind": "Pod", "name": "job"})
    make_signing_key(tmp_path / "other.key")
    forged = TokenIssuer((tmp_path / "other.key").read_bytes())
    assert authn.authenticate(f"Bearer {issued(forged, world)}") is None
    assert authn.authenticate(f"Bearer {issued(issuer, world, audiences=['vault'])}") is None
    assert authn.authenticate("Bearer not.a.jwt") is None and authn.authenticate("Basic x") is None
    assert authn.authenticate(f"Bearer {token}") is not None
    world.objects[("pods", "ci", "job")] = {**POD, "metadata": {**POD["metadata"], "uid": "pod-2"}}
    assert authn.authenticate(f"Bearer {token}") is None, "the pod it was bound to is gone (recreated)"
    world.objects.pop(("serviceaccounts", "ci", "builder"))
    assert authn.authenticate(f"Bearer {issued(issuer, World())}") is None, "the ServiceAccount is gone"


@pytest.mark.parametrize(("spec", "status", "message"), [
    ({"expirationSeconds": 60}, 422, "spec.expirationSeconds: may not specify a duration less than 10 minutes"),
    ({"audiences": [""]}, 422, "spec.audiences"),
    ({"boundObjectRef": {"kind": "Secret", "name": "x"}}, 422, 'give kind "Pod"'),
    ({"boundObjectRef": {"kind": "Pod", "name": "nope"}}, 404, 'pods "nope" not found'),
    ({"boundObjectRef": {"kind": "Pod", "name": "job", "uid": "other"}}, 409, "does not match the UID in record"),
])
def test_bad_token_requests_name_the_field(key: Path, spec: dict[str, Any], status: int, message: str) -> None:
    with pytest.raises(APIError) as caught:
        token_request(TokenIssuer(key.read_bytes()), request(**spec), ACCOUNT, World().lookup)
    assert caught.value.code == status and message in caught.value.message


def test_the_admission_mounts_kube_api_access_unless_told_not_to() -> None:
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}}
    add_api_access_volume(pod)
    (volume,) = pod["spec"]["volumes"]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == len("kube-api-access-") + 5
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    for container in (*pod["spec"]["containers"], *pod["spec"]["initContainers"]):
        assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": TOKEN_MOUNT, "readOnly": True}]
    add_api_access_volume(pod)
    assert len(pod["spec"]["volumes"]) == 1, "a pod that already mounts the token path gets no second volume"
    opted_out: dict[str, Any] = {"spec": {"automountServiceAccountToken": False, "containers": [{"name": "a"}]}}
    add_api_access_volume(opted_out)
    assert "volumes" not in opted_out["spec"]
