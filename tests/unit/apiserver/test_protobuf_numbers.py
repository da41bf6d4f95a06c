"""protobuf.py's field numbers against the ones kubectl 1.33 itself carries (scripts/protobuf_field_numbers.py).

Upstream's gogo-protobuf code embeds every generated.proto's FileDescriptorProto in the binary, so kubectl 1.33
is the authority on the numbers it writes. The tests read them out of the machine's kubectl 1.33: on PATH as
`kubectl` or `kubectl.1.33`, or a versioned `kubectl.1.33` installed beside the kubectl on PATH (as
distributions that ship several kubectl versions do). Without one they skip, and fail under CI=true.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from control.apiserver.protobuf import FIELD_NUMBERS, OBJECT_FIELDS
from control.apiserver.schema import PROTOBUF_KINDS as KINDS
from tests.conftest import unavailable

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "protobuf_field_numbers.py"
VERSION = "v1.33."


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protobuf_field_numbers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


numbers = _load_script()
Messages = dict[str, dict[int, Any]]


def _candidates() -> list[str]:
    out: list[str] = []
    for name in ("kubectl.1.33", "kubectl"):
        path = shutil.which(name)
        if path is not None:
            out += [path, str(Path(path).resolve().with_name("kubectl.1.33"))]
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def kubectl_133() -> str:
    for path in _candidates():
        if Path(path).is_file() and numbers.kubectl_version(path).startswith(VERSION):
            return path
    unavailable("needs kubectl 1.33 (as kubectl or kubectl.1.33 on PATH, or kubectl.1.33 beside kubectl)")


@pytest.fixture(scope="module")
def found(kubectl_133: str) -> Messages:
    messages: Messages = numbers.read_kubectl(kubectl_133)
    return messages


# -- the extraction itself, on a binary made here ----------------------------------------------------------------


def _descriptor(name: str, package: str) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name=name, package=package)
    message = file.message_type.add(name="Thing")
    message.field.add(name="metadata", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                      type_name=".k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    labels = message.field.add(name="labels", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                               label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                               type_name=f".{package}.Thing.LabelsEntry")
    labels.options.MergeFromString(b"\xc8\xde\x1f\x00" + b"\xe2\xde\x1f\x06Labels")  # gogoproto nullable=false,
    # customname="Labels": extensions this runtime does not know, kept as unknown fields, as in kubectl
    entry = message.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    for number, field in ((1, "key"), (2, "value")):
        entry.field.add(name=field, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    count = message.field.add(name="count", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                              label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    count.options.MergeFromString(b"\xc8\xde\x1f\x00" + b"\xe2\xde\x1f\x05Count")  # a non-pointer int32
    return file


def test_descriptors_are_found_among_noise_and_false_gzip_headers() -> None:
    wanted = _descriptor("k8s.io/api/things/v1/generated.proto", "k8s.io.api.things.v1")
    other = _descriptor("github.com/example/other.proto", "example")
    binary = (b"\x1f\x8b\x08 not gzip" + gzip.compress(wanted.SerializeToString()) + b"\x00" * 7
              + gzip.compress(b"not a descriptor \xff\xff") + gzip.compress(other.SerializeToString()) + b"\x1f\x8b")
    files = numbers.embedded_descriptors(binary)
    assert list(files) == ["k8s.io/api/things/v1/generated.proto"]
    thing = numbers.messages(files)["things.v1.Thing"]  # no Go tags given: json is None
    assert thing == {1: numbers.Field("metadata", "meta.v1.ObjectMeta", "", True),
                     2: numbers.Field("count", "int32", "Count", False),
                     3: numbers.Field("labels", "{}string", "Labels", False)}
    with pytest.raises(numbers.ExtractError, match="is this a kubectl"):
        numbers.embedded_descriptors(gzip.compress(other.SerializeToString()))


def _go_name(name: str, tag: str = "") -> bytes:
    """internal/abi.Name: flags (2: has a tag), length, name[, length, tag] (short strings: one-byte lengths)."""
    out = bytes([2 if tag else 0, len(name)]) + name.encode()
    return out + (bytes([len(tag)]) + tag.encode() if tag else b"")


def _elf_with_struct(package: str, type_name: str, fields: list[tuple[str, str]]) -> bytes:
    """A minimal 64-bit ELF whose .rodata holds one named Go struct type, laid out as go_struct_tags reads it."""
    address, header_size = 0x401000, 64
    fields_at = 96  # after the abi.Type (48), pkgPath (8), fields slice (24) and uncommon type (16)
    names_at = fields_at + 24 * len(fields)
    blobs = b""
    offsets = []
    for blob in [_go_name(type_name), _go_name(package)] + [_go_name(n, t) for n, t in fields]:
        offsets.append(names_at + len(blobs))
        blobs += blob
    struct_type = bytearray(96)
    struct_type[20], struct_type[23] = 1, 25  # tflag: has an uncommon type; kind: struct
    struct_type[40:44] = offsets[0].to_bytes(4, "little")
    struct_type[56:80] = b"".join(v.to_bytes(8, "little") for v in (address + fields_at, len(fields), len(fields)))
    struct_type[80:84] = offsets[1].to_bytes(4, "little")
    field_array = b"".join((address + at).to_bytes(8, "little") + bytes(16) for at in offsets[2:])
    rodata = bytes(struct_type) + field_array + blobs
    names = b"\0.rodata\0.shstrtab\0"
    table_at = header_size + len(rodata) + len(names)

    def section(name: int, at: int, offset: int, size: int) -> bytes:
        return name.to_bytes(4, "little") + bytes(12) + at.to_bytes(8, "little") + offset.to_bytes(8, "little") + \
            size.to_bytes(8, "little") + bytes(24)

    header = bytearray(header_size)
    header[0:6] = b"\x7fELF\x02\x01"
    header[0x28:0x30] = table_at.to_bytes(8, "little")
    header[0x3A:0x40] = b"".join(v.to_bytes(2, "little") for v in (64, 3, 2))
    return bytes(header) + rodata + names + section(0, 0, 0, 0) + \
        section(1, address, header_size, len(rodata)) + section(9, 0, header_size + len(rodata), len(names))


def test_go_struct_tags_are_read_from_the_type_data() -> None:
    elf = _elf_with_struct("k8s.io/api/things/v1", "v1.Thing", [
        ("ObjectMeta", 'json:"metadata,omitempty" protobuf:"bytes,1,opt,name=metadata"'),
        ("Count", 'json:"count,omitempty" protobuf:"varint,2,opt,name=count"'),
        ("Labels", 'json:"labels,omitempty" patchStrategy:"merge" protobuf:"bytes,3,rep,name=labels"'),
        ("internal", "")])
    tags = numbers.go_struct_tags(elf)
    assert tags == {("k8s.io/api/things/v1", "Thing"): {1: "metadata,omitempty", 2: "count,omitempty",
                                                        3: "labels,omitempty"}}
    binary = elf + gzip.compress(_descriptor("k8s.io/api/things/v1/generated.proto",
                                             "k8s.io.api.things.v1").SerializeToString())
    found = numbers.messages(numbers.embedded_descriptors(binary), numbers.go_struct_tags(binary))
    assert numbers.generated_table(found) == {"things.v1.Thing": {1: "metadata", 2: "count?", 3: "labels"}}
    with pytest.raises(numbers.ExtractError, match="ELF"):
        numbers.go_struct_tags(b"MZ not an ELF file")


def _thing(name: str = "name", count: str = "count", ref: str = ",inline", count_pointer: bool = False) -> Messages:
    return {"core.v1.Thing": {1: numbers.Field("name", "string", "Name", False, name),
                              2: numbers.Field("count", "int32", "Count", count_pointer, count),
                              3: numbers.Field("localObjectReference", "core.v1.LocalObjectReference",
                                               "LocalObjectReference", False, ref)}}


def test_the_table_notation_follows_the_go_tags() -> None:
    assert numbers.generated_table(_thing()) == {
        "core.v1.Thing": {1: "name", 2: "count", 3: "...core.v1.LocalObjectReference"}}
    assert numbers.generated_table(_thing(name="name,omitempty", count="count,omitempty", count_pointer=True,
                                          ref="ref")) == {"core.v1.Thing": {1: "name?", 2: "count", 3: "ref"}}
    assert numbers.generated_table(_thing(name="-", count="")) == {
        "core.v1.Thing": {1: "name", 2: "count", 3: "...core.v1.LocalObjectReference"}}


def test_each_kind_of_disagreement_is_named() -> None:
    table = {"core.v1.Thing": {1: "name", 2: "count", 3: "...core.v1.LocalObjectReference"}}
    assert numbers.disagreements(table, _thing()) == []
    assert numbers.disagreements({"core.v1.Thing": {1: "nmae", 2: "count?", 3: "...core.v1.ObjectReference",
                                                    9: "extra"}, "core.v1.Gone": {1: "x"}}, _thing()) == [
        "core.v1.Gone: kubectl has no such message",
        "core.v1.Thing field 1 ('nmae'): kubectl says 'name': Go field Name (json:\"name\") has the JSON name "
        "'name' (proto name 'name')",
        "core.v1.Thing field 2 ('count?'): kubectl says 'count': Go field Count (json:\"count\") has no omitempty, "
        "so JSON keeps its zero value",
        "core.v1.Thing field 3 ('...core.v1.ObjectReference'): kubectl says '...core.v1.LocalObjectReference': Go "
        "field LocalObjectReference (json:\",inline\") is a core.v1.LocalObjectReference embedded inline",
        "core.v1.Thing field 9 ('extra'): kubectl's core.v1.Thing has no field 9",
    ]
    assert numbers.disagreements(table, _thing(name="name,omitempty", count="count,omitempty", count_pointer=True,
                                               ref="ref")) == [
        "core.v1.Thing field 1 ('name'): kubectl says 'name?': Go field Name (json:\"name,omitempty\") is a "
        "non-pointer string with omitempty: gogo always writes it, JSON drops its zero value",
        "core.v1.Thing field 3 ('...core.v1.LocalObjectReference'): kubectl says 'ref': Go field "
        "LocalObjectReference (json:\"ref\") is a core.v1.LocalObjectReference, not embedded inline",
    ]
    assert numbers.disagreements({"core.v1.Thing": {2: "count?"}}, _thing(count="count,omitempty",
                                                                            count_pointer=True)) == [
        "core.v1.Thing field 2 ('count?'): kubectl says 'count': Go field Count (json:\"count,omitempty\") is a "
        "pointer, written only when set, so its zero value must be kept"]
    untagged = {"core.v1.Thing": {1: _thing()["core.v1.Thing"][1]._replace(json=None)}}
    assert numbers.disagreements({"core.v1.Thing": {1: "name"}}, untagged) == [
        "core.v1.Thing field 1 ('name'): no Go struct tag found for kubectl's field 'name', so its JSON name and "
        "omitempty cannot be checked"]


# -- the table against kubectl 1.33 --------------------------------------------------------------------------


def test_every_entry_of_the_table_is_kubectl_133s(found: Messages) -> None:
    problems = numbers.disagreements(FIELD_NUMBERS, found)
    assert problems == [], "FIELD_NUMBERS disagrees with kubectl 1.33:\n" + "\n".join(problems)


def test_the_table_is_the_scripts_output(found: Messages) -> None:
    assert numbers.generated_table(found, list(FIELD_NUMBERS)) == FIELD_NUMBERS


def test_no_field_of_a_tabled_message_is_left_out(found: Messages) -> None:
    # A field missing from the table is silently skipped when decoding: data a client sent would be lost.
    assert numbers.unnumbered(FIELD_NUMBERS, found) == []


# The numbers protobuf.py's decoder holds in code rather than in FIELD_NUMBERS (its docstring lists them).
WIRED_IN = {
    "runtime.Unknown": {1: "typeMeta", 2: "raw", 3: "contentEncoding", 4: "contentType"},
    "runtime.TypeMeta": {1: "apiVersion", 2: "kind"},
    "intstr.IntOrString": {1: "type", 2: "intVal", 3: "strVal"},
    "resource.Quantity": {1: "string"},
    "meta.v1.Time": {1: "seconds", 2: "nanos"},
    "meta.v1.MicroTime": {1: "seconds", 2: "nanos"},
    "runtime.RawExtension": {1: "raw"},
    "meta.v1.FieldsV1": {1: "Raw"},  # upstream's one field whose proto name is its Go name
}


def test_the_numbers_the_decoder_holds_in_code_are_kubectl_133s(found: Messages) -> None:
    # Wire-level names: these are read field by field in code, not through JSON names.
    assert {message: {number: field.name for number, field in found[message].items()} for message in WIRED_IN} \
        == WIRED_IN


def _reached(found: Messages, roots: list[str]) -> set[str]:
    """Every message type reachable from ROOTS through kubectl's own descriptors, but for those the decoder
    handles in code."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in WIRED_IN:
            continue
        seen.add(name)
        for field in found[name].values():
            item = field.type[2:] if field.type[:2] in ("[]", "{}") else field.type
            if item in found:
                todo.append(item)
    return seen


