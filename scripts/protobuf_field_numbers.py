#!/usr/bin/env python3
"""The Kubernetes API's protobuf field numbers, read out of a kubectl binary.

control/apiserver/protobuf.py decodes kubectl's protobuf request bodies with a table of field numbers
(FIELD_NUMBERS). Upstream keeps those numbers in k8s.io/api's and k8s.io/apimachinery's generated.proto files,
and its gogo-protobuf Go code compiles each file's FileDescriptorProto into the program, gzip-compressed, to
register it with the protobuf runtime (`proto.RegisterFile("k8s.io/api/core/v1/generated.proto", ...)`). So
every kubectl carries the exact numbers it writes. This script finds those gzip streams in the binary, parses
them with protobuf's own descriptor_pb2, adds each Go field's json tag from the Go type data (for the JSON name
and `omitempty`), and prints the result, or checks the table against it.

    protobuf_field_numbers.py [--kubectl BINARY] [--all] [--format json|python]
    protobuf_field_numbers.py [--kubectl BINARY] --check

BINARY defaults to the kubectl on PATH. Messages are named as the table names them: "core.v1.Pod" for
k8s.io.api.core.v1.Pod, "meta.v1.ObjectMeta" for k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta,
"runtime.Unknown", "intstr.IntOrString", "resource.Quantity". Field types use schema.py's notation:
"[]T" repeated, "{}T" a map from string (a repeated map-entry message on the wire). Output is sorted and
deterministic: messages by name, fields by number; without --all, only the messages the table names.

JSON output: {"kubectl": VERSION, "messages": {MESSAGE: {NUMBER: [NAME, TYPE, GO_NAME, POINTER, JSON_TAG]}}}:
NAME the proto field name, GO_NAME the Go struct field and POINTER whether a singular field is a Go pointer
(written only when set), both from the gogoproto options (customname, nullable) the descriptors keep, and
JSON_TAG the Go field's json tag (null where the Go type has none: Time, Quantity, ...).
Python output: FIELD_NUMBERS itself, in its notation (the JSON name; "name?" for a Go non-pointer scalar tagged
omitempty; "...TYPE" for a struct embedded with `json:",inline"`).

Proto field names in k8s.io/api are the JSON names, with exceptions: an inline struct is a message field named
after its type (ConfigMapEnvSource's 1 is `localObjectReference`); fields with no JSON name (`json:"-"`:
RawExtension.raw, FieldsV1.Raw); and a few whose proto name is derived from the Go name (admissionregistration's
Variable.Name, networking's IngressClassParametersReference.aPIGroup). The table holds JSON names, so --check
compares against the json tag.
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
# kubectl up to 1.29 was built inside k8s.io/kubernetes, and registered its files under their vendored path.
_VENDORED = "k8s.io/kubernetes/vendor/"
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
    json: str | None = None  # the Go field's json tag ("image,omitempty", ",inline"); None if not found

    @property
    def inline(self) -> bool:
        """A Go struct embedded with `json:",inline"`: JSON flattens its fields into the parent."""
        return self.json is not None and "inline" in self.json.split(",")[1:]

    @property
    def json_name(self) -> str | None:
        """The JSON name; the proto name where the Go field has no json name ("-", or no json key)."""
        if self.json is None:
            return None
        name = self.json.split(",")[0]
        return "" if self.inline else name if name not in ("", "-") else self.name

    @property
    def omitempty(self) -> bool | None:
        return None if self.json is None else "omitempty" in self.json.split(",")[1:]

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
        name = descriptor.name.removeprefix(_VENDORED)
        if not name.endswith(".proto") or not _wanted(name):
            continue
        if name in found and found[name] != raw:
            raise ExtractError(f"the binary holds two different descriptors for {name}")
        found[name] = raw
        pos = start + len(chunk) - len(inflater.unused_data)  # past this member
    if not found:
        raise ExtractError("no k8s.io generated.proto descriptors found: is this a kubectl binary?")
    return {name: descriptor_pb2.FileDescriptorProto.FromString(found[name]) for name in sorted(found)}


def short_name(qualified: str) -> str:
    """".k8s.io.api.core.v1.Pod" -> "core.v1.Pod", as the table names messages."""
    name = qualified.lstrip(".")
    for prefix, short in PACKAGE_PREFIXES:
        if name.startswith(prefix):
            return short + name[len(prefix):]
    return name


def messages(files: dict[str, descriptor_pb2.FileDescriptorProto], go_tags: GoTags | None = None) -> Messages:
    """Every top-level message of FILES: {message: {number: Field}}, both sorted; with GO_TAGS (go_struct_tags),
    each field also gets its Go struct's json tag."""
    out: Messages = {}
    for file_name, descriptor in files.items():
        go_package = file_name.rsplit("/", 1)[0]  # "k8s.io/api/core/v1", the Go package the file is generated into
        for message in descriptor.message_type:
            qualified = f".{descriptor.package}.{message.name}"
            entries = {f"{qualified}.{nested.name}": nested for nested in message.nested_type
                       if nested.options.map_entry}
            tags = (go_tags or {}).get((go_package, message.name), {})
            fields = {field.number: _field(field, entries)._replace(json=tags.get(field.number))
                      for field in message.field}
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
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            if key & 7 == 0:
                out[key >> 3], pos = _varint(data, pos)
            elif key & 7 == 2:
                length, pos = _varint(data, pos)
                out[key >> 3], pos = data[pos:pos + length], pos + length
            else:
                raise ExtractError(f"field options with wire type {key & 7}, which gogo's extensions never use")
    except IndexError:
        raise ExtractError("truncated field options") from None
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint (protobuf's, and Go's name lengths) at POS, and the position after it."""
    result = shift = 0
    while True:
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


# -- Go struct tags ---------------------------------------------------------------------------------------------
#
# The descriptors say which Go field is a pointer (gogoproto.nullable) but not its json tag, and the table's "?"
# needs `omitempty`. Go keeps every struct type's field names and tags for reflection, so they are read from the
# type data too. Layout (internal/abi as Go 1.20 to 1.24 write it: kubectl 1.27 to 1.33; 64-bit little-endian
# binaries, read on a little-endian machine): a struct type is an abi.Type (48 bytes; the
# kind byte at 23, the name's offset at 40, counted from the start of the type data, which the linker puts first
# in .rodata) then its package path (8) and its fields slice (pointer, len, cap); a named type's uncommon part
# follows (its package path's offset first). Each field is {name pointer, type pointer, offset}; a name is a
# flags byte, a varint length, the name, and with flag 2 a varint length and the tag. Pointers are absolute,
# which holds for kubectl's static, non-PIE builds; a binary laid out otherwise yields no tags and --check says so.

GoTags = dict[tuple[str, str], dict[int, str]]
_KIND_MASK, _KIND_STRUCT = 31, 25
_TFLAG_UNCOMMON, _TFLAG_EXTRA_STAR = 1, 2


def go_struct_tags(binary: bytes) -> GoTags:
    """{(Go package path, type name): {protobuf field number: json tag}} for the binary's struct types whose
    fields have protobuf tags ("k8s.io/api/core/v1", "Container") -> {1: "name", 2: "image,omitempty", ...}."""
    rodata_address, rodata = _elf_section(binary, ".rodata")
    out: GoTags = {}
    words = memoryview(rodata)[:len(rodata) // 8 * 8].cast("Q")
    for i in range(7, len(words) - 2):  # i: the fields slice's pointer, 56 bytes into a struct type
        count = words[i + 1]
        if not 0 < count <= 1000 or words[i + 2] != count:
            continue
        fields_at = words[i] - rodata_address
        base = (i - 7) * 8
        if fields_at % 8 or not 0 <= fields_at <= len(rodata) - 24 * count or \
                rodata[base + 23] & _KIND_MASK != _KIND_STRUCT:
            continue
        try:
            type_name = _go_name(rodata, int.from_bytes(rodata[base + 40:base + 44], "little", signed=True))[0]
            package = ""
            if rodata[base + 20] & _TFLAG_UNCOMMON:
                package = _go_name(rodata, int.from_bytes(rodata[base + 80:base + 84], "little", signed=True))[0]
            tags = {}
            for k in range(count):
                name_at = int.from_bytes(rodata[fields_at + 24 * k:fields_at + 24 * k + 8], "little")
                number, json_tag = _protobuf_json(_go_name(rodata, name_at - rodata_address)[1])
                if number is not None:
                    tags[number] = json_tag
        except (IndexError, UnicodeDecodeError):
            continue
        if not tags:
            continue
        if rodata[base + 20] & _TFLAG_EXTRA_STAR:
            type_name = type_name[1:]
        key = (package, type_name.rsplit(".", 1)[-1])
        if key in out and out[key] != tags:
            raise ExtractError(f"two Go struct types {key[0]}.{key[1]} with different tags")
        out[key] = tags
    return out


def _elf_section(binary: bytes, wanted: str) -> tuple[int, bytes]:
    """(address, contents) of section WANTED of a 64-bit little-endian ELF file."""
    if binary[:6] != b"\x7fELF\x02\x01":
        raise ExtractError("not a 64-bit little-endian ELF binary, whose Go type data this script reads")
    table = int.from_bytes(binary[0x28:0x30], "little")
    entry_size, count, names_index = (int.from_bytes(binary[at:at + 2], "little") for at in (0x3A, 0x3C, 0x3E))

    def header(index: int) -> tuple[int, int, int, int]:
        at = table + index * entry_size
        fields = [int.from_bytes(binary[at + o:at + o + n], "little") for o, n in ((0, 4), (0x10, 8), (0x18, 8),
                                                                                  (0x20, 8))]
        return fields[0], fields[1], fields[2], fields[3]  # name offset, address, file offset, size

    names_offset = header(names_index)[2]
    for index in range(count):
        name, address, offset, size = header(index)
        end = binary.index(b"\0", names_offset + name)
        if binary[names_offset + name:end].decode("ascii", "replace") == wanted:
            return address, binary[offset:offset + size]
    raise ExtractError(f"the binary has no {wanted} section")


def _go_name(data: bytes, at: int) -> tuple[str, str]:
    """(name, tag) of the Go runtime name encoded at AT (internal/abi.Name)."""
    if at < 0:
        raise IndexError(at)
    flags = data[at]
    length, at = _varint(data, at + 1)
    name = data[at:at + length].decode()
    at += length
    tag = ""
    if flags & 2:
        length, at = _varint(data, at)
        tag = data[at:at + length].decode()
    return name, tag


def _protobuf_json(tag: str) -> tuple[int | None, str]:
    """(protobuf field number, json tag value) of a Go struct tag; (None, "") without a protobuf key."""
    values = dict(_struct_tag(tag))
    parts = values.get("protobuf", "").split(",")
    if len(parts) < 2 or not parts[1].isdigit():
        return None, ""
    return int(parts[1]), values.get("json", "")


def _struct_tag(tag: str) -> list[tuple[str, str]]:
    """reflect.StructTag's `key:"value" key:"value"` pairs (values here hold no escaped quotes)."""
    pairs = []
    for chunk in tag.split('" '):
        key, _, value = chunk.strip().partition(':"')
        pairs.append((key, value.rstrip('"')))
    return pairs


