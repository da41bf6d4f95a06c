#!/usr/bin/env python3
"""The Kubernetes API's protobuf field numbers, read out of a kubectl binary.

control/apiserver/protobuf.py decodes kubectl's protobuf request bodies with a table of field numbers
(FIELD_NUMBERS). Upstream keeps those numbers in k8s.io/api's and k8s.io/apimachinery's generated.proto files,
and its gogo-protobuf Go code compiles each file's FileDescriptorProto into the program, gzip-compressed, to
register it with the protobuf runtime (`proto.RegisterFile("k8s.io/api/core/v1/generated.proto", ...)`). So
every kubectl carries the exact numbers it writes. This script finds those gzip streams in the binary, parses
them with protobuf's own descriptor_pb2, and prints the numbers, or checks the table against them.

    protobuf_field_numbers.py [--kubectl BINARY] [--all] [--format json|python]
    protobuf_field_numbers.py [--kubectl BINARY] --check

BINARY defaults to the kubectl on PATH. Messages are named as the table names them: "core.v1.Pod" for
k8s.io.api.core.v1.Pod, "meta.v1.ObjectMeta" for k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta,
"runtime.Unknown", "intstr.IntOrString", "resource.Quantity". Field types use schema.py's notation:
"[]T" repeated, "{}T" a map from string (a repeated map-entry message on the wire). Output is sorted and
deterministic: messages by name, fields by number.

JSON output: {"kubectl": VERSION, "messages": {MESSAGE: {NUMBER: [NAME, TYPE, GO_NAME, POINTER], ...}, ...}},
GO_NAME the Go struct field and POINTER whether a singular field is a Go pointer (written only when set): both
from the gogoproto options (customname, nullable) the embedded descriptors keep.
Python output: a FIELD_NUMBERS-shaped dict of names only. The table's "?" marker (a Go non-pointer scalar with
`omitempty`) is a fact of the Go struct that descriptors do not carry, so regenerating the table still needs
the Go types' json tags for that marker; --check verifies everything else.

Proto field names in k8s.io/api are the JSON names, with one systematic exception: a Go struct embedded with
`json:",inline"` is a message field named after its type (ConfigMapEnvSource's 1 is `localObjectReference`),
which the table writes as "...core.v1.LocalObjectReference"; --check compares the type there, not the name.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

# The generated.proto files kubesim's wire format draws on: every k8s.io/api group, and these of apimachinery.
APIMACHINERY_FILES = frozenset({
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
})
# Protobuf package prefix -> the table's short prefix (longest first: k8s.io.api.resource.v1beta1 is a group).
PACKAGE_PREFIXES = (
    ("k8s.io.apimachinery.pkg.apis.meta.v1.", "meta.v1."),
    ("k8s.io.apimachinery.pkg.runtime.", "runtime."),
    ("k8s.io.apimachinery.pkg.util.intstr.", "intstr."),
    ("k8s.io.apimachinery.pkg.api.resource.", "resource."),
    ("k8s.io.api.", ""),
)
_GZIP_MAGIC = b"\x1f\x8b\x08"  # ID1 ID2 and CM=deflate (RFC 1952)
_MAX_MEMBER = 4 << 20  # core/v1's descriptor, the largest, is ~100 kB gzipped
_SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
}
# github.com/gogo/protobuf/gogoproto/gogo.proto's field options that matter here.
_GOGO_NULLABLE, _GOGO_CUSTOMNAME = 65001, 65004
# The table's "?" marker is only for Go non-pointer scalars tagged omitempty.
_MARKABLE = frozenset({"string", "bool", "int32", "int64"})


class ExtractError(Exception):
    """The binary holds no usable descriptors (not a kubectl, or one built without gogo protobuf)."""


class Field(NamedTuple):
    name: str
    type: str  # "string", "meta.v1.ObjectMeta", "[]core.v1.Container", "{}string", ...
    go_name: str  # the Go struct field (gogoproto.customname): "Image", "DeprecatedServiceAccount"
    pointer: bool  # a singular Go field held by pointer (gogoproto.nullable is not false): written only when set

    @property
    def message(self) -> str | None:
        """The message type of a singular message field, else None."""
        return None if self.type in _SCALARS.values() or self.type[:2] in ("[]", "{}") else self.type


Messages = dict[str, dict[int, Field]]


# -- reading the binary ---------------------------------------------------------------------------------------


def _wanted(file_name: str) -> bool:
    return (file_name.startswith("k8s.io/api/") and file_name.endswith("/generated.proto")) or \
        file_name in APIMACHINERY_FILES


def embedded_descriptors(binary: bytes) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Every embedded FileDescriptorProto this script keeps, by its file name ("k8s.io/api/core/v1/generated.proto").

    A gzip header is three bytes, so most hits are chance; a hit counts only if it inflates to the end of a gzip
    member and the result parses as a FileDescriptorProto named *.proto."""
    found: dict[str, bytes] = {}
    pos = 0
    while (start := binary.find(_GZIP_MAGIC, pos)) >= 0:
        pos = start + 1
        chunk = binary[start:start + _MAX_MEMBER]
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect a gzip header and trailer
        try:
            raw = inflater.decompress(chunk)
        except zlib.error:
            continue
        if not inflater.eof:
            continue
        descriptor = descriptor_pb2.FileDescriptorProto()
        try:
            descriptor.ParseFromString(raw)
        except DecodeError:
            continue
        if not descriptor.name.endswith(".proto") or not _wanted(descriptor.name):
            continue
        if descriptor.name in found and found[descriptor.name] != raw:
            raise ExtractError(f"the binary holds two different descriptors for {descriptor.name}")
        found[descriptor.name] = raw
        pos = start + len(chunk) - len(inflater.unused_data)  # past this member
    if not found:
        raise ExtractError("no k8s.io generated.proto descriptors found: is this a kubectl binary?")
    out: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for name in sorted(found):
        out[name] = descriptor_pb2.FileDescriptorProto.FromString(found[name])
    return out


