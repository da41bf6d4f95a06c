"""OpenAPI documents (v2 and v3) generated from schema.py's tables, shaped like kube-apiserver's.

    openapi_document("/openapi/v2")            ->  {"swagger": "2.0", "definitions": ..., "paths": ...}
    openapi_document("/openapi/v3")            ->  {"paths": {"api/v1": {"serverRelativeURL": ...}, ...}}
    openapi_document("/openapi/v3/api/v1")     ->  {"openapi": "3.0.0", "components": ..., "paths": ...}
    openapi_document("/anything/else")         ->  None

kubectl reads these documents for three things, and the shapes below are what it looks for:
- whether the server supports the `fieldValidation` query parameter (server-side field validation):
  the PATCH operation carrying the kind's `x-kubernetes-group-version-kind` must list it
  (k8s.io/cli-runtime/pkg/resource/query_param_verifier{,_v3}.go);
- the strategic-merge-patch metadata of `kubectl apply`: `x-kubernetes-patch-merge-key` and
  `x-kubernetes-patch-strategy` on list fields (k8s.io/apimachinery/pkg/util/strategicpatch/meta.go);
- definitions found by `x-kubernetes-group-version-kind` and named like upstream's Go packages
  (`io.k8s.api.core.v1.Pod`, `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`).
Documents are built once and cached: callers must not modify them.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from control.apiserver.resources import RESOURCES, Resource
from control.apiserver.schema import KINDS, PACKAGES, TYPES, field_type

__all__ = ["definition_name", "encode_v2_protobuf", "openapi_document", "v2_document", "v2_protobuf", "v3_document",
           "v3_index"]

Schema = dict[str, Any]

_META = PACKAGES["meta.v1"][0]
# Upstream's special string types and the definitions they have in upstream's documents.
_SPECIAL: dict[str, tuple[str, Schema]] = {
    "IntOrString": ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", {
        "type": "string", "format": "int-or-string",
        "description": "IntOrString is a type that can hold an int32 or a string."}),
    "Quantity": ("io.k8s.apimachinery.pkg.api.resource.Quantity", {
        "type": "string", "description": "Quantity is a fixed-point representation of a number."}),
    "Time": (f"{_META}.Time", {"type": "string", "format": "date-time"}),
    "MicroTime": (f"{_META}.MicroTime", {"type": "string", "format": "date-time"}),
}
_PLAIN: dict[str, Schema] = {
    "string": {"type": "string"}, "int32": {"type": "integer", "format": "int32"},
    "int64": {"type": "integer", "format": "int64"},
    "number": {"type": "number", "format": "double"}, "boolean": {"type": "boolean"}, "object": {"type": "object"},
}
# Where upstream's list-map keys differ from the patch merge key (the port alone is not unique).
_LIST_MAP_KEYS = {("core.v1.ServiceSpec", "ports"): ["port", "protocol"],
                  ("core.v1.Container", "ports"): ["containerPort", "protocol"],
                  ("core.v1.EphemeralContainer", "ports"): ["containerPort", "protocol"]}

# Required fields, as upstream's documents list them (fields without `omitempty` in the Go types).
_REQUIRED: dict[str, list[str]] = {
    "meta.v1.OwnerReference": ["apiVersion", "kind", "name", "uid"],
    "meta.v1.LabelSelectorRequirement": ["key", "operator"],
    "core.v1.PodSpec": ["containers"],
    "core.v1.Container": ["name"],
    "core.v1.ContainerPort": ["containerPort"],
    "core.v1.EnvVar": ["name"],
    "core.v1.Volume": ["name"],
    "core.v1.VolumeMount": ["name", "mountPath"],
    "core.v1.KeyToPath": ["key", "path"],
    "core.v1.HTTPGetAction": ["port"],
    "core.v1.TCPSocketAction": ["port"],
    "core.v1.GRPCAction": ["port"],
    "core.v1.ObjectFieldSelector": ["fieldPath"],
    "core.v1.ConfigMapKeySelector": ["key"],
    "core.v1.SecretKeySelector": ["key"],
    "core.v1.ServicePort": ["port"],
    "core.v1.Taint": ["key", "effect"],
    "core.v1.NodeAddress": ["type", "address"],
    "core.v1.EndpointPort": ["port"],
    "core.v1.EndpointAddress": ["ip"],
    "apps.v1.DeploymentSpec": ["selector", "template"],
    "apps.v1.ReplicaSetSpec": ["selector"],
    "apps.v1.DaemonSetSpec": ["selector", "template"],
    "apps.v1.StatefulSetSpec": ["selector", "template"],
    "apps.v1.ControllerRevision": ["revision"],
    "batch.v1.CronJobSpec": ["schedule", "jobTemplate"],
    "discovery.v1.EndpointSlice": ["addressType", "endpoints"],
    "discovery.v1.Endpoint": ["addresses"],
    "networking.v1.IPBlock": ["cidr"],
}

# meta/v1 types that operations return or take, beyond schema.py's object tables.
_EXTRA_META: dict[str, Schema] = {
    "ListMeta": {"type": "object", "properties": {
        "continue": {"type": "string"}, "remainingItemCount": {"type": "integer", "format": "int64"},
        "resourceVersion": {"type": "string"}, "selfLink": {"type": "string"}}},
    "Status": {"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "code": {"type": "integer", "format": "int32"},
        "details": {"$ref": "StatusDetails"}, "message": {"type": "string"}, "metadata": {"$ref": "ListMeta"},
        "reason": {"type": "string"}, "status": {"type": "string"}},
        "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]},
    "StatusDetails": {"type": "object", "properties": {
        "causes": {"type": "array", "items": {"$ref": "StatusCause"}, "x-kubernetes-list-type": "atomic"},
        "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
        "retryAfterSeconds": {"type": "integer", "format": "int32"}, "uid": {"type": "string"}}},
    "StatusCause": {"type": "object", "properties": {
        "field": {"type": "string"}, "message": {"type": "string"}, "reason": {"type": "string"}}},
    "Preconditions": {"type": "object", "properties": {
        "resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
    "DeleteOptions": {"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "dryRun": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
        "gracePeriodSeconds": {"type": "integer", "format": "int64"}, "orphanDependents": {"type": "boolean"},
        "preconditions": {"$ref": "Preconditions"}, "propagationPolicy": {"type": "string"}}},
    "Patch": {"type": "object", "description": "Patch is provided to give a concrete name and type to the "
              "Kubernetes PATCH request body."},
    "WatchEvent": {"type": "object", "required": ["type", "object"], "properties": {
        "object": {"type": "object"}, "type": {"type": "string"}}},
}


def _camel(group: str) -> str:
    """Upstream's operation-id spelling of a group: "" -> Core, discovery.k8s.io -> Discovery."""
    if not group:
        return "Core"
    return "".join(part[:1].upper() + part[1:] for part in group.removesuffix(".k8s.io").split("."))