def test_every_message_kubectl_sends_has_numbers(found: Messages) -> None:
    # kubectl 1.33's typed commands (create configmap|deployment|service|namespace|serviceaccount) send these
    # kinds as protobuf; the decoder takes every kind of schema.KINDS, and DeleteOptions, the same way.
    typed = ["core.v1.ConfigMap", "apps.v1.Deployment", "core.v1.Service", "core.v1.Namespace",
             "core.v1.ServiceAccount"]
    kinds = [kind.type_name for kind in KINDS.values()] + ["meta.v1.DeleteOptions"]
    assert set(typed) <= set(kinds)
    reached = _reached(found, kinds)
    assert sorted(reached - set(FIELD_NUMBERS)) == []
    assert len(_reached(found, typed)) > 100  # the pod template alone reaches far: the walk is not vacuous


def _fields_by_name(found: Messages, message: str) -> dict[str, Any]:
    """MESSAGE's fields by name, with those of structs it embeds inline (FIELD_NUMBERS' "..." entries)."""
    out: dict[str, Any] = {}
    for number, entry in FIELD_NUMBERS[message].items():
        field = found[message][number]
        out.update(_fields_by_name(found, entry[3:]) if entry.startswith("...") else {field.name: field})
    return out


def test_free_form_fields_are_tabled_with_kubectls_message(found: Messages) -> None:
    # schema.py models some fields as free-form "object"; OBJECT_FIELDS says which message they are.
    for message, fields in OBJECT_FIELDS.items():
        by_name = _fields_by_name(found, message)
        for name, table_type in fields.items():
            kubectl_type = by_name[name].type.removeprefix("[]")
            if table_type == "RawJSON":
                assert kubectl_type in ("runtime.RawExtension", "meta.v1.FieldsV1"), (message, name)
            else:
                assert kubectl_type == table_type, (message, name, kubectl_type)


def test_the_script_checks_and_prints(kubectl_133: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert numbers.main(["--kubectl", kubectl_133, "--check"]) == 0
    capsys.readouterr()
    assert numbers.main(["--kubectl", kubectl_133]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["kubectl"].startswith(VERSION)
    assert set(printed["messages"]) == set(FIELD_NUMBERS)
    assert printed["messages"]["core.v1.ConfigMap"]["2"] == ["data", "{}string", "Data", False, "data,omitempty"]
    assert numbers.main(["--kubectl", kubectl_133, "--format", "python"]) == 0
    namespace: dict[str, Any] = {}
    exec(capsys.readouterr().out, namespace)
    assert namespace["FIELD_NUMBERS"] == FIELD_NUMBERS
