"""Read the manifest a model file carries, with no ONNX, LiteRT, TensorFlow, Core ML or OpenVINO library.

Every model file salsdk writes embeds its manifest under one key (:data:`salsdk.manifest.EMBED_KEY`):

* ONNX: a ``metadata_props`` entry of the ``ModelProto`` (protobuf field 14; entries are key = 1, value = 2);
* TFLite: a ``metadata`` entry of the flatbuffer ``Model`` (table field 6; name = 0, buffer = 1) naming a buffer
  (field 4; its ``data`` = 0) that holds the UTF-8 JSON;
* Core ML: ``userDefined`` metadata of the package's spec (``Model.description`` = 2 -> ``metadata`` = 100 ->
  ``userDefined`` = 100, a map of strings);
* ExecuTorch ``.pte``: a trailer after the program (:data:`PTE_TRAILER_MAGIC`, see :func:`read_pte`), which the
  runtime does not read;
* OpenVINO IR (a ``.openvino`` folder holding ``model.xml`` and ``model.bin``): an entry of the network's
  ``rt_info`` in ``model.xml`` (``<net><rt_info><salsdk_manifest value="..."/>``), streamed by the standard
  library's XML parser (no DTD or entity declaration accepted), beside the SHA-256 of ``model.bin``.

The readers walk the file formats' wire encodings directly (memory-mapped, nothing else decoded), so checking a
bundle costs milliseconds even for a 120 MB model, and works where only a runtime, or no runtime, is installed.
A malformed file raises :class:`ValueError`; ``None`` means the file is well formed but carries no such entry.
"""
from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

PTE_TRAILER_MAGIC = b"SALSDKMF"  # 8 bytes, then the JSON length (uint64 little-endian), then the JSON, at file end
OPENVINO_XML, OPENVINO_BIN = "model.xml", "model.bin"  # the two files of an OpenVINO IR inside its .openvino folder
OPENVINO_WEIGHTS_KEY = "salsdk_weights_sha256"  # rt_info entry of model.xml: the SHA-256 of its model.bin


