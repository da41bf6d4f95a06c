"""Structural schemas on custom resources (crd/structural.py) and the CRD's own validation (crd/definition.py):
upstream's field paths, reasons and messages for what a 422 says."""

from __future__ import annotations

import copy
from typing import Any

from control.apiserver.crd import definition, structural
from tests.crd_examples import crontab, crontab_crd

SCHEMA: dict[str, Any] = crontab_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def causes(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e.type, e.field, e.message) for e in structural.validate(SCHEMA, obj)]


def test_a_valid_instance_has_no_errors() -> None:
    assert causes(crontab("a", replicas=3, port="http", tags=["x", "y"])) == []
    assert causes(crontab("a", port=8080)) == []


def test_type_errors_name_the_field_as_upstream() -> None:
    assert causes(crontab("a", replicas="three")) == [
        ("FieldValueTypeInvalid", "spec.replicas",
         'Invalid value: "string": spec.replicas in body must be of type integer: "string"')]
    assert causes(crontab("a", port=1.5)) == [
        ("FieldValueTypeInvalid", "spec.port",
         'Invalid value: "number": spec.port in body must be of type integer,string: "number"')]


def test_bounds_and_pattern() -> None:
    assert causes(crontab("a", replicas=11)) == [
        ("FieldValueInvalid", "spec.replicas", "Invalid value: 11: spec.replicas in body should be less than or "
         "equal to 10")]
    assert causes(crontab("a", replicas=0))[0][2].endswith("should be greater than or equal to 1")
    problem = causes(crontab("a", cronSpec="every minute"))
    assert problem[0][:2] == ("FieldValueInvalid", "spec.cronSpec")
    assert problem[0][2].startswith('Invalid value: "every minute": spec.cronSpec in body should match')


def test_list_types_set_and_map_are_unique() -> None:
    assert causes(crontab("a", tags=["x", "x"])) == [("FieldValueDuplicate", "spec.tags[1]", 'Duplicate value: "x"')]
    assert causes(crontab("a", routes=[{"name": "r", "weight": 1}, {"name": "r", "weight": 2}])) == [
        ("FieldValueDuplicate", "spec.routes[1]", 'Duplicate value: map[string]interface {}{"name":"r"}')]
    assert causes(crontab("a", routes=[{"weight": 1}])) == [("FieldValueRequired", "spec.routes[0].name",
                                                              "Required value")]


def test_embedded_resources_need_apiversion_and_kind() -> None:
    assert causes(crontab("a", template={"metadata": {"name": "x"}})) == [
        ("FieldValueRequired", "spec.template.apiVersion", "Required value: must not be empty"),
        ("FieldValueRequired", "spec.template.kind", "Required value: must not be empty")]


def test_pruning_drops_what_the_schema_does_not_specify() -> None:
    obj = crontab("a", unknown=1, extra={"anything": {"goes": True}},
                  template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1}, "spec": {}})
    obj["metadata"]["nonsense"] = "x"
    obj["topLevel"] = True
    removed = structural.prune(SCHEMA, obj)
    assert sorted(removed) == ["metadata.nonsense", "spec.template.metadata.bogus", "spec.unknown", "topLevel"]
    assert obj["spec"]["extra"] == {"anything": {"goes": True}}  # x-kubernetes-preserve-unknown-fields
    assert obj["spec"]["template"]["spec"] == {}
    assert "topLevel" not in obj and obj["apiVersion"] == "stable.example.com/v1"


def test_defaulting_fills_absent_fields_and_replaces_nulls() -> None:
    obj = crontab("a")
    structural.apply_defaults(SCHEMA, obj)
    assert obj["spec"]["replicas"] == 1
    nulled = crontab("a", replicas=None, image=None)
    structural.apply_defaults(SCHEMA, nulled)
    assert nulled["spec"]["replicas"] == 1 and "image" not in nulled["spec"]
    kept = crontab("a", replicas=4)
    structural.apply_defaults(SCHEMA, kept)
    assert kept["spec"]["replicas"] == 4