def read_kubectl(path: str) -> Messages:
    binary = Path(path).read_bytes()
    return messages(embedded_descriptors(binary), go_struct_tags(binary))


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


def table_entry(field: Field) -> str:
    """FIELD (with its json tag) in FIELD_NUMBERS' notation: "...core.v1.LocalObjectReference" for a struct
    embedded inline, "image?" for a Go non-pointer scalar tagged omitempty, else the JSON name."""
    if field.inline:
        return f"...{field.message or field.type}"
    name = field.name if field.json_name is None else field.json_name
    return name + ("?" if field.type in _MARKABLE and not field.pointer and field.omitempty else "")


def generated_table(found: Messages, names: list[str] | None = None) -> dict[str, dict[int, str]]:
    """FIELD_NUMBERS as kubectl's descriptors and Go tags write it, for NAMES (default: every message)."""
    return {name: {number: table_entry(field) for number, field in found[name].items()}
            for name in (found if names is None else sorted(names)) if name in found}


def disagreements(table: dict[str, dict[int, str]], found: Messages) -> list[str]:
    """Every entry of TABLE (FIELD_NUMBERS' notation) that is not what the binary's descriptors and Go struct tags
    say, one sentence each, naming the message, the number and why."""
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
            elif field.json is None:
                problems.append(f"{where}: no Go struct tag found for kubectl's field {field.name!r}, so its JSON "
                                f"name and omitempty cannot be checked")
            elif entry != table_entry(field):
                problems.append(f"{where}: kubectl says {table_entry(field)!r}: {_why(entry, field)}")
    return problems


def _why(entry: str, field: Field) -> str:
    go = f"Go field {field.go_name or field.name} (json:{json.dumps(field.json)})"
    if field.inline:
        return f"{go} is a {field.type} embedded inline"
    if entry.startswith("..."):
        return f"{go} is a {field.type}, not embedded inline"
    if entry.rstrip("?") != field.json_name:
        return f"{go} has the JSON name {field.json_name!r} (proto name {field.name!r})"
    if entry.endswith("?"):
        if field.type not in _MARKABLE:
            return f"{go} is a {field.type}; '?' is only for non-pointer scalars"
        if field.pointer:
            return f"{go} is a pointer, written only when set, so its zero value must be kept"
        return f"{go} has no omitempty, so JSON keeps its zero value"
    return f"{go} is a non-pointer {field.type} with omitempty: gogo always writes it, JSON drops its zero value"


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
    lines = [f"# protobuf field numbers of kubectl {version or '(unknown version)'}", "FIELD_NUMBERS = {"]
    for message, entries in generated_table(found).items():
        body = ", ".join(f"{number}: {entry!r}" for number, entry in entries.items())
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