def definition_name(qualified: str) -> str:
    """"core.v1.Pod" -> "io.k8s.api.core.v1.Pod"; "meta.v1.Status" -> "io.k8s.apimachinery.pkg.apis.meta.v1.Status"."""
    package, _, name = qualified.rpartition(".")
    return f"{PACKAGES[package][0]}.{name}"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _resolve_refs(schema: Any, prefix: str) -> Any:
    """Turn the short `$ref`s of _EXTRA_META ("ListMeta") into full references."""
    if isinstance(schema, dict):
        out = {k: _resolve_refs(v, prefix) for k, v in schema.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            out["$ref"] = f"{prefix}{_META}.{ref}"
        return out
    if isinstance(schema, list):
        return [_resolve_refs(v, prefix) for v in schema]
    return schema


class _Builder:
    """Definitions and paths for one document flavour: v2 (`#/definitions/`) or v3 (`#/components/schemas/`)."""

    def __init__(self, v3: bool):
        self.v3 = v3
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"

    def ref(self, name: str) -> Schema:
        return {"$ref": self.prefix + name}

    # -- definitions ----------------------------------------------------------------------------------

    def item_schema(self, item: str) -> Schema:
        if item in _SPECIAL:
            return self.ref(_SPECIAL[item][0])
        if item in _PLAIN:
            return dict(_PLAIN[item])
        return self.ref(definition_name(item))

    def field_schema(self, owner: str, field: str, spec: str) -> Schema:
        ftype = field_type(spec, owner.rpartition(".")[0])
        extensions: Schema = {}
        if ftype.merge_key:
            extensions["x-kubernetes-patch-merge-key"] = ftype.merge_key
        if ftype.strategy:
            extensions["x-kubernetes-patch-strategy"] = ftype.strategy
        item = self.item_schema(ftype.item)
        if ftype.container == "array":
            schema: Schema = {"type": "array", "items": item}
            if ftype.merge_key:
                extensions["x-kubernetes-list-type"] = "map"
                extensions["x-kubernetes-list-map-keys"] = _LIST_MAP_KEYS.get((owner, field), [ftype.merge_key])
            elif ftype.strategy == "merge" and ftype.is_scalar:
                extensions["x-kubernetes-list-type"] = "set"
            else:
                extensions["x-kubernetes-list-type"] = "atomic"
        elif ftype.container == "map":
            schema = {"type": "object", "additionalProperties": item}
        elif "$ref" in item and extensions and self.v3:
            # OpenAPI 3 ignores siblings of $ref: upstream wraps the reference in allOf.
            schema = {"allOf": [item]}
        else:
            schema = item
        return {**schema, **extensions}

    def type_definition(self, qualified: str) -> Schema:
        properties = {field: self.field_schema(qualified, field, spec) for field, spec in TYPES[qualified].items()}
        definition: Schema = {"type": "object", "properties": dict(sorted(properties.items()))}
        if qualified in _REQUIRED:
            definition["required"] = list(_REQUIRED[qualified])
        _, _, name = qualified.rpartition(".")
        kind = KINDS.get(name)
        if kind is not None and kind.type_name == qualified:
            definition["x-kubernetes-group-version-kind"] = [_gvk(kind.group, kind.version, kind.kind)]
        return definition

    def list_definition(self, res: Resource) -> Schema:
        item = KINDS[res.kind].type_name
        return {"type": "object", "required": ["items"], "properties": {
            "apiVersion": {"type": "string"}, "items": {"type": "array", "items": self.ref(definition_name(item))},
            "kind": {"type": "string"}, "metadata": self.ref(f"{_META}.ListMeta")},
            "x-kubernetes-group-version-kind": [_gvk(res.group, res.version, res.list_kind)]}

    def all_definitions(self) -> dict[str, Schema]:
        definitions: dict[str, Schema] = {name: dict(schema) for name, schema in _SPECIAL.values()}
        for name, schema in _EXTRA_META.items():
            definitions[f"{_META}.{name}"] = _resolve_refs(schema, self.prefix)
        for qualified in TYPES:
            definitions[definition_name(qualified)] = self.type_definition(qualified)
        for res in RESOURCES:
            if res.kind in KINDS:
                package = KINDS[res.kind].package
                definitions[f"{PACKAGES[package][0]}.{res.list_kind}"] = self.list_definition(res)
        return dict(sorted(definitions.items()))

    # -- paths ----------------------------------------------------------------------------------------

    def parameter(self, name: str, where: str = "query", kind: str = "string", *, required: bool = False,
                  description: str = "") -> Schema:
        param: Schema = {"name": name, "in": where, "description": description or name, "uniqueItems": True}
        if required:
            param["required"] = True
        if self.v3:
            param["schema"] = {"type": kind}
        else:
            param["type"] = kind
        return param

    def body_parameter(self, schema_name: str) -> Schema:
        return {"name": "body", "in": "body", "required": True, "schema": self.ref(schema_name)}

    def list_parameters(self) -> list[Schema]:
        return [self.parameter("allowWatchBookmarks", kind="boolean"), self.parameter("continue"),
                self.parameter("fieldSelector"), self.parameter("labelSelector"),
                self.parameter("limit", kind="integer"), self.parameter("resourceVersion"),
                self.parameter("resourceVersionMatch"), self.parameter("sendInitialEvents", kind="boolean"),
                self.parameter("timeoutSeconds", kind="integer"), self.parameter("watch", kind="boolean")]

    def write_parameters(self, *, patch: bool = False) -> list[Schema]:
        params = [self.parameter("dryRun"), self.parameter("fieldManager"), self.parameter(
            "fieldValidation", description="fieldValidation instructs the server on how to handle objects in the "
            "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict")]
        if patch:
            params.append(self.parameter("force", kind="boolean"))
        return params

    def delete_parameters(self) -> list[Schema]:
        return [self.parameter("dryRun"), self.parameter("gracePeriodSeconds", kind="integer"),
                self.parameter("orphanDependents", kind="boolean"), self.parameter("propagationPolicy")]

    def operation(self, operation_id: str, action: str, res: Resource, gvk: dict[str, str], response: str | None,
                  parameters: list[Schema], *, body: str | None = None, status: str = "200",
                  body_types: tuple[str, ...] = ("*/*",)) -> Schema:
        op: Schema = {"operationId": operation_id, "description": f"{action} {gvk['kind']}",
                      "tags": [f"{_camel(res.group).lower()}_{res.version}"]}
        response_schema = self.ref(response) if response else {"type": "string"}
        if self.v3:
            if body:
                op["requestBody"] = {"required": True,
                                     "content": {t: {"schema": self.ref(body)} for t in body_types}}
            op["parameters"] = parameters
            op["responses"] = {status: {"description": "OK",
                                        "content": {"application/json": {"schema": response_schema}}},
                               "401": {"description": "Unauthorized"}}
        else:
            op["consumes"] = list(body_types)
            op["produces"] = ["application/json", "application/yaml"]
            op["schemes"] = ["https"]
            op["parameters"] = [*([self.body_parameter(body)] if body else []), *parameters]
            op["responses"] = {status: {"description": "OK", "schema": response_schema},
                               "401": {"description": "Unauthorized"}}
        op["x-kubernetes-action"] = action
        op["x-kubernetes-group-version-kind"] = gvk
        return op

    def resource_paths(self, res: Resource) -> dict[str, Schema]:
        kind_type = KINDS[res.kind].type_name if res.kind in KINDS else None
        if kind_type is None:
            return {}
        obj = definition_name(kind_type)
        listed = f"{PACKAGES[KINDS[res.kind].package][0]}.{res.list_kind}"
        gvk = _gvk(res.group, res.version, res.kind)
        ident = f"{_camel(res.group)}{res.version.capitalize()}"
        scoped = "Namespaced" if res.namespaced else ""
        root = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        collection = f"{root}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{root}/{res.plural}"
        watch_collection = collection.replace(root, f"{root}/watch", 1)
        namespace_param = [self.parameter("namespace", "path", required=True)] if res.namespaced else []
        name_param = [self.parameter("name", "path", required=True)]
        status_ref = f"{_META}.Status"
        patch_types = ("application/json-patch+json", "application/merge-patch+json",
                       "application/strategic-merge-patch+json", "application/apply-patch+yaml")
        verbs = set(res.verbs)
        paths: dict[str, Schema] = {}

        item: Schema = {"parameters": namespace_param + name_param}
        if "get" in verbs:
            item["get"] = self.operation(f"read{ident}{scoped}{res.kind}", "get", res, gvk, obj, [])
        if "update" in verbs:
            item["put"] = self.operation(f"replace{ident}{scoped}{res.kind}", "put", res, gvk, obj,
                                         self.write_parameters(), body=obj)
        if "patch" in verbs:
            item["patch"] = self.operation(f"patch{ident}{scoped}{res.kind}", "patch", res, gvk, obj,
                                           self.write_parameters(patch=True), body=f"{_META}.Patch",
                                           body_types=patch_types)
        if "delete" in verbs:
            item["delete"] = self.operation(f"delete{ident}{scoped}{res.kind}", "delete", res, gvk, status_ref,
                                            self.delete_parameters(), body=f"{_META}.DeleteOptions")
        paths[f"{collection}/{{name}}"] = item

        coll: Schema = {"parameters": list(namespace_param)}
        if "list" in verbs:
            coll["get"] = self.operation(f"list{ident}{scoped}{res.kind}", "list", res, gvk, listed,
                                         self.list_parameters())
        if "create" in verbs:
            coll["post"] = self.operation(f"create{ident}{scoped}{res.kind}", "post", res, gvk, obj,
                                          self.write_parameters(), body=obj, status="201")
        if "deletecollection" in verbs:
            coll["delete"] = self.operation(f"delete{ident}Collection{scoped}{res.kind}", "deletecollection", res,
                                            gvk, status_ref, self.list_parameters() + self.delete_parameters(),
                                            body=f"{_META}.DeleteOptions")
        paths[collection] = coll
        if res.namespaced and "list" in verbs:
            paths[f"{root}/{res.plural}"] = {"get": self.operation(
                f"list{ident}{res.kind}ForAllNamespaces", "list", res, gvk, listed, self.list_parameters())}
        if "watch" in verbs:
            watch_event = f"{_META}.WatchEvent"
            paths[watch_collection] = {"parameters": list(namespace_param), "get": self.operation(
                f"watch{ident}{scoped}{res.kind}List", "watchlist", res, gvk, watch_event, self.list_parameters())}
            paths[f"{watch_collection}/{{name}}"] = {"parameters": namespace_param + name_param, "get": self.operation(
                f"watch{ident}{scoped}{res.kind}", "watch", res, gvk, watch_event, self.list_parameters())}
            if res.namespaced:
                paths[f"{root}/watch/{res.plural}"] = {"get": self.operation(
                    f"watch{ident}{res.kind}ListForAllNamespaces", "watchlist", res, gvk, watch_event,
                    self.list_parameters())}

        for sub in res.subresources:
            sub_path = f"{collection}/{{name}}/{sub}"
            suffix = sub.capitalize()
            params = namespace_param + name_param
            if sub in ("status", "scale", "ephemeralcontainers"):  # each a whole object: get, put, patch
                target = "io.k8s.api.autoscaling.v1.Scale" if sub == "scale" else obj
                sub_gvk = _gvk("autoscaling", "v1", "Scale") if sub == "scale" else gvk
                paths[sub_path] = {
                    "parameters": params,
                    "get": self.operation(f"read{ident}{scoped}{res.kind}{suffix}", "get", res, sub_gvk, target, []),
                    "put": self.operation(f"replace{ident}{scoped}{res.kind}{suffix}", "put", res, sub_gvk, target,
                                          self.write_parameters(), body=target),
                    "patch": self.operation(f"patch{ident}{scoped}{res.kind}{suffix}", "patch", res, sub_gvk,
                                            target, self.write_parameters(patch=True), body=f"{_META}.Patch",
                                            body_types=patch_types)}
            elif sub == "binding":
                binding = definition_name("core.v1.Binding")
                paths[sub_path] = {"parameters": params, "post": self.operation(
                    f"create{ident}{scoped}{res.kind}Binding", "post", res, _gvk("", "v1", "Binding"), binding,
                    self.write_parameters(), body=binding, status="201")}
            elif sub == "log":
                paths[sub_path] = {"parameters": params, "get": self.operation(
                    f"read{ident}{scoped}{res.kind}Log", "get", res, gvk, None,
                    [self.parameter("container"), self.parameter("follow", kind="boolean"),
                     self.parameter("tailLines", kind="integer")])}
            elif sub == "finalize":
                paths[sub_path] = {"parameters": params, "put": self.operation(
                    f"replace{ident}{scoped}{res.kind}Finalize", "put", res, gvk, obj, self.write_parameters(),
                    body=obj)}
        return paths


def _referenced(schema: Any, prefix: str, found: set[str]) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            found.add(ref[len(prefix):])
        for value in schema.values():
            _referenced(value, prefix, found)
    elif isinstance(schema, list):
        for value in schema:
            _referenced(value, prefix, found)


def _closure(roots: Any, definitions: dict[str, Schema], prefix: str) -> dict[str, Schema]:
    """The definitions `roots` reference, transitively."""
    wanted: set[str] = set()
    _referenced(roots, prefix, wanted)
    done: set[str] = set()
    while wanted - done:
        name = min(wanted - done)
        done.add(name)
        _referenced(definitions.get(name), prefix, wanted)
    return {name: definitions[name] for name in sorted(done) if name in definitions}


_INFO = {"title": "Kubernetes", "version": "v1.30.0-kubesim"}
_SECURITY = {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header",
                             "description": "Bearer Token authentication"}}