def test_nested_defaults_apply_inside_a_defaulted_object() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
        "mode": {"type": "string", "default": "fast"}}}}}
    obj: dict[str, Any] = {}
    structural.apply_defaults(schema, obj)
    assert obj == {"spec": {"mode": "fast"}}


def test_the_crontab_crd_is_valid_and_structural() -> None:
    crd = crontab_crd(versions=("v1", "v1beta1"))
    definition.default_crd(crd)
    assert definition.validate_crd(crd) == []
    assert crd["spec"]["names"]["listKind"] == "CronTabList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}


def crd_causes(crd: dict[str, Any]) -> list[tuple[str, str]]:
    definition.default_crd(crd)
    return [(e.field, e.message) for e in definition.validate_crd(crd)]


def test_crd_validation_in_upstreams_words() -> None:
    crd = crontab_crd()
    crd["metadata"]["name"] = "wrong"
    assert crd_causes(crd) == [("metadata.name", 'Invalid value: "wrong": must be spec.names.plural+"."+spec.group')]

    crd = crontab_crd(versions=("v1", "v2"))
    crd["spec"]["versions"][1]["storage"] = True
    assert crd_causes(crd) == [("spec.versions", 'Invalid value: []string{"v1", "v2"}: must have exactly one version '
                                                 "marked as storage version")]

    crd = crontab_crd()
    crd["spec"]["group"] = "example"
    crd["metadata"]["name"] = "crontabs.example"
    assert ("spec.group", 'Invalid value: "example": should be a domain with at least one dot') in crd_causes(crd)

    crd = crontab_crd()
    crd["spec"]["scope"] = "Global"
    assert crd_causes(crd) == [("spec.scope", 'Unsupported value: "Global": supported values: "Cluster", '
                                              '"Namespaced"')]


def test_non_structural_schemas_are_refused() -> None:
    crd = crontab_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["untyped"] = {"description": "no type"}
    schema["properties"]["spec"]["properties"]["list"] = {"type": "array"}
    schema["properties"]["spec"]["properties"]["both"] = {"type": "object", "properties": {},
                                                          "additionalProperties": {"type": "string"}}
    path = "spec.versions[0].schema.openAPIV3Schema.properties[spec]"
    assert sorted(crd_causes(crd)) == sorted([
        (f"{path}.properties[untyped].type", "Required value: must not be empty for specified object fields"),
        (f"{path}.properties[list].items", "Required value: must be specified"),
        (f"{path}.properties[both].additionalProperties",
         "Forbidden: additionalProperties and properties are mutual exclusive")])
    missing = crontab_crd()
    del missing["spec"]["versions"][0]["schema"]
    assert crd_causes(missing) == [("spec.versions[0].schema.openAPIV3Schema", "Required value: schemas are "
                                                                               "required")]


def test_a_default_must_validate_against_its_schema() -> None:
    crd = crontab_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["replicas"]["default"] = 50
    assert crd_causes(crd) == [(
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default",
        "Invalid value: 50: spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].default "
        "in body should be less than or equal to 10")]


def test_update_keeps_group_and_scope() -> None:
    old = crontab_crd()
    definition.default_crd(old)
    new = copy.deepcopy(old)
    new["spec"]["scope"] = "Cluster"
    assert [(e.field, e.message) for e in definition.validate_crd_update(new, old)] == [
        ("spec.scope", 'Invalid value: "Cluster": field is immutable')]


def test_int_or_string_in_upstreams_anyof_form_is_structural() -> None:
    crd = crontab_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    port = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    spec["properties"]["port"] = port
    assert crd_causes(crd) == []
    assert structural.validate(port, 80) == [] and structural.validate(port, "http") == []
    assert [e.type for e in structural.validate(port, True, "spec.port")] == ["FieldValueTypeInvalid"]
    # Outside that pattern, value validations may not carry types.
    spec["properties"]["other"] = {"type": "string", "anyOf": [{"type": "string", "pattern": "^a"}]}
    assert crd_causes(crd) == [("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[other]."
                                "anyOf[0].type", "Forbidden: must be undefined to be structural")]
