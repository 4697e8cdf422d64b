/**
 * Post-processing, exactly as salsdk `sdk/postprocess.py`: the raw map back onto the image (resize, or the official
 * UMSI un-crop), optional Gaussian smoothing (scipy `gaussian_filter`, mode constant, truncate 4, sigma = smooth x
 * the longer side) and min-max scaling in float64, and the jet heat-map overlay in float32.
 */
import { uncropFit } from "./geometry.js";
import { resizeBilinear, roundHalfEven } from "./preprocess.js";

const f = Math.fround;

/** A float map, row-major. */
export class FloatMap {
  constructor(width, height, values) {
    if (values.length !== width * height) throw new Error(`expected ${width * height} values, got ${values.length}`);
    Object.assign(this, { width, height, values });
  }
}

/** The model's raw map (float32) onto the original image of `geometry`. */
export function restoreMap(map, geometry) {
  const [oh, ow] = geometry.originalHw;
  if (!geometry.letterbox) return new FloatMap(ow, oh, resizeBilinear(map.values, map.height, map.width, 1, oh, ow));
  const [rh, rw, top, left] = uncropFit(map.height, map.width, oh, ow);
  const covered = resizeBilinear(map.values, map.height, map.width, 1, rh, rw);
  const out = new Float32Array(oh * ow);
  for (let y = 0; y < oh; y++) out.set(covered.subarray((top + y) * rw + left, (top + y) * rw + left + ow), y * ow);
  return new FloatMap(ow, oh, out);
}

/** 1-D Gaussian weights of scipy's `gaussian_filter1d` (truncate 4.0). */
function gaussianKernel(sigma, truncate = 4.0) {
  const radius = Math.floor(truncate * sigma + 0.5);
  const k = Float64Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-0.5 / (sigma * sigma) * (i - radius) ** 2));
  const sum = k.reduce((a, b) => a + b, 0);
  return k.map((v) => v / sum);
}

/** scipy `gaussian_filter(mode="constant")` of a float64 (h, w) array: rows axis first, then columns. */
export function gaussianFilter(values, h, w, sigma) {
  const k = gaussianKernel(sigma), r = (k.length - 1) / 2;
  const tmp = new Float64Array(h * w), out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    let s = 0;
    for (let j = -r; j <= r; j++) { const yy = y + j; if (yy >= 0 && yy < h) s += k[j + r] * values[yy * w + x]; }
    tmp[y * w + x] = s;
  }
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    let s = 0;
    for (let j = -r; j <= r; j++) { const xx = x + j; if (xx >= 0 && xx < w) s += k[j + r] * tmp[y * w + xx]; }
    out[y * w + x] = s;
  }
  return out;
}

function range(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

/**
 * salsdk `apply_postprocess` with `{smooth, minMax}` on a map already at the image's resolution (float64 inside,
 * float32 out).
 */
export function postprocess(map, { smooth = 0, minMax = true } = {}) {
  let out = Float64Array.from(map.values);
  if (smooth > 0) out = gaussianFilter(out, map.height, map.width, smooth * Math.max(map.height, map.width));
  if (minMax) {
    const [lo, hi] = range(out);
    out = hi - lo <= 0 ? new Float64Array(out.length) : out.map((v) => (v - lo) / (hi - lo));
  }
  return new FloatMap(map.width, map.height, Float32Array.from(out));
}

/** Classic 'jet' colour of a float32 value in [0, 1] -> [r, g, b] (salsdk `jet_colormap`). */
export function jet(value) {
  const v = Math.min(Math.max(value, 0), 1);
  const ch = (shift) => roundHalfEven(f(Math.min(Math.max(f(1.5 - Math.abs(f(f(4 * v) - shift))), 0), 1) * 255));
  return [ch(3), ch(2), ch(1)];
}

/** Blend the min-max scaled, jet-coloured map over the image (salsdk `overlay`); returns RGB bytes. */
export function overlay(image, map, alpha = 0.5) {
  const values = map.width === image.width && map.height === image.height ? map.values
    : resizeBilinear(map.values, map.height, map.width, 1, image.height, image.width);
  const [lo, hi] = range(values), span = f(hi - lo);
  const keep = f(1 - alpha), a = f(alpha), out = new Uint8Array(image.data.length);
  for (let i = 0; i < values.length; i++) {
    const rgb = jet(span <= 0 ? 0 : f(f(values[i] - lo) / span));
    for (let k = 0; k < 3; k++) out[i * 3 + k] = roundHalfEven(f(f(keep * image.data[i * 3 + k]) + f(a * rgb[k])));
  }
  return out;
}