@cache
def v2_document() -> dict[str, Any]:
    builder = _Builder(v3=False)
    paths: dict[str, Schema] = {}
    for res in RESOURCES:
        paths.update(builder.resource_paths(res))
    return {"swagger": "2.0", "info": dict(_INFO), "paths": dict(sorted(paths.items())),
            "definitions": builder.all_definitions(), "securityDefinitions": dict(_SECURITY),
            "security": [{"BearerToken": []}]}


def _group_version_key(res: Resource) -> str:
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


@cache
def v3_document(key: str) -> dict[str, Any] | None:
    """The v3 document of one group-version ("api/v1", "apis/apps/v1"), or None if not served."""
    served = [res for res in RESOURCES if _group_version_key(res) == key]
    if not served:
        return None
    builder = _Builder(v3=True)
    paths: dict[str, Schema] = {}
    for res in served:
        paths.update(builder.resource_paths(res))
    definitions = builder.all_definitions()
    kinds = [builder.ref(definition_name(KINDS[r.kind].type_name)) for r in served if r.kind in KINDS]
    schemas = _closure([paths, kinds], definitions, builder.prefix)
    return {"openapi": "3.0.0", "info": dict(_INFO), "paths": dict(sorted(paths.items())),
            "components": {"schemas": schemas, "securitySchemes": dict(_SECURITY)},
            "security": [{"BearerToken": []}]}


