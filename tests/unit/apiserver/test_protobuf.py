"""Decoding Kubernetes' protobuf request bodies (control/apiserver/protobuf.py).

Fixtures in protobuf_fixtures/ are real bodies captured from kubectl 1.33 (NAME.pb), each beside the JSON that
`kubectl ... --dry-run=client -o json` prints for the same command (NAME.json). The other messages are written
here by hand, field number by field number, as upstream's gogo-generated Marshal writes them (every non-pointer
field, zero or not; pointer fields only when set).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from control.apiserver import protobuf
from control.apiserver.errors import APIError
from control.apiserver.protobuf import EXTRA_TYPES, FIELD_NUMBERS, OBJECT_FIELDS, decode_protobuf
from control.apiserver.schema import KINDS, PROTOBUF_KINDS, SCALARS, TYPES, unknown_fields

FIXTURES = Path(__file__).parent / "protobuf_fixtures"
CAPTURED = sorted(p.stem for p in FIXTURES.glob("*.pb"))


# -- a tiny protobuf writer ---------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 are written as 10-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def msg(field: int, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def text(field: int, value: str) -> bytes:
    return msg(field, value.encode())


def entry(field: int, key: str, value: bytes) -> bytes:
    """A map entry: {1: key, 2: value}; `value` is the already-encoded field 2."""
    return msg(field, text(1, key), value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + msg(1, text(1, api_version), text(2, kind)) + msg(2, raw) + text(3, "") + text(4, "")


def object_meta(name: str, labels: dict[str, str] | None = None, namespace: str = "") -> bytes:
    parts = [text(1, name), text(2, ""), text(3, namespace), text(4, ""), text(5, ""), text(6, ""), num(7, 0),
             msg(8)]  # creationTimestamp: Go's zero time is an empty message
    parts += [entry(11, key, text(2, value)) for key, value in (labels or {}).items()]
    return b"".join(parts)


def int_or_string(field: int, value: int | str) -> bytes:
    if isinstance(value, int):
        return msg(field, num(1, 0), num(2, value), text(3, ""))
    return msg(field, num(1, 1), num(2, 0), text(3, value))


def time_message(field: int, seconds: int, nanos: int = 0) -> bytes:
    return msg(field, num(1, seconds), num(2, nanos))


# -- real kubectl bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAPTURED)
def test_kubectl_bodies_decode_to_what_kubectl_would_send_as_json(name: str) -> None:
    body = (FIXTURES / f"{name}.pb").read_bytes()
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert decode_protobuf(body) == expected


def test_the_captured_fixtures_cover_the_typed_create_commands() -> None:
    assert {"configmap", "configmap_binary", "namespace", "deployment", "deployment_zero_replicas",
            "service_nodeport"} <= set(CAPTURED)
    binary = decode_protobuf((FIXTURES / "configmap_binary.pb").read_bytes())
    assert binary["binaryData"]["blob"].startswith("AAECAwQF")  # bytes 0, 1, 2, ... as base64
    assert decode_protobuf((FIXTURES / "deployment_zero_replicas.pb").read_bytes())["spec"]["replicas"] == 0


def test_an_expose_shaped_service_written_by_hand() -> None:
    # `kubectl expose` itself sends JSON; this is its object as a typed client would send it in protobuf.
    port = msg(1, text(1, ""), text(2, "TCP"), num(3, 8081), int_or_string(4, 80), num(5, 0))
    spec = msg(2, port, entry(2, "app", text(2, "web1")), text(3, ""), text(4, ""), text(7, ""), text(8, ""),
               text(10, ""), text(11, ""), num(12, 0), num(13, 0))
    status = msg(3, msg(1))
    raw = msg(1, object_meta("web-exposed", {"app": "web1"})) + spec + status
    expected = json.loads((FIXTURES / "expose.json").read_text())
    assert decode_protobuf(envelope("v1", "Service", raw)) == expected


# -- special types -----------------------------------------------------------------------------------------


def test_deployment_with_probes_volumes_resources_and_int_or_string() -> None:
    http_get = msg(2, text(1, "/healthz"), int_or_string(2, "http"), text(3, ""), text(4, "HTTP"))
    probe = msg(10, msg(1, http_get), num(2, 0), num(3, 1), num(4, 10), num(5, 1), num(6, 3))
    resources = msg(8, entry(1, "memory", msg(2, text(1, "128Mi"))), entry(2, "cpu", msg(2, text(1, "100m"))))
    env = msg(7, text(1, "FROM"), text(2, ""),
              msg(3, msg(3, msg(1, text(1, "settings")), text(2, "mode"), num(3, 0))))  # optional=false is a pointer
    container = msg(2, text(1, "app"), text(2, "nginx:1.27"), text(3, "nginx"), text(3, "-g"), text(5, ""),
                    msg(6, text(1, "http"), num(2, 0), num(3, 8080), text(4, "TCP"), text(5, "")), env, resources,
                    probe, text(13, "/dev/termination-log"), text(14, "IfNotPresent"), num(16, 0), num(17, 0),
                    num(18, 0))
    volume = msg(1, text(1, "config"), msg(2, msg(19, msg(1, text(1, "settings")), num(3, 0o644))))
    legacy = msg(1, text(1, "disk"), msg(2, msg(3, text(1, "pd-1"), text(2, "ext4"), num(3, 0), num(4, 1))))
    pod_spec = msg(2, volume, legacy, container, text(3, "Always"), num(4, 30), text(6, "ClusterFirst"),
                   text(8, ""), text(9, ""), text(10, ""), num(11, 0), num(12, 0), num(13, 0),
                   msg(14, num(2, 1000), num(4, 5), num(4, -1)))
    strategy = msg(4, text(1, "RollingUpdate"), msg(2, int_or_string(1, "25%"), int_or_string(2, 1)))
    spec = msg(2, num(1, 3), msg(2, entry(1, "app", text(2, "web"))),
               msg(3, msg(1, object_meta("", {"app": "web"})), pod_spec), strategy, num(5, 0), num(6, 10), num(7, 0),
               num(9, 600))
    decoded = decode_protobuf(envelope("apps/v1", "Deployment", msg(1, object_meta("web", namespace="prod")) + spec))
    assert decoded["metadata"] == {"name": "web", "namespace": "prod", "creationTimestamp": None}
    assert decoded["spec"]["strategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}}
    assert (decoded["spec"]["replicas"], decoded["spec"]["revisionHistoryLimit"]) == (3, 10)
    assert "minReadySeconds" not in decoded["spec"] and "paused" not in decoded["spec"]
    pod = decoded["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "config", "configMap": {"name": "settings", "defaultMode": 0o644}},
        {"name": "disk", "gcePersistentDisk": {"pdName": "pd-1", "fsType": "ext4", "readOnly": True}},
    ]
    assert pod["securityContext"] == {"runAsUser": 1000, "supplementalGroups": [5, -1]}
    assert (pod["restartPolicy"], pod["terminationGracePeriodSeconds"]) == ("Always", 30)
    assert "hostNetwork" not in pod and "serviceAccountName" not in pod
    assert pod["containers"] == [{
        "name": "app", "image": "nginx:1.27", "command": ["nginx", "-g"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "FROM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode",
                                                                   "optional": False}}}],
        "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "timeoutSeconds": 1,
                          "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent",
    }]


def test_times_micro_times_and_raw_json() -> None:
    spec = msg(2, text(1, "node-1"), num(2, 40), time_message(3, 1767225600, 123_456_789),
               time_message(4, 1767225601), num(5, 0))
    managed = msg(17, text(1, "kubectl"), text(2, "Update"), text(3, "coordination.k8s.io/v1"),
                  time_message(4, 1767225600, 999), text(6, "FieldsV1"), msg(7, text(1, '{"f:spec":{}}')), text(8, ""))
    meta = msg(1, object_meta("node-1", namespace="kube-node-lease"), managed)
    decoded = decode_protobuf(envelope("coordination.k8s.io/v1", "Lease", meta + spec))
    assert decoded["spec"] == {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                               "acquireTime": "2026-01-01T00:00:00.123456Z",
                               "renewTime": "2026-01-01T00:00:01.000000Z", "leaseTransitions": 0}
    assert decoded["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Update", "apiVersion": "coordination.k8s.io/v1",
        "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]


def test_event_time_fields() -> None:
    raw = (msg(1, object_meta("e1", namespace="default")) + msg(2, text(1, "Pod"), text(3, "web")) + text(3, "Pulled")
           + time_message(6, 1767225600) + msg(7) + num(8, 2) + time_message(10, 1767225600, 5_000)
           + text(14, "kubelet") + text(15, ""))
    decoded = decode_protobuf(envelope("v1", "Event", raw))
    assert decoded["firstTimestamp"] == "2026-01-01T00:00:00Z" and decoded["lastTimestamp"] is None
    assert decoded["eventTime"] == "2026-01-01T00:00:00.000005Z"
    assert decoded["involvedObject"] == {"kind": "Pod", "name": "web"}
    assert (decoded["count"], decoded["reportingComponent"], decoded["reportingInstance"]) == (2, "kubelet", "")


def test_an_event_series_zero_count_is_dropped_as_json_drops_it() -> None:
    # core/v1 EventSeries.Count is a non-pointer int32 tagged json:"count,omitempty": gogo writes 0, JSON omits it.
    raw = msg(1, object_meta("e2", namespace="default")) + msg(11, num(1, 0), time_message(2, 1767225600))
    series = decode_protobuf(envelope("v1", "Event", raw))["series"]
    assert series == {"lastObservedTime": "2026-01-01T00:00:00.000000Z"}
    raw = msg(1, object_meta("e3", namespace="default")) + msg(11, num(1, 3))
    assert decode_protobuf(envelope("v1", "Event", raw))["series"] == {"count": 3}


def test_delete_options_and_scale() -> None:
    options = num(1, 0) + msg(2, text(1, "uid-1")) + text(4, "Foreground") + text(5, "All")
    assert decode_protobuf(envelope("meta.k8s.io/v1", "DeleteOptions", options)) == {
        "apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]}
    scale = msg(1, object_meta("web", namespace="default")) + msg(2, num(1, 0)) + msg(3, num(1, 2), text(2, ""))
    assert decode_protobuf(envelope("autoscaling/v1", "Scale", scale)) == {
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": None},
        "spec": {}, "status": {"replicas": 2}}


def test_endpoint_slice_pointer_booleans_and_unknown_fields_are_skipped() -> None:
    endpoint = msg(2, text(1, "10.244.1.5"), msg(2, num(1, 0), num(2, 1)), msg(4, text(1, "Pod"), text(3, "web-1")),
                   text(6, "worker-1"), num(99, 7), msg(98, b"\x01\x02"))
    port = msg(3, text(1, "http"), text(2, "TCP"), num(3, 80))
    raw = msg(1, object_meta("web-abc", {"kubernetes.io/service-name": "web"})) + text(4, "IPv4") + endpoint + port
    decoded = decode_protobuf(envelope("discovery.k8s.io/v1", "EndpointSlice", raw))
    assert decoded["endpoints"] == [{"addresses": ["10.244.1.5"], "conditions": {"ready": False, "serving": True},
                                     "targetRef": {"kind": "Pod", "name": "web-1"}, "nodeName": "worker-1"}]
    assert decoded["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]


def test_packed_repeated_integers_are_accepted() -> None:
    packed = msg(4, varint(1) + varint(2) + varint(300))
    raw = msg(2, msg(14, packed), msg(2, text(1, "c")))
    decoded = decode_protobuf(envelope("v1", "Pod", raw))
    assert decoded["spec"]["securityContext"] == {"supplementalGroups": [1, 2, 300]}


# -- malformed input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    (b"", 400),
    (b'{"kind": "ConfigMap"}', 400),
    (b"k8s\x00\x0a", 400),  # truncated length
    (b"k8s\x00" + b"\x80" * 11, 400),  # varint longer than 10 bytes
    (b"k8s\x00\x0a\x05abc", 400),  # length past the end
    (b"k8s\x00\x0b", 400),  # wire type 3 (groups)
    (b"k8s\x00\x00", 400),  # field number 0
    (envelope("v1", "ConfigMap", msg(1, b"\x0a\x02\xff\xfe")), 400),  # invalid UTF-8 name
    (envelope("v1", "ConfigMap", msg(1, num(1, 5))), 400),  # name as a varint
    (envelope("v1", "ConfigMap", num(1, 5)), 400),  # metadata as a varint
    (envelope("v1", "ConfigMap", msg(2, b"\x0a")), 400),  # truncated map entry
    (envelope("apps/v1", "Deployment", msg(2, msg(4, msg(2, msg(1, num(1, 2)))))), 400),  # IntOrString type 2
    (envelope("v1", "Event", time_message(10, 0, 2_000_000_000)), 400),  # nanos out of range
    (envelope("v1", "Event", time_message(6, 1 << 62)), 400),  # year out of range
    (envelope("v1", "ConfigMap", msg(1, msg(17, msg(7, text(1, "{not json"))))), 400),  # managedFields JSON
    (b"k8s\x00" + msg(1, text(1, "v1"), text(2, "ConfigMap")) + msg(2, b"") + text(3, "gzip"), 400),
    (envelope("v1", "PersistentVolume", b""), 415),  # a kind this server does not serve
    (envelope("extensions/v1beta1", "Deployment", b""), 415),  # other numbers: not ours to guess
])
def test_malformed_bodies_are_api_errors(body: bytes, code: int) -> None:
    with pytest.raises(APIError) as caught:
        decode_protobuf(body)
    assert caught.value.code == code


def test_corrupted_bodies_only_ever_raise_api_errors() -> None:
    rng = random.Random(20260101)
    bodies = [(FIXTURES / f"{name}.pb").read_bytes() for name in CAPTURED]
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(4, len(body))
            if rng.random() < 0.2:
                del body[position:position + rng.randint(1, 8)]
            else:
                body[position] = rng.randrange(256)
        try:
            decoded = decode_protobuf(bytes(body))
        except APIError as exc:
            assert exc.code in (400, 415)
        else:
            json.dumps(decoded)  # whatever decodes is plain JSON


# -- the tables themselves -----------------------------------------------------------------------------------


def _reachable() -> list[str]:
    roots = [kind.type_name for kind in PROTOBUF_KINDS.values()] + ["meta.v1.DeleteOptions"]
    seen: list[str] = []
    while roots:
        name = roots.pop()
        if name in seen:
            continue
        seen.append(name)
        package = name.rsplit(".", 1)[0]
        for field, spec in (TYPES.get(name) or EXTRA_TYPES[name]).items():
            _, item = protobuf._parse(spec, package)
            if item == "object":
                item = OBJECT_FIELDS[name][field]
            if item not in SCALARS and item not in ("bytes", "RawJSON"):
                roots.append(item)
    return seen


def _numbered_fields(numbering: str) -> list[str]:
    names: list[str] = []
    for entry_name in FIELD_NUMBERS[numbering].values():
        if entry_name.startswith("..."):
            names += _numbered_fields(entry_name[3:])
        else:
            names.append(entry_name.rstrip("?"))
    return names


@pytest.mark.parametrize("type_name", _reachable())
def test_every_field_has_a_number_and_every_number_a_field(type_name: str) -> None:
    table = TYPES.get(type_name) or EXTRA_TYPES[type_name]
    expected = set(table)
    if type_name in {kind.type_name for kind in KINDS.values()}:
        expected -= {"apiVersion", "kind"}  # carried by the envelope, not the typed message
    numbered = _numbered_fields(type_name)
    assert len(numbered) == len(set(numbered)), f"{type_name}: a JSON field has two numbers"
    assert set(numbered) == expected
    for field, spec in table.items():
        container, item = protobuf._parse(spec, type_name.rsplit(".", 1)[0])
        if item == "object":
            assert field in OBJECT_FIELDS.get(type_name, {}), f"{type_name}.{field}: free-form, but no table"
    for entry_name in FIELD_NUMBERS[type_name].values():
        if entry_name.endswith("?"):  # only non-pointer scalars drop their zero value
            container, item = protobuf._parse(table[entry_name[:-1]], type_name.rsplit(".", 1)[0])
            assert (container, item) in {("", "string"), ("", "int32"), ("", "int64"), ("", "boolean")}, entry_name


def test_every_table_is_used() -> None:
    reachable = set(_reachable())
    inline = {e[3:] for numbers in FIELD_NUMBERS.values() for e in numbers.values() if e.startswith("...")}
    assert set(FIELD_NUMBERS) == reachable | inline
    assert set(EXTRA_TYPES) <= reachable
    assert not set(EXTRA_TYPES) & set(TYPES)


def test_decoded_objects_pass_the_strict_field_check() -> None:
    for name in CAPTURED:
        decoded = decode_protobuf((FIXTURES / f"{name}.pb").read_bytes())
        assert unknown_fields(decoded["kind"], decoded) == []
