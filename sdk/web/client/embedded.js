/**
 * The manifest a model file carries under the key `salsdk_manifest` (salsdk `sdk/artifact_metadata.py`), read from
 * the file's bytes with no runtime: an ONNX `metadata_props` entry (protobuf field 14; key = 1, value = 2) or a
 * TFLite `metadata` entry (flatbuffer table field 6; name = 0, buffer = 1) naming a buffer (field 4; data = 0, or
 * offset = 1 / size = 2 past the flatbuffer). A malformed file throws; `null` means no such entry.
 */
export const EMBED_KEY = "salsdk_manifest";
const utf8 = new TextDecoder("utf-8", { fatal: true });

function varint(data, pos, end) {
  let value = 0, scale = 1;
  for (;;) {
    if (pos >= end || scale > 2 ** 56) throw new Error("truncated or invalid protobuf varint");
    const byte = data[pos++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
}

/** [field number, start, end] of each length-delimited field of one protobuf message (others skipped). */
function* protobufFields(data, start = 0, end = data.length) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = varint(data, pos, end);
    const number = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) [, pos] = varint(data, pos, end);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let length;
      [length, pos] = varint(data, pos, end);
      if (pos + length > end) throw new Error("protobuf field runs past the end of the file");
      yield [number, pos, pos + length];
      pos += length;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  if (pos !== end) throw new Error("protobuf message is truncated");
}

function readOnnx(data, key) {
  for (const [number, a, b] of protobufFields(data)) {
    if (number !== 14) continue;
    let name = null, value = null;
    for (const [n, s, e] of protobufFields(data, a, b)) {
      if (n === 1) name = utf8.decode(data.subarray(s, e));
      else if (n === 2) value = data.subarray(s, e);
    }
    if (name === key) return value === null ? "" : utf8.decode(value);
  }
  return null;
}

function readTflite(data, key) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const u32 = (p) => view.getUint32(p, true);
  const indirect = (p) => p + u32(p);
  const vector = (p) => { const s = indirect(p); return [s + 4, u32(s)]; };
  const field = (table, index) => {
    const vtable = table - view.getInt32(table, true);
    const slot = 4 + 2 * index;
    if (slot + 2 > view.getUint16(vtable, true)) return null;
    const offset = view.getUint16(vtable + slot, true);
    return offset ? table + offset : null;
  };
  try {
    const root = indirect(0);
    const metadata = field(root, 6), buffers = field(root, 4);
    if (metadata === null || buffers === null) return null;
    const [first, count] = vector(metadata);
    for (let i = 0; i < count; i++) {
      const entry = indirect(first + 4 * i);
      const nameField = field(entry, 0), bufferField = field(entry, 1);
      if (nameField === null || bufferField === null) continue;
      const [ns, nl] = vector(nameField);
      if (utf8.decode(data.subarray(ns, ns + nl)) !== key) continue;
      const index = u32(bufferField);
      const [bfirst, bcount] = vector(buffers);
      if (index >= bcount) throw new Error(`metadata ${key} names buffer ${index} of ${bcount}`);
      const buffer = indirect(bfirst + 4 * index);
      const dataField = field(buffer, 0);
      let start, length;
      if (dataField !== null) [start, length] = vector(dataField);
      else {
        const o = field(buffer, 1), s = field(buffer, 2);
        if (o === null || s === null) return null;
        start = Number(view.getBigUint64(o, true));
        length = Number(view.getBigUint64(s, true));
      }
      if (start + length > data.length) throw new Error(`metadata ${key} runs past the end of the file`);
      return utf8.decode(data.subarray(start, start + length));
    }
  } catch (e) {
    if (e instanceof RangeError) throw new Error(`not a valid TFLite flatbuffer (${e.message})`);
    throw e;
  }
  return null;
}

/** The embedded manifest text of a model file of `family` (onnx or tflite), or null. */
export function readEmbedded(family, bytes, key = EMBED_KEY) {
  if (family === "onnx") return readOnnx(bytes, key);
  if (family === "tflite") return readTflite(bytes, key);
  throw new Error(`the browser client reads ONNX and TFLite model files, not ${family}`);
}