def short_name(qualified: str) -> str:
    """".k8s.io.api.core.v1.Pod" -> "core.v1.Pod", as the table names messages."""
    name = qualified.lstrip(".")
    for prefix, short in PACKAGE_PREFIXES:
        if name.startswith(prefix):
            return short + name[len(prefix):]
    return name


def messages(files: dict[str, descriptor_pb2.FileDescriptorProto]) -> Messages:
    """Every top-level message of FILES: {message: {number: Field}}, both sorted."""
    out: Messages = {}
    for descriptor in files.values():
        for message in descriptor.message_type:
            qualified = f".{descriptor.package}.{message.name}"
            entries = {f"{qualified}.{nested.name}": nested for nested in message.nested_type
                       if nested.options.map_entry}
            fields = {field.number: _field(field, entries) for field in message.field}
            out[short_name(qualified)] = dict(sorted(fields.items()))
    return dict(sorted(out.items()))


def _field(field: descriptor_pb2.FieldDescriptorProto, entries: dict[str, descriptor_pb2.DescriptorProto]) -> Field:
    options = _gogo_options(field.options.SerializeToString())
    nullable = options.get(_GOGO_NULLABLE, 1) != 0
    singular = field.label != descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    go_name = options.get(_GOGO_CUSTOMNAME)
    return Field(field.name, _type(field, entries), go_name.decode() if isinstance(go_name, bytes) else "",
                 singular and nullable)


def _gogo_options(data: bytes) -> dict[int, int | bytes]:
    """The varint and length-delimited fields of a serialized FieldOptions: gogo's extensions travel there as
    fields this protobuf runtime does not know, so they are read off the wire."""
    out: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key & 7 == 0:
            out[key >> 3], pos = _varint(data, pos)
        elif key & 7 == 2:
            length, pos = _varint(data, pos)
            out[key >> 3], pos = data[pos:pos + length], pos + length
        else:
            raise ExtractError(f"field options with wire type {key & 7}, which gogo's extensions never use")
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ExtractError("truncated field options")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return result, pos


def _type(field: descriptor_pb2.FieldDescriptorProto, entries: dict[str, descriptor_pb2.DescriptorProto]) -> str:
    if field.type_name in entries:
        key, value = sorted(entries[field.type_name].field, key=lambda f: f.number)
        if _type(key, {}) != "string":
            raise ExtractError(f"{field.name}: a map keyed by {_type(key, {})}, which the table cannot write")
        return "{}" + _type(value, {})
    if field.type in _SCALARS:
        item = _SCALARS[field.type]
    elif field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
        item = short_name(field.type_name)
    else:
        raise ExtractError(f"{field.name}: protobuf type {field.type} is not one k8s.io uses")
    repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    return ("[]" if repeated else "") + item


