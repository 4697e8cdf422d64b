/**
 * Pre-processing, exactly as salsdk `sdk/preprocess.py`: bilinear resize with half-pixel centres and no
 * antialiasing on 0..255 float pixels (rows first, then columns), letterbox onto a canvas of the pad value, channel
 * order, `(pixel * scale - mean) / std`, then the model's layout and, for int8 inputs, quantisation. Every step is
 * computed in float32 (`Math.fround` after each operation, as NumPy's float32 arithmetic), so the tensors equal
 * Python's to rounding.
 */
import { inputGeometry } from "./geometry.js";

const f = Math.fround;

/** An 8-bit RGB image: `data` holds height x width x 3 bytes, row-major. */
export class RgbImage {
  constructor(width, height, data) {
    if (data.length !== width * height * 3) throw new Error(`expected ${width * height * 3} bytes, got ${data.length}`);
    Object.assign(this, { width, height, data });
  }

  /** From canvas `ImageData` (RGBA). */
  static fromImageData(imageData) {
    const { width, height, data } = imageData;
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
      rgb[i] = data[j]; rgb[i + 1] = data[j + 1]; rgb[i + 2] = data[j + 2];
    }
    return new RgbImage(width, height, rgb);
  }
}

function axisWeights(sizeIn, sizeOut) {
  const scale = sizeIn / sizeOut;
  const low = new Int32Array(sizeOut), high = new Int32Array(sizeOut), weight = new Float32Array(sizeOut);
  for (let o = 0; o < sizeOut; o++) {
    const source = Math.max((o + 0.5) * scale - 0.5, 0);
    low[o] = Math.min(Math.floor(source), sizeIn - 1);
    high[o] = Math.min(low[o] + 1, sizeIn - 1);
    weight[o] = source - low[o];
  }
  return { low, high, weight };
}

/** Resize an (h, w, c) float32 array to (oh, ow) (salsdk `resize_bilinear`). */
export function resizeBilinear(src, h, w, c, oh, ow) {
  if (h === oh && w === ow) return Float32Array.from(src);
  const ys = axisWeights(h, oh), xs = axisWeights(w, ow);
  const rows = new Float32Array(oh * w * c);
  for (let y = 0; y < oh; y++) {
    const wt = ys.weight[y], keep = f(1 - wt), a = ys.low[y] * w * c, b = ys.high[y] * w * c;
    for (let i = 0; i < w * c; i++) rows[y * w * c + i] = f(f(src[a + i] * keep) + f(src[b + i] * wt));
  }
  const out = new Float32Array(oh * ow * c);
  for (let x = 0; x < ow; x++) {
    const wt = xs.weight[x], keep = f(1 - wt), a = xs.low[x] * c, b = xs.high[x] * c;
    for (let y = 0; y < oh; y++) {
      const r = y * w * c, o = (y * ow + x) * c;
      for (let k = 0; k < c; k++) out[o + k] = f(f(rows[r + a + k] * keep) + f(rows[r + b + k] * wt));
    }
  }
  return out;
}

/**
 * One RGB image -> normalised HWC float32 pixels (channels in the manifest's order) and its geometry
 * (salsdk `preprocess_image` before the layout transpose).
 */
export function prepareFrame(image, pre) {
  const geometry = inputGeometry(pre.resize, image.height, image.width, pre.size);
  const [top, left, ch, cw] = geometry.content;
  const [ih, iw] = geometry.inputHw;
  let pixels = resizeBilinear(Float32Array.from(image.data), image.height, image.width, 3, ch, cw);
  if (ch !== ih || cw !== iw) {
    const canvas = new Float32Array(ih * iw * 3);
    for (let i = 0; i < ih * iw; i++) for (let k = 0; k < 3; k++) canvas[i * 3 + k] = pre.pad_value[k];
    for (let y = 0; y < ch; y++) canvas.set(pixels.subarray(y * cw * 3, (y + 1) * cw * 3), ((top + y) * iw + left) * 3);
    pixels = canvas;
  }
  const bgr = pre.channel_order === "BGR";
  const scale = f(pre.scale), mean = pre.mean.map(f), std = pre.std.map(f);
  const hwc = new Float32Array(ih * iw * 3);
  for (let i = 0; i < ih * iw; i++) {
    for (let k = 0; k < 3; k++) {
      const p = pixels[i * 3 + (bgr ? 2 - k : k)];
      hwc[i * 3 + k] = f(f(f(p * scale) - mean[k]) / std[k]);
    }
  }
  return { hwc, height: ih, width: iw, geometry };
}

/** Pack prepared frames (time order) into one input tensor in `layout` (NHWC, NCHW, NTHWC or NCTHW). */
export function pack(frames, layout) {
  const { height: h, width: w } = frames[0], hw = h * w, t = frames.length;
  if ((layout === "NHWC" || layout === "NCHW") && t !== 1) throw new Error(`${layout} takes one frame, got ${t}`);
  const out = new Float32Array(t * hw * 3);
  if (layout === "NHWC" || layout === "NTHWC") {
    frames.forEach((fr, i) => out.set(fr.hwc, i * hw * 3));
  } else if (layout === "NCHW" || layout === "NCTHW") {
    frames.forEach((fr, ti) => {
      for (let i = 0; i < hw; i++) for (let k = 0; k < 3; k++) out[(k * t + ti) * hw + i] = fr.hwc[i * 3 + k];
    });
  } else throw new Error(`unsupported input layout ${layout}`);
  return out;
}

/** Round half to even (NumPy's `round`). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** `q = clip(round_half_even(x / scale) + zero_point)` into an Int8Array (or Uint8Array for `uint8`). */
export function quantize(x, scale, zeroPoint, dtype) {
  const [lo, hi, Out] = dtype === "uint8" ? [0, 255, Uint8Array] : [-128, 127, Int8Array];
  const s = f(scale), out = new Out(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.min(hi, Math.max(lo, roundHalfEven(f(x[i] / s)) + zeroPoint));
  return out;
}

/** The logistic function in float32 (an output's `sigmoid` activation), in place; no overflow for large -x. */
export function sigmoidInPlace(values) {
  for (let i = 0; i < values.length; i++) {
    const e = Math.exp(-Math.abs(values[i]));
    values[i] = f(values[i] >= 0 ? 1 / (1 + e) : e / (1 + e));
  }
  return values;
}

/** `x = (q - zero_point) * scale` in float32. */
export function dequantize(q, scale, zeroPoint) {
  const s = f(scale), out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = f((q[i] - zeroPoint) * s);
  return out;
}