@cache
def _v3_hash(key: str) -> str:
    document = v3_document(key)
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    # Upstream's index carries the SHA-512 of each document in upper-case hex, for client caches.
    return hashlib.sha512(encoded).hexdigest().upper()


@cache
def v3_index() -> dict[str, Any]:
    keys = sorted({_group_version_key(res) for res in RESOURCES})
    return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={_v3_hash(key)}"} for key in keys}}


def openapi_document(path: str) -> dict[str, Any] | bytes | None:
    """The document served at `path` (without its query), or None. "/openapi/v2.pb" is the v2 document
    encoded as protobuf (bytes): the server asks for it when a client accepts only protobuf."""
    path = path.split("?", 1)[0].rstrip("/")
    if path == "/openapi/v2":
        return v2_document()
    if path == "/openapi/v2.pb":
        return v2_protobuf()
    if path == "/openapi/v3":
        return v3_index()
    if path.startswith("/openapi/v3/"):
        return v3_document(path.removeprefix("/openapi/v3/"))
    return None


# -- the v2 document as protobuf ----------------------------------------------------------------------
#
# client-go's DiscoveryClient.OpenAPISchema asks /openapi/v2 for protobuf only and cannot read JSON, and
# kubectl up to 1.28 needs that document for `apply` with its default validation. The encoding is
# gnostic's openapi_v2.Document (github.com/google/gnostic openapiv2/OpenAPIv2.proto), written here by
# hand: proto3 wire format with the field numbers of that file. Vendor extensions travel as
# NamedAny{name, Any{yaml}}, which kube-openapi reads back with a YAML (so JSON) decoder.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, embedded messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, value: Any) -> bytes:
    return _field(number, str(value).encode()) if value not in (None, "") else b""


