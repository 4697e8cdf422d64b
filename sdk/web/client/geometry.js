/**
 * Where an image goes inside a model input, and how a map comes back (salsdk `sdk/geometry.py`): `stretch`, or the
 * official UMSI `letterbox` in integers (the overflowing side fitted, the other scaled by integer division, kept at
 * >= 1 pixel, centred; equal ratios fit the width) and its un-crop.
 */
const idiv = (a, b) => Math.floor(a / b);  // non-negative integers well below 2^53: exact

/** [top, left, height, width] of an (h, w) image letterboxed into (rows, cols). */
export function letterboxFit(h, w, rows, cols) {
  if (h * cols > w * rows) {
    const nw = Math.max(1, Math.min(cols, idiv(w * rows, h)));
    return [0, idiv(cols - nw, 2), rows, nw];
  }
  const nh = Math.max(1, Math.min(rows, idiv(h * cols, w)));
  return [idiv(rows - nh, 2), 0, nh, cols];
}

/** [resizeH, resizeW, top, left]: resize an (mh, mw) map to cover an (h, w) image, then cut (h, w) at (top, left). */
export function uncropFit(mh, mw, h, w) {
  if (h * mw > w * mh) {
    const nw = idiv(mw * h, mh);
    return [h, nw, 0, idiv(nw - w, 2)];
  }
  const nh = idiv(mh * w, mw);
  return [nh, w, idiv(nh - h, 2), 0];
}

/** Geometry of an (h, w) image fitted by `resize` into `[rows, cols]`: `{originalHw, inputHw, content, letterbox}`. */
export function inputGeometry(resize, h, w, [rows, cols]) {
  if (resize === "letterbox") return { originalHw: [h, w], inputHw: [rows, cols], content: letterboxFit(h, w, rows, cols), letterbox: true };
  return { originalHw: [h, w], inputHw: [rows, cols], content: [0, 0, rows, cols], letterbox: false };
}