def _varint(data: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or invalid protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def protobuf_fields(data: bytes | mmap.mmap, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, end)`` of every length-delimited field of one protobuf message (others skipped)."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if pos + length > end:
                raise ValueError("protobuf field runs past the end of the file")
            yield number, pos, pos + length
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise ValueError("protobuf message is truncated")


def _string_map(data: bytes | mmap.mmap, start: int, end: int) -> tuple[str, str]:
    """One ``StringStringEntryProto`` / map entry: (key = field 1, value = field 2)."""
    key = value = b""
    for number, a, b in protobuf_fields(data, start, end):
        if number == 1:
            key = bytes(data[a:b])
        elif number == 2:
            value = bytes(data[a:b])
    return key.decode("utf-8"), value.decode("utf-8")


def _mapped(path: Path):
    handle = open(path, "rb")
    try:
        if path.stat().st_size == 0:
            raise ValueError(f"{path.name} is empty")
        return handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except BaseException:
        handle.close()
        raise


def read_onnx(path: Path, key: str) -> str | None:
    """The ``metadata_props`` value named ``key`` of an ONNX file."""
    handle, data = _mapped(path)
    with handle, data:
        for number, a, b in protobuf_fields(data):
            if number == 14:
                name, value = _string_map(data, a, b)
                if name == key:
                    return value
    return None


def _table_field(data: bytes | mmap.mmap, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the flatbuffer table at ``table``, or None if absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + offset if offset else None


def _indirect(data: bytes | mmap.mmap, position: int) -> int:
    return position + struct.unpack_from("<I", data, position)[0]


def _vector(data: bytes | mmap.mmap, position: int) -> tuple[int, int]:
    """``(first element position, length)`` of the vector a uoffset at ``position`` points to."""
    start = _indirect(data, position)
    return start + 4, struct.unpack_from("<I", data, start)[0]


def read_tflite(path: Path, key: str) -> str | None:
    """The UTF-8 buffer of the TFLite ``metadata`` entry named ``key``."""
    handle, data = _mapped(path)
    with handle, data:
        try:
            root = _indirect(data, 0)
            metadata = _table_field(data, root, 6)
            buffers = _table_field(data, root, 4)
            if metadata is None or buffers is None:
                return None
            first, count = _vector(data, metadata)
            for i in range(count):
                entry = _indirect(data, first + 4 * i)
                name_field, buffer_field = _table_field(data, entry, 0), _table_field(data, entry, 1)
                if name_field is None or buffer_field is None:
                    continue
                name_start, name_length = _vector(data, name_field)
                if bytes(data[name_start:name_start + name_length]).decode("utf-8") != key:
                    continue
                index = struct.unpack_from("<I", data, buffer_field)[0]
                buffer_first, buffer_count = _vector(data, buffers)
                if index >= buffer_count:
                    raise ValueError(f"metadata {key!r} names buffer {index} of {buffer_count}")
                buffer = _indirect(data, buffer_first + 4 * index)
                data_field = _table_field(data, buffer, 0)
                if data_field is not None:
                    start, length = _vector(data, data_field)
                else:  # large-model layout: the buffer's bytes lie after the flatbuffer, at offset/size
                    offset_field, size_field = _table_field(data, buffer, 1), _table_field(data, buffer, 2)
                    if offset_field is None or size_field is None:
                        return None
                    start = struct.unpack_from("<Q", data, offset_field)[0]
                    length = struct.unpack_from("<Q", data, size_field)[0]
                if start + length > len(data):
                    raise ValueError(f"metadata {key!r} runs past the end of {path.name}")
                return bytes(data[start:start + length]).decode("utf-8")
        except struct.error as exc:
            raise ValueError(f"{path.name} is not a valid TFLite flatbuffer: {exc}") from None
    return None


def coreml_spec_path(package: Path) -> Path:
    """The spec file of an ``.mlpackage`` (its ``Manifest.json`` names it); must stay inside the package."""
    info = json.loads((package / "Manifest.json").read_text(encoding="utf-8"))
    entry = info["itemInfoEntries"][info["rootModelIdentifier"]]
    spec = (package / "Data" / entry["path"]).resolve()
    if not spec.is_relative_to(package.resolve()) or not spec.is_file():
        raise ValueError(f"{package.name}/Manifest.json names a model spec outside the package or a missing one")
    return spec


def read_coreml(package: Path, key: str) -> str | None:
    """The ``userDefined`` metadata value named ``key`` of an ``.mlpackage``."""
    try:
        spec = coreml_spec_path(package)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{package.name} is not a readable .mlpackage: {exc}") from None
    handle, data = _mapped(spec)
    with handle, data:
        for number, a, b in protobuf_fields(data):
            if number != 2:
                continue
            for n2, a2, b2 in protobuf_fields(data, a, b):
                if n2 != 100:
                    continue
                for n3, a3, b3 in protobuf_fields(data, a2, b2):
                    if n3 == 100:
                        name, value = _string_map(data, a3, b3)
                        if name == key:
                            return value
    return None


def read_pte(path: Path, key: str) -> str | None:
    """The manifest trailer of an ExecuTorch ``.pte`` (``key`` is implied: one trailer per file)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size < 16:
            return None
        f.seek(size - 16)
        magic, length = f.read(8), struct.unpack("<Q", f.read(8))[0]
        if magic != PTE_TRAILER_MAGIC:
            return None
        if length > size - 16:
            raise ValueError(f"{path.name}: the manifest trailer claims {length} bytes, the file has {size}")
        f.seek(size - 16 - length)
        return f.read(length).decode("utf-8")


def _openvino_rt_info(xml: Path) -> dict[str, str]:
    """The network-level ``rt_info`` entries (name -> ``value``) of an IR's ``model.xml``."""
    with open(xml, "rb") as f:
        if b"<!" in f.read(4096):  # IR files start with <?xml ...?><net ...>: no DOCTYPE, no entity declarations
            raise ValueError(f"{xml.parent.name}/{xml.name} declares a DTD or entities, which OpenVINO IR never does")
    entries: dict[str, str] = {}
    path: list[str] = []
    try:
        for event, element in ElementTree.iterparse(xml, events=("start", "end")):
            if event == "start":
                path.append(element.tag)
                continue
            if len(path) == 3 and path[:2] == ["net", "rt_info"] and element.get("value") is not None:
                entries[element.tag] = element.get("value")
            path.pop()
            if len(path) <= 1:
                element.clear()  # layers and edges are not needed: keep memory flat on large IRs
    except ElementTree.ParseError as exc:
        raise ValueError(f"{xml.parent.name}/{xml.name} is not well-formed XML: {exc}") from None
    return entries


def read_openvino(folder: Path, key: str) -> str | None:
    """The ``rt_info`` entry ``key`` of an OpenVINO IR folder's ``model.xml``, once ``model.bin`` is checked against
    the SHA-256 that ``model.xml`` records beside it (:data:`OPENVINO_WEIGHTS_KEY`): the manifest lives in the
    graph file, so this is what ties the weights to it."""
    from .hashing import file_sha256

    entries = _openvino_rt_info(folder / OPENVINO_XML)
    if key not in entries:
        return None
    pinned = entries.get(OPENVINO_WEIGHTS_KEY)
    if pinned is None:
        raise ValueError(f"{folder.name}/{OPENVINO_XML} carries a manifest but no {OPENVINO_WEIGHTS_KEY}")
    if file_sha256(folder / OPENVINO_BIN) != pinned:
        raise ValueError(f"{folder.name}/{OPENVINO_BIN} is not the weights file {OPENVINO_XML} was saved with "
                         "(its SHA-256 differs)")
    return entries[key]


READERS = {"onnx": read_onnx, "tflite": read_tflite, "coreml": read_coreml, "pte": read_pte, "openvino": read_openvino}


def read_embedded(family: str, path: Path, key: str) -> str | None:
    """The text stored under ``key`` in a model file of format ``family`` (onnx, tflite, coreml, pte, openvino)."""
    if family not in READERS:
        raise ValueError(f"no embedded-manifest reader for format family {family!r}")
    return READERS[family](Path(path), key)