def _strings(number: int, values: Any) -> bytes:
    return b"".join(_field(number, str(v).encode()) for v in values or ())


def _bool(number: int, value: Any) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _extensions(number: int, obj: dict[str, Any]) -> bytes:
    return b"".join(
        _field(number, _string(1, key) + _field(2, _string(2, json.dumps(value, separators=(",", ":")))))
        for key, value in obj.items() if key.startswith("x-"))


def _pb_schema(schema: dict[str, Any]) -> bytes:
    out = _string(1, schema.get("$ref")) + _string(2, schema.get("format")) + _string(3, schema.get("title"))
    out += _string(4, schema.get("description")) + _bool(16, schema.get("uniqueItems"))
    out += _strings(19, schema.get("required"))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        out += _field(21, _field(1, _pb_schema(additional)))
    elif isinstance(additional, bool):
        out += _field(21, _varint(2 << 3) + (b"\x01" if additional else b"\x00"))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        out += _field(22, _strings(1, types))
    if "items" in schema:
        out += _field(23, _field(1, _pb_schema(schema["items"])))
    out += b"".join(_field(24, _pb_schema(s)) for s in schema.get("allOf", ()))
    if "properties" in schema:
        out += _field(25, b"".join(_field(1, _string(1, name) + _field(2, _pb_schema(s)))
                                   for name, s in schema["properties"].items()))
    return out + _extensions(31, schema)


