/**
 * A bundle's manifest (`salsdk-manifest/2`, reference implementation: salsdk `sdk/manifest.py`): parsed, validated
 * against the manifest's JSON Schema and the cross-field rules a schema cannot express, with typed accessors.
 * The browser reads nothing of a manifest except through this module.
 */
import { SchemaCheck, SchemaViolation } from "./schema.js";

export const SCHEMA = "salsdk-manifest/2";
export const MAX_INPUT_ELEMENTS = 64 * 3 * 2048 * 2048;
const RUNTIME_OF_FAMILY = { onnx: "onnxruntime", tflite: "litert", coreml: "coreml", pte: "executorch",
  openvino: "openvino" };
const SUFFIX_OF_FAMILY = { onnx: ".onnx", tflite: ".tflite", coreml: ".mlpackage", pte: ".pte", openvino: ".openvino" };

/** A manifest is missing, malformed, of another schema or inconsistent; the message names the field. */
export class ManifestError extends Error {
  name = "ManifestError";
}

/** One model input or output tensor. */
export class TensorSpec {
  constructor(raw) {
    Object.assign(this, { name: raw.name, shape: raw.shape, layout: raw.layout, dtype: raw.dtype,
      scale: raw.scale, zeroPoint: raw.zero_point, role: raw.role ?? null, activation: raw.activation ?? null });
  }

  /** int8/uint8 tensors are quantised with `scale` and `zeroPoint`. */
  get quantized() { return this.dtype === "int8" || this.dtype === "uint8"; }

  /** Static dimensions (a symbolic batch counts as 1). */
  get dims() { return this.shape.map((d) => (typeof d === "number" ? d : 1)); }

  /** (height, width) of an image or clip tensor, from its layout. */
  get hw() {
    const d = this.dims;
    return [d[this.layout.indexOf("H")], d[this.layout.indexOf("W")]];
  }
}

function crossFieldProblem(d) {
  const { family, runtime } = d.format;
  if (RUNTIME_OF_FAMILY[family] !== runtime) return ["format.runtime", `'${runtime}' does not run ${family} files`];
  if (!d.model_file.endsWith(SUFFIX_OF_FAMILY[family])) return ["model_file", `'${d.model_file}' is not a ${SUFFIX_OF_FAMILY[family]} file`];
  if (!Object.hasOwn(d.files, d.model_file)) return ["files", `does not pin the model file '${d.model_file}'`];
  const temporal = d.temporal, tensor = d.input;
  const rank = temporal !== null ? 5 : 4;
  if (tensor.shape.length !== rank || tensor.layout.length !== rank) {
    return ["input.shape", `a ${temporal ? "clip" : "image"} model takes a rank-${rank} input, the manifest declares ${tensor.layout} ${JSON.stringify(tensor.shape)}`];
  }
  const dims = Object.fromEntries([...tensor.layout].map((k, i) => [k, tensor.shape[i]]));
  if (Object.entries(dims).some(([k, v]) => k !== "N" && typeof v === "string")) return ["input.shape", "only the batch dimension may be dynamic"];
  if (dims.H !== d.preprocessing.size[0] || dims.W !== d.preprocessing.size[1] || dims.C !== 3) {
    return ["input.shape", `${JSON.stringify(tensor.shape)} does not match preprocessing.size ${JSON.stringify(d.preprocessing.size)}`];
  }
  if (temporal !== null && dims.T !== temporal.frames) return ["temporal.frames", `${temporal.frames} frames, but the input has ${dims.T}`];
  const elements = tensor.shape.reduce((a, v) => a * (typeof v === "number" ? v : 1), 1);
  if (elements > MAX_INPUT_ELEMENTS) return ["input.shape", `${elements} elements per input exceed the limit ${MAX_INPUT_ELEMENTS}`];
  const tensors = [["input", tensor], ...d.outputs.map((o, i) => [`outputs[${i}]`, o])];
  for (const [label, spec] of tensors) {
    if ((spec.dtype === "int8" || spec.dtype === "uint8") && (spec.scale === null || spec.zero_point === null)) {
      return [`${label}.scale`, "an integer tensor needs its scale and zero point"];
    }
  }
  if ("activation" in tensor) return ["input.activation", "only outputs have an activation"];
  const roles = d.outputs.map((o) => o.role);
  if (roles.filter((r) => r === "saliency").length !== 1) return ["outputs", "exactly one output must have the role 'saliency'"];
  if ((d.postprocessing.restore === "letterbox-uncrop") !== (d.preprocessing.resize === "letterbox")) {
    return ["postprocessing.restore", "letterboxed inputs are restored by 'letterbox-uncrop', others by 'resize'"];
  }
  return null;
}