def read_kubectl(path: str) -> Messages:
    return messages(embedded_descriptors(Path(path).read_bytes()))


def kubectl_version(path: str) -> str:
    """The client's gitVersion ("v1.33.1"), or "" when the binary will not say."""
    try:
        done = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True,
                              timeout=60, check=False)
        version = json.loads(done.stdout)["clientVersion"]["gitVersion"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return ""
    return version if isinstance(version, str) else ""


# -- checking the table -----------------------------------------------------------------------------------------


def disagreements(table: dict[str, dict[int, str]], found: Messages) -> list[str]:
    """Every way TABLE (FIELD_NUMBERS' notation) disagrees with the binary's descriptors, one sentence each."""
    problems: list[str] = []
    for message, numbers in sorted(table.items()):
        fields = found.get(message)
        if fields is None:
            problems.append(f"{message}: kubectl has no such message")
            continue
        for number, entry in sorted(numbers.items()):
            field = fields.get(number)
            where = f"{message} field {number} ({entry!r})"
            if field is None:
                problems.append(f"{where}: kubectl's {message} has no field {number}")
            elif entry.startswith("..."):
                if field.message != entry[3:]:
                    problems.append(f"{where}: kubectl's field {number} is {field.name!r} of type {field.type}, "
                                    f"not an embedded {entry[3:]}")
            elif entry.rstrip("?") != field.name:
                problems.append(f"{where}: kubectl's field {number} is {field.name!r} ({field.type})")
            elif entry.endswith("?") and field.type not in _MARKABLE:
                problems.append(f"{where}: marked '?' (a non-pointer scalar) but kubectl's field is {field.type}")
            elif entry.endswith("?") and field.pointer:
                problems.append(f"{where}: marked '?' (a non-pointer scalar) but kubectl's Go field {field.go_name} "
                                f"is a pointer, written only when set, so its zero value must be kept")
    return problems


def unnumbered(table: dict[str, dict[int, str]], found: Messages) -> list[str]:
    """Fields the binary's messages have that TABLE leaves out (their values are skipped on decoding)."""
    return [f"{message} field {number} ({field.name!r}, {field.type})"
            for message, numbers in sorted(table.items()) if message in found
            for number, field in found[message].items() if number not in numbers]


# -- output -----------------------------------------------------------------------------------------------------


def as_json(found: Messages, version: str) -> str:
    lines = ["{", f'  "kubectl": {json.dumps(version)},', '  "messages": {']
    for i, (message, fields) in enumerate(found.items()):
        body = ", ".join(f'"{number}": {json.dumps(list(field))}' for number, field in fields.items())
        lines.append(f"    {json.dumps(message)}: {{{body}}}" + ("," if i < len(found) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines)


def as_python(found: Messages, version: str) -> str:
    lines = [f"# protobuf field numbers of kubectl {version or '(unknown version)'}; add the '?' markers by hand",
             "FIELD_NUMBERS = {"]
    for message, fields in found.items():
        body = ", ".join(f"{number}: {field.name!r}" for number, field in fields.items())
        lines.append(f"    {message!r}: {{{body}}},")
    lines.append("}")
    return "\n".join(lines)


def _table() -> dict[str, dict[int, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from control.apiserver.protobuf import FIELD_NUMBERS
    return FIELD_NUMBERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kubectl", help="the kubectl binary to read (default: kubectl on PATH)")
    parser.add_argument("--all", action="store_true", help="every message, not only those the table names")
    parser.add_argument("--format", choices=("json", "python"), default="json")
    parser.add_argument("--check", action="store_true",
                        help="compare FIELD_NUMBERS with the binary; exit 1 naming each disagreement")
    args = parser.parse_args(argv)
    path = args.kubectl or shutil.which("kubectl")
    if path is None:
        parser.error("no kubectl on PATH: give one with --kubectl")
    try:
        found = read_kubectl(path)
    except (OSError, ExtractError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    version = kubectl_version(path)
    table = _table()
    if args.check:
        problems = disagreements(table, found)
        for line in problems:
            print(line)
        for line in unnumbered(table, found):
            print(f"not in the table (skipped when decoding): {line}", file=sys.stderr)
        print(f"kubectl {version or path}: {len(problems)} disagreement(s) in {len(table)} messages", file=sys.stderr)
        return 1 if problems else 0
    if not args.all:
        found = {message: fields for message, fields in found.items() if message in table}
    print(as_json(found, version) if args.format == "json" else as_python(found, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