def _pb_parameter(param: dict[str, Any]) -> bytes:
    if param.get("$ref"):
        return _field(2, _string(1, param["$ref"]))  # ParametersItem.json_reference
    common = _bool(1, param.get("required")) + _string(2, param["in"]) + _string(3, param.get("description"))
    common += _string(4, param["name"])
    if param["in"] == "body":
        body = _string(1, param.get("description")) + _string(2, param["name"]) + _string(3, "body")
        body += _bool(4, param.get("required")) + _field(5, _pb_schema(param["schema"]))
        parameter = _field(1, body)
    elif param["in"] == "path":  # PathParameterSubSchema: type 5, unique_items 19
        parameter = _field(2, _field(4, common + _string(5, param.get("type")) + _bool(19, param.get("uniqueItems"))))
    else:  # QueryParameterSubSchema: type 6, unique_items 20
        parameter = _field(2, _field(3, common + _string(6, param.get("type")) + _bool(20, param.get("uniqueItems"))))
    return _field(1, parameter)  # ParametersItem.parameter


def _pb_operation(op: dict[str, Any]) -> bytes:
    out = _strings(1, op.get("tags")) + _string(3, op.get("description")) + _string(5, op.get("operationId"))
    out += _strings(6, op.get("produces")) + _strings(7, op.get("consumes"))
    out += b"".join(_field(8, _pb_parameter(p)) for p in op.get("parameters", ()))
    responses = b""
    for code, response in op.get("responses", {}).items():
        body = _string(1, response.get("description"))
        if "schema" in response:
            body += _field(2, _field(1, _pb_schema(response["schema"])))  # SchemaItem.schema
        responses += _field(1, _string(1, code) + _field(2, _field(1, body)))  # ResponseValue.response
    out += _field(9, responses) + _strings(10, op.get("schemes"))
    return out + _extensions(13, op)