/** The manifest of one bundle; `raw` is the whole parsed document. */
export class Manifest {
  constructor(raw, source) {
    this.raw = raw;
    this.source = source;
  }

  get modelName() { return this.raw.model.name; }
  get task() { return this.raw.model.task; }
  get classNames() { return this.raw.model.class_names ?? []; }
  get trained() { return this.raw.weights.trained; }
  get formatKey() { return this.raw.format.key; }
  get family() { return this.raw.format.family; }
  get runtime() { return this.raw.format.runtime; }
  get precision() { return this.raw.format.precision; }
  get modelFile() { return this.raw.model_file; }
  /** `{name: {sha256, bytes}}` of every file the bundle pins. */
  get files() { return this.raw.files; }
  get input() { return new TensorSpec(this.raw.input); }
  get outputs() { return this.raw.outputs.map((o) => new TensorSpec(o)); }
  get saliencyOutput() { return this.outputs.find((o) => o.role === "saliency"); }
  get classOutput() { return this.outputs.find((o) => o.role === "class_probs") ?? null; }
  /** resize, size [h, w], channel_order, scale, mean, std, interpolation, pad_value (salsdk `cards.Preprocessing`). */
  get preprocessing() { return this.raw.preprocessing; }
  /** `{mode: "miso" | "mimo", frames}` for clip models, null for image models. */
  get temporal() { return this.raw.temporal; }
  get isClip() { return this.raw.temporal !== null; }
  /** `resize` or `letterbox-uncrop` (the official UMSI un-crop). */
  get restore() { return this.raw.postprocessing.restore; }
  get gate() { return this.raw.fidelity.min_cc; }
  get fidelity() { return this.raw.fidelity; }
  get bundleName() { return `${this.modelName}-${this.formatKey}`; }
}

/**
 * Parse manifest JSON text, validate it against `schema` (the parsed `salsdk-manifest-2.schema.json`) and the
 * cross-field rules; throws {@link ManifestError} naming `source` and the field.
 */
export function parseManifest(text, schema, source = "manifest.json") {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`${source} is not valid JSON (${e.message}): convert the model again`);
  }
  const version = /^salsdk-manifest\/(\d+)$/.exec(raw?.schema ?? "")?.[1];
  if (version === undefined) throw new ManifestError(`${source}: field schema is ${JSON.stringify(raw?.schema)}, not a salsdk manifest`);
  if (Number(version) > 2) {
    throw new ManifestError(`${source} uses ${raw.schema} (written by salsdk ${raw.salsdk_version}); this client reads up to ${SCHEMA}: update the web client (salsdk export web)`);
  }
  if (Number(version) !== 2) throw new ManifestError(`${source} is ${raw.schema}, not ${SCHEMA}: convert the model again with this salsdk`);
  try {
    new SchemaCheck(schema).validate(raw);
  } catch (e) {
    if (e instanceof SchemaViolation) throw new ManifestError(`${source}: field ${e.message}`);
    throw e;
  }
  const problem = crossFieldProblem(raw);
  if (problem) throw new ManifestError(`${source}: field ${problem[0]}: ${problem[1]}`);
  return new Manifest(raw, source);
}
