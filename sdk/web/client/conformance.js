/**
 * Run the shared client test vectors (salsdk `sdk/clients/vectors.py`, written by `salsdk export web --vectors`
 * and `salsdk export android`) in this browser: for every case, the pre-processed input tensor, the model's raw
 * output on this browser's runtime, the post-processed maps and the overlay, each compared with what the Python
 * SDK computed. Returns plain numbers per case; `ok` applies the tolerances the vectors declare.
 */
import { FloatMap, overlay, postprocess, restoreMap } from "./postprocess.js";
import { Predictor } from "./predictor.js";
import { RgbImage, dequantize, pack } from "./preprocess.js";

const ARRAYS = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array };

async function bytesOf(url) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  if (!url.pathname.endsWith(".gz")) return new Uint8Array(await response.arrayBuffer());
  const stream = response.body.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const typed = (bytes, Type) => new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);

/** Largest absolute difference of two arrays of one length. */
export function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Pearson correlation (CC) of two maps of one size (0 when one is constant). */
export function cc(a, b) {
  if (a.length !== b.length || a.length === 0) return NaN;
  let ma = 0, mb = 0;
  for (let i = 0; i < a.length; i++) { ma += a[i]; mb += b[i]; }
  ma /= a.length; mb /= b.length;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < a.length; i++) { const x = a[i] - ma, y = b[i] - mb; sab += x * y; saa += x * x; sbb += y * y; }
  return saa <= 0 || sbb <= 0 ? 0 : sab / Math.sqrt(saa * sbb);
}

/** The input tensor's part the vectors store (clips in NTHWC: only some frames). */
function storedPart(tensor, spec, inputSpec) {
  if (!spec.frames_stored) return tensor;
  const [, t, h, w] = inputSpec.dims;
  const frame = h * w * 3, out = new (tensor.constructor)(spec.frames_stored.length * frame);
  spec.frames_stored.forEach((k, i) => out.set(tensor.subarray(((k % t) + t) % t * frame, ((k % t) + t) % t * frame + frame), i * frame));
  return out;
}

/**
 * Check the vectors at `vectorsUrl` (a folder with `vectors.json`) against the bundle at `bundleUrl`.
 * Returns `{bundle, runtime, threads, cases: [{name, input, input_q, output_cc, output_max, maps_py: [...],
 * maps_run_cc: [...], overlay, ok}]}`.
 */
export async function runVectors(vectorsUrl, bundleUrl, options = {}) {
  const base = new URL(vectorsUrl.endsWith("/") ? vectorsUrl : `${vectorsUrl}/`, location.href);
  const spec = JSON.parse(new TextDecoder().decode(await bytesOf(new URL("vectors.json", base))));
  const p = await Predictor.open(bundleUrl, options);
  const tol = spec.tolerances;
  const cases = [];
  for (const c of spec.cases) {
    const frames = [];
    for (const fr of c.frames) frames.push(new RgbImage(fr.width, fr.height, await bytesOf(new URL(fr.file, base))));
    const prepared = frames.map((fr) => p.prepare(fr));
    const geometry = prepared[prepared.length - 1].geometry;
    const result = { name: c.name, geometry: geometry.content.join() === c.geometry.content.join() };
    const packed = pack(prepared, p.input.layout);  // float, before int8 quantisation
    result.input = maxAbsDiff(storedPart(packed, c.input, p.input), typed(await bytesOf(new URL(c.input.file, base)), Float32Array));
    const tensor = p.inputTensor(prepared);
    if (c.input_q) {
      const expected = typed(await bytesOf(new URL(c.input_q.file, base)), ARRAYS[c.input_q.dtype]);
      result.input_q = tensor.reduce((n, v, i) => n + (v !== expected[i] ? 1 : 0), 0);
    }
    const { outputs, ms } = await p.run(tensor);
    result.ms = ms;
    const out = p.output;
    const deq = (q) => (out.quantized ? dequantize(q, out.scale, out.zeroPoint) : Float32Array.from(q));
    const pyRaw = deq(typed(await bytesOf(new URL(c.output.file, base)), ARRAYS[c.output.dtype]));
    const mine = p.maps(outputs), [h, w] = out.hw;
    const pyMap = new FloatMap(w, h, pyRaw.subarray(0, h * w));
    result.output_cc = cc(mine[0].values, pyMap.values);
    result.output_max = maxAbsDiff(mine[0].values, pyMap.values);
    result.maps_py = [];      // Python's raw output post-processed here vs Python's maps: pre/post-processing alone
    result.maps_run_cc = [];  // this browser's own output post-processed vs Python's maps: the whole pipeline
    let first = null;
    for (const m of c.maps) {
      const expected = typed(await bytesOf(new URL(m.file, base)), Float32Array);
      const opts = { smooth: m.smooth, minMax: m.min_max };
      const fromPy = postprocess(restoreMap(pyMap, geometry), opts);
      first ??= fromPy;
      result.maps_py.push(maxAbsDiff(fromPy.values, expected));
      result.maps_run_cc.push(cc(postprocess(restoreMap(mine[0], geometry), opts).values, expected));
    }
    const frame = frames[c.overlay.frame];
    result.overlay = maxAbsDiff(overlay(frame, first, c.overlay.alpha), await bytesOf(new URL(c.overlay.file, base)));
    result.ok = result.geometry && result.input <= tol.input && (result.input_q ?? 0) === 0
      && result.maps_py.every((d) => d <= tol.map) && result.overlay <= tol.overlay;
    cases.push(result);
  }
  const summary = { bundle: spec.bundle, runtime: p.session.backend, threads: p.session.threads, cases };
  p.session.release();
  return summary;
}