_PB_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _pb_path_item(item: dict[str, Any]) -> bytes:
    out = b"".join(_field(number, _pb_operation(item[method])) for method, number in _PB_METHODS.items()
                   if method in item)
    out += b"".join(_field(9, _pb_parameter(p)) for p in item.get("parameters", ()))
    return out + _extensions(10, item)


def encode_v2_protobuf(document: dict[str, Any]) -> bytes:
    """gnostic's openapi_v2.Document wire encoding of a v2 document built by this module."""
    info = document.get("info", {})
    out = _string(1, document.get("swagger"))
    out += _field(2, _string(1, info.get("title")) + _string(2, info.get("version")))
    out += _field(8, b"".join(_field(2, _string(1, path) + _field(2, _pb_path_item(item)))
                              for path, item in document.get("paths", {}).items()))
    out += _field(9, b"".join(_field(1, _string(1, name) + _field(2, _pb_schema(schema)))
                              for name, schema in document.get("definitions", {}).items()))
    for requirement in document.get("security", ()):
        out += _field(12, b"".join(_field(1, _string(1, name) + _field(2, _strings(1, scopes)))
                                   for name, scopes in requirement.items()))
    security = b""
    for name, scheme in document.get("securityDefinitions", {}).items():
        api_key = _string(1, scheme.get("type")) + _string(2, scheme.get("name")) + _string(3, scheme.get("in"))
        api_key += _string(4, scheme.get("description"))
        security += _field(1, _string(1, name) + _field(2, _field(2, api_key)))  # .api_key_security
    return out + _field(13, security)


@cache
def v2_protobuf() -> bytes:
    return encode_v2_protobuf(v2_document())
