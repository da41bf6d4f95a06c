"""The custom resources in the OpenAPI documents, as apiextensions-apiserver publishes them: each served
version's schema as a definition named like upstream's (group reversed, then version and kind:
`com.example.stable.v1.CronTab`) with its group-version-kind, apiVersion / kind / metadata added, and
the resource's paths (with the fieldValidation parameter kubectl looks for before it lets the server
validate). v3 has a document per custom group version; v2 (JSON and protobuf) gets them merged in, with
what OpenAPI v2 cannot say dropped as upstream's ToStructuralOpenAPIV2 does (nullable, oneOf/anyOf/not,
the int-or-string type).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from control.apiserver.crd.catalog import Catalog, CustomResource
from control.apiserver.openapi import _INFO, _SECURITY, _Builder, _closure, encode_v2_protobuf

Schema = dict[str, Any]
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"


def definition_names(res: CustomResource) -> tuple[str, str]:
    reversed_group = ".".join(reversed(res.group.split(".")))
    base = f"{reversed_group}.{res.version}"
    return f"{base}.{res.kind}", f"{base}.{res.list_kind}"


def _v2_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_v2_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _v2_schema(v) for k, v in node.items() if k not in ("oneOf", "anyOf", "not", "nullable")}
    if node.get("nullable") or node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("format", None)
    if "properties" in node:  # property names are data, not schema keys
        out["properties"] = {k: _v2_schema(v) for k, v in node["properties"].items()}
    return out


def _definitions(res: CustomResource, prefix: str, v2: bool) -> dict[str, Schema]:
    obj_name, list_name = definition_names(res)
    schema = copy.deepcopy(res.schema)
    if v2:
        schema = _v2_schema(schema)
    properties = dict(schema.get("properties") or {})
    properties.update({"apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema "
                                      "of this representation of an object."},
                       "kind": {"type": "string", "description": "Kind is a string value representing the REST "
                                "resource this object represents."},
                       "metadata": {"$ref": f"{prefix}{_META}.ObjectMeta"} if v2 else
                       {"allOf": [{"$ref": f"{prefix}{_META}.ObjectMeta"}]}})
    schema["type"] = "object"
    schema["properties"] = dict(sorted(properties.items()))
    schema["x-kubernetes-group-version-kind"] = [{"group": res.group, "version": res.version, "kind": res.kind}]
    listed: Schema = {
        "type": "object", "required": ["items"],
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "items": {"type": "array", "items": {"$ref": f"{prefix}{obj_name}"}},
                       "metadata": {"$ref": f"{prefix}{_META}.ListMeta"}},
        "x-kubernetes-group-version-kind": [{"group": res.group, "version": res.version, "kind": res.list_kind}]}
    return {obj_name: schema, list_name: listed}


class _Documents:
    """Built per catalog generation: documents change only when what is served does."""

    def __init__(self) -> None:
        self.generation = -1
        self.built: dict[str, Any] = {}

    def get(self, catalog: Catalog, path: str, build: Callable[[], Any]) -> Any:
        if catalog.generation != self.generation:
            self.generation, self.built = catalog.generation, {}
        if path not in self.built:
            self.built[path] = build()
        return self.built[path]


_CACHE = _Documents()


def _gv_key(res: CustomResource) -> str:
    return f"apis/{res.group}/{res.version}"


def _v2(base: Callable[[str], Any], catalog: Catalog) -> Schema:
    document = dict(base("/openapi/v2"))
    builder = _Builder(v3=False)
    paths, definitions = dict(document["paths"]), dict(document["definitions"])
    for res in catalog.resources():
        definitions.update(_definitions(res, builder.prefix, v2=True))
        paths.update(builder.resource_paths(res, definition_names(res)))
    document["paths"], document["definitions"] = dict(sorted(paths.items())), dict(sorted(definitions.items()))
    return document


def _v3(catalog: Catalog, key: str) -> Schema | None:
    served = [r for r in catalog.resources() if _gv_key(r) == key]
    if not served:
        return None
    builder = _Builder(v3=True)
    paths: Schema = {}
    own: dict[str, Schema] = {}
    for res in served:
        own.update(_definitions(res, builder.prefix, v2=False))
        paths.update(builder.resource_paths(res, definition_names(res)))
    builtin = builder.all_definitions()
    schemas = {**_closure([paths, own], builtin, builder.prefix), **own}
    return {"openapi": "3.0.0", "info": dict(_INFO), "paths": dict(sorted(paths.items())),
            "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": dict(_SECURITY)},
            "security": [{"BearerToken": []}]}


def _hash(document: Any) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest().upper()


def document(base: Callable[[str], Any], catalog: Catalog, path: str) -> Any:
    """The document at `path` from `base` (the built-in documents), with the catalog's custom resources."""
    clean = path.split("?", 1)[0].rstrip("/")
    if not catalog.resources():
        return base(path)
    if clean == "/openapi/v2":
        return _CACHE.get(catalog, clean, lambda: _v2(base, catalog))
    if clean == "/openapi/v2.pb":
        return _CACHE.get(catalog, clean, lambda: encode_v2_protobuf(_v2(base, catalog)))
    if clean == "/openapi/v3":
        def index() -> Any:
            built = copy.deepcopy(base(path))
            for key in sorted({_gv_key(r) for r in catalog.resources()}):
                found = _CACHE.get(catalog, f"/openapi/v3/{key}", functools.partial(_v3, catalog, key))
                built["paths"][key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_hash(found)}"}
            built["paths"] = dict(sorted(built["paths"].items()))
            return built

        return _CACHE.get(catalog, clean, index)
    if clean.startswith("/openapi/v3/"):
        key = clean.removeprefix("/openapi/v3/")
        custom = _CACHE.get(catalog, clean, lambda: _v3(catalog, key))
        if custom is not None:
            return custom
    return base(path)


__all__ = ["definition_names", "document"]
