/**
 * One bundle, ready to predict: image -> input tensor (pre-processing, layout, int8 quantisation), the runtime, and
 * the output buffer -> maps (dequantisation, restore onto the image, smoothing, min-max), as salsdk's `Predictor`.
 */
import { openBundle } from "./bundle.js";
import { FloatMap, postprocess, restoreMap } from "./postprocess.js";
import { dequantize, pack, prepareFrame, quantize, sigmoidInPlace } from "./preprocess.js";

export class Predictor {
  /** Fetch, verify and open the bundle at `url` (see `openBundle` for `options`). */
  static async open(url, options = {}) {
    return new Predictor(await openBundle(url, options));
  }

  constructor({ manifest, session, verifyMs, loadMs }) {
    Object.assign(this, { manifest, session, verifyMs, loadMs });
    this.input = manifest.input;
    this.output = manifest.saliencyOutput;
  }

  /** One RGB image -> prepared frame `{hwc, height, width, geometry}`. */
  prepare(image) {
    return prepareFrame(image, this.manifest.preprocessing);
  }

  /** Prepared frames (1, or the clip's frames in time order) -> the model's input buffer (layout, dtype). */
  inputTensor(frames) {
    const packed = pack(frames, this.input.layout);
    return this.input.quantized ? quantize(packed, this.input.scale, this.input.zeroPoint, this.input.dtype) : packed;
  }

  /** Raw output buffers -> the model's maps (one, or one per frame for MIMO), float32, in model resolution. */
  maps(outputs) {
    const raw = outputs[this.output.name] ?? Object.values(outputs)[this.manifest.outputs.indexOf(this.output)];
    const values = this.output.quantized ? dequantize(raw, this.output.scale, this.output.zeroPoint) : Float32Array.from(raw);
    if (this.output.activation === "sigmoid") sigmoidInPlace(values);
    const [h, w] = this.output.hw;
    return Array.from({ length: values.length / (h * w) }, (_, t) => new FloatMap(w, h, values.subarray(t * h * w, (t + 1) * h * w)));
  }

  /** Design class probabilities `[{name, p}]` (UMSI), or null. */
  classes(outputs) {
    const spec = this.manifest.classOutput;
    if (spec === null) return null;
    const raw = outputs[spec.name];
    const p = spec.quantized ? dequantize(raw, spec.scale, spec.zeroPoint) : raw;
    return this.manifest.classNames.map((name, i) => ({ name, p: p[i] }));
  }

  /** Run one input buffer; returns `{outputs, ms}`. */
  async run(tensor) {
    const started = performance.now();
    const outputs = await this.session.run(tensor);
    return { outputs, ms: performance.now() - started };
  }

  /**
   * Saliency of one image (image models): `{map, raw, geometry, classes, ms}`; `map` is at the image's size,
   * post-processed with `options` (`smooth`, `minMax`; default min-max only).
   */
  async predict(image, options = {}) {
    if (this.manifest.isClip) throw new Error(`${this.manifest.modelName} is a video model: use a VideoStream`);
    const frame = this.prepare(image);
    const { outputs, ms } = await this.run(this.inputTensor([frame]));
    const raw = this.maps(outputs)[0];
    return { map: postprocess(restoreMap(raw, frame.geometry), options), raw, geometry: frame.geometry, classes: this.classes(outputs), ms };
  }
}
