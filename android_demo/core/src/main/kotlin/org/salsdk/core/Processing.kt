package org.salsdk.core

import kotlin.math.abs
import kotlin.math.exp
import kotlin.math.max
import kotlin.math.min

/** An 8-bit RGB image, row-major, 3 bytes per pixel (R, G, B). */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    init {
        require(pixels.size == width * height * 3) { "expected ${width * height * 3} bytes, got ${pixels.size}" }
    }

    /** Value 0..255 of channel [c] at ([y], [x]). */
    fun at(y: Int, x: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xFF
}

/** A float map (height x width), row-major. */
class FloatMap(val width: Int, val height: Int, val values: FloatArray) {
    init {
        require(values.size == width * height) { "expected ${width * height} values, got ${values.size}" }
    }
}

/**
 * Where an image went inside the model input (salsdk `geometry.Geometry`): [content] is
 * (top, left, height, width) of the image inside the [inputH] x [inputW] input; [letterbox] says the map comes
 * back by the official UMSI un-crop ([Letterbox.uncrop]).
 */
data class Geometry(val originalH: Int, val originalW: Int, val inputH: Int, val inputW: Int, val content: IntArray,
                    val letterbox: Boolean = false) {
    override fun equals(other: Any?): Boolean = other is Geometry && originalH == other.originalH &&
        originalW == other.originalW && inputH == other.inputH && inputW == other.inputW &&
        content.contentEquals(other.content) && letterbox == other.letterbox

    override fun hashCode(): Int = listOf(originalH, originalW, inputH, inputW, content.toList(), letterbox).hashCode()
}

/**
 * The official UMSI letterbox (`sal_imp_utilities.padding` / `postprocess_predictions`), in integers, exactly as
 * salsdk `geometry.letterbox_fit` / `uncrop_fit`: the side that overflows most is fitted, the other scaled by
 * integer division (kept at >= 1 pixel); equal ratios fit the width.
 */
object Letterbox {
    /** (top, left, height, width) of an (h, w) image letterboxed into (rows, cols). */
    fun fit(h: Int, w: Int, rows: Int, cols: Int): IntArray {
        if (h.toLong() * cols > w.toLong() * rows) {
            val nw = max(1, min(cols, (w.toLong() * rows / h).toInt()))
            return intArrayOf(0, (cols - nw) / 2, rows, nw)
        }
        val nh = max(1, min(rows, (h.toLong() * cols / w).toInt()))
        return intArrayOf((rows - nh) / 2, 0, nh, cols)
    }

    /** (resizeH, resizeW, top, left): resize an (mh, mw) map to cover an (h, w) image, then cut (h, w) at (top, left). */
    fun uncrop(mh: Int, mw: Int, h: Int, w: Int): IntArray {
        if (h.toLong() * mw > w.toLong() * mh) {
            val nw = (mw.toLong() * h / mh).toInt()
            return intArrayOf(h, nw, 0, (nw - w) / 2)
        }
        val nh = (mh.toLong() * w / mw).toInt()
        return intArrayOf(nh, w, (nh - h) / 2, 0)
    }
}

/** A pre-processed frame: normalised HWC floats (channels in the manifest's order) and its [geometry]. */
class PreparedFrame(val hwc: FloatArray, val height: Int, val width: Int, val geometry: Geometry)

/** Optional map post-processing (salsdk `PostprocessOptions`, the subset the demo offers). */
data class PostOptions(
    /** Gaussian blur with sigma = smooth x the longer image side (0 = off), as KDSalBox 'proportional'. */
    val smooth: Double = 0.0,
    /** Min-max scale the map to [0, 1] (the demo's default). */
    val minMax: Boolean = true,
)


/** Pre-processing, exactly as salsdk `sdk/preprocess.py`. */
object Preprocess {
    /**
     * Bilinear resize of an (h, w, c) float array with half-pixel centres and no antialiasing
     * (PyTorch `interpolate(mode="bilinear", align_corners=False)`, OpenCV `INTER_LINEAR`), in float32.
     */
    fun resizeBilinear(src: FloatArray, h: Int, w: Int, c: Int, oh: Int, ow: Int): FloatArray {
        require(src.size == h * w * c) { "array of ${src.size} values is not $h x $w x $c" }
        if (h == oh && w == ow) return src.copyOf()
        val ys = axis(h, oh)
        val xs = axis(w, ow)
        val out = FloatArray(oh * ow * c)
        for (oy in 0 until oh) {
            val y0 = ys.i0[oy]; val y1 = ys.i1[oy]; val ly0 = ys.l0[oy]; val ly1 = ys.l1[oy]
            for (ox in 0 until ow) {
                val x0 = xs.i0[ox]; val x1 = xs.i1[ox]; val lx0 = xs.l0[ox]; val lx1 = xs.l1[ox]
                val a = (y0 * w + x0) * c; val b = (y0 * w + x1) * c
                val d = (y1 * w + x0) * c; val e = (y1 * w + x1) * c
                val o = (oy * ow + ox) * c
                for (k in 0 until c) {
                    out[o + k] = ly0 * (lx0 * src[a + k] + lx1 * src[b + k]) + ly1 * (lx0 * src[d + k] + lx1 * src[e + k])
                }
            }
        }
        return out
    }

    private class Axis(val i0: IntArray, val i1: IntArray, val l0: FloatArray, val l1: FloatArray)

    private fun axis(inSize: Int, outSize: Int): Axis {
        val scale = inSize.toFloat() / outSize.toFloat()
        val i0 = IntArray(outSize); val i1 = IntArray(outSize)
        val l0 = FloatArray(outSize); val l1 = FloatArray(outSize)
        for (o in 0 until outSize) {
            var real = scale * (o + 0.5f) - 0.5f
            if (real < 0f) real = 0f
            val idx = min(real.toInt(), inSize - 1)
            i0[o] = idx
            i1[o] = idx + if (idx < inSize - 1) 1 else 0
            val lambda1 = min(max(real - idx, 0f), 1f)
            l1[o] = lambda1
            l0[o] = 1f - lambda1
        }
        return Axis(i0, i1, l0, l1)
    }

    /** Fit (h, w) inside (th, tw) by the official UMSI letterbox ([Letterbox.fit]). */
    fun letterboxGeometry(h: Int, w: Int, th: Int, tw: Int): Geometry =
        Geometry(h, w, th, tw, Letterbox.fit(h, w, th, tw), letterbox = true)

    /** Geometry of an (h, w) image under [pre]; [size] (the model input's height, width) overrides `pre.size`. */
    fun inputGeometry(pre: Preprocessing, h: Int, w: Int, size: IntArray? = null): Geometry {
        val target = requireNotNull(size ?: pre.size) { "pre-processing '${pre.resize}' needs an input size" }
        if (pre.resize == "letterbox") return letterboxGeometry(h, w, target[0], target[1])
        return Geometry(h, w, target[0], target[1], intArrayOf(0, 0, target[0], target[1]))
    }

    /** One RGB image -> normalised HWC floats and its geometry (salsdk `preprocess_image`, before layout). */
    fun prepare(image: RgbImage, pre: Preprocessing, size: IntArray? = null): PreparedFrame {
        val g = inputGeometry(pre, image.height, image.width, size)
        val (top, left, ch, cw) = g.content.toList()
        val raw = FloatArray(image.pixels.size) { (image.pixels[it].toInt() and 0xFF).toFloat() }
        var pixels = resizeBilinear(raw, image.height, image.width, 3, ch, cw)
        if (ch != g.inputH || cw != g.inputW) {
            val canvas = FloatArray(g.inputH * g.inputW * 3)
            for (i in 0 until g.inputH * g.inputW) for (k in 0 until 3) canvas[i * 3 + k] = pre.padValue[k]
            for (y in 0 until ch) System.arraycopy(pixels, y * cw * 3, canvas, ((top + y) * g.inputW + left) * 3, cw * 3)
            pixels = canvas
        }
        val bgr = pre.channelOrder == "BGR"
        val n = g.inputH * g.inputW
        val out = FloatArray(n * 3)
        for (i in 0 until n) {
            for (k in 0 until 3) {
                val p = pixels[i * 3 + (if (bgr) 2 - k else k)]
                out[i * 3 + k] = (p * pre.scale - pre.mean[k]) / pre.std[k]
            }
        }
        return PreparedFrame(out, g.inputH, g.inputW, g)
    }

    /**
     * Pack pre-processed frames into one model input in [layout]: `NHWC`/`NCHW` (one frame) or
     * `NTHWC`/`NCTHW` (a clip, frames in time order).
     */
    fun pack(frames: List<PreparedFrame>, layout: String): FloatArray {
        require(frames.isNotEmpty()) { "no frames to pack" }
        val h = frames[0].height; val w = frames[0].width; val hw = h * w
        val t = frames.size
        return when (layout) {
            "NHWC", "NTHWC" -> {
                if (layout == "NHWC") require(t == 1) { "NHWC takes one frame, got $t" }
                val out = FloatArray(t * hw * 3)
                frames.forEachIndexed { i, f -> System.arraycopy(f.hwc, 0, out, i * hw * 3, hw * 3) }
                out
            }
            "NCHW", "NCTHW" -> {
                if (layout == "NCHW") require(t == 1) { "NCHW takes one frame, got $t" }
                val out = FloatArray(t * hw * 3)
                frames.forEachIndexed { ti, f ->
                    for (i in 0 until hw) for (k in 0 until 3) out[(k * t + ti) * hw + i] = f.hwc[i * 3 + k]
                }
                out
            }
            else -> throw IllegalArgumentException("unsupported input layout $layout")
        }
    }
}

/** int8/uint8 (de)quantisation with a tensor's scale and zero point (salsdk `litert_runtime`). */
object Quant {
    /** `q = clip(round_half_even(x / scale) + zero_point)` into int8 (or uint8 with [unsigned]). */
    fun quantize(x: FloatArray, scale: Float, zeroPoint: Int, unsigned: Boolean = false): ByteArray {
        require(scale != 0f) { "quantised tensor without a scale" }
        val lo = if (unsigned) 0 else -128
        val hi = if (unsigned) 255 else 127
        return ByteArray(x.size) {
            val q = Math.rint((x[it] / scale).toDouble()) + zeroPoint
            min(max(q, lo.toDouble()), hi.toDouble()).toInt().toByte()
        }
    }

    /** `x = (q - zero_point) * scale` in float32. */
    fun dequantize(q: ByteArray, scale: Float, zeroPoint: Int, unsigned: Boolean = false): FloatArray =
        FloatArray(q.size) {
            val v = if (unsigned) q[it].toInt() and 0xFF else q[it].toInt()
            (v - zeroPoint).toFloat() * scale
        }

    /** The logistic function (an output's `sigmoid` activation), without overflow for large negative x. */
    fun sigmoid(x: Float): Float {
        val e = Math.exp(-Math.abs(x.toDouble()))
        return (if (x >= 0f) 1.0 / (1.0 + e) else e / (1.0 + e)).toFloat()
    }
}

/** Post-processing, exactly as salsdk `sdk/postprocess.py`. */
object Postprocess {
    /**
     * A raw map onto the original image: resized to its size, or for letterboxed inputs the official un-crop
     * (resized to cover the image, then its centre cut out; [Letterbox.uncrop]).
     */
    fun restoreMap(map: FloatMap, g: Geometry): FloatMap {
        val oh = g.originalH; val ow = g.originalW
        if (!g.letterbox) return FloatMap(ow, oh, Preprocess.resizeBilinear(map.values, map.height, map.width, 1, oh, ow))
        val (rh, rw, top, left) = Letterbox.uncrop(map.height, map.width, oh, ow).toList()
        val covered = Preprocess.resizeBilinear(map.values, map.height, map.width, 1, rh, rw)
        val out = FloatArray(oh * ow)
        for (y in 0 until oh) System.arraycopy(covered, (top + y) * rw + left, out, y * ow, ow)
        return FloatMap(ow, oh, out)
    }

    /** 1-D Gaussian weights of scipy's `gaussian_filter1d` (truncate 4.0). */
    fun gaussianKernel(sigma: Double, truncate: Double = 4.0): DoubleArray {
        val radius = (truncate * sigma + 0.5).toInt()
        val k = DoubleArray(2 * radius + 1) { val x = (it - radius).toDouble(); exp(-0.5 / (sigma * sigma) * x * x) }
        val sum = k.sum()
        for (i in k.indices) k[i] /= sum
        return k
    }

    /** scipy `gaussian_filter(mode="constant")` on a float64 (h, w) array: rows axis first, then columns. */
    fun gaussianFilter(values: DoubleArray, h: Int, w: Int, sigma: Double): DoubleArray {
        val k = gaussianKernel(sigma)
        val r = k.size / 2
        val tmp = DoubleArray(h * w)
        for (y in 0 until h) for (x in 0 until w) {
            var s = 0.0
            for (j in -r..r) { val yy = y + j; if (yy in 0 until h) s += k[j + r] * values[yy * w + x] }
            tmp[y * w + x] = s
        }
        val out = DoubleArray(h * w)
        for (y in 0 until h) for (x in 0 until w) {
            var s = 0.0
            for (j in -r..r) { val xx = x + j; if (xx in 0 until w) s += k[j + r] * tmp[y * w + xx] }
            out[y * w + x] = s
        }
        return out
    }

    /** Scale to [0, 1] in float64; a constant map becomes all zeros. */
    fun minMax(values: DoubleArray): DoubleArray {
        var lo = Double.POSITIVE_INFINITY; var hi = Double.NEGATIVE_INFINITY
        for (v in values) { if (v < lo) lo = v; if (v > hi) hi = v }
        if (hi - lo <= 0) return DoubleArray(values.size)
        return DoubleArray(values.size) { (values[it] - lo) / (hi - lo) }
    }

    /** Min-max of a float32 map in float32 arithmetic (salsdk `min_max` on a float32 array). */
    fun minMax(values: FloatArray): FloatArray {
        var lo = Float.POSITIVE_INFINITY; var hi = Float.NEGATIVE_INFINITY
        for (v in values) { if (v < lo) lo = v; if (v > hi) hi = v }
        val range = hi.toDouble() - lo.toDouble()
        if (range <= 0) return FloatArray(values.size)
        val r = range.toFloat()
        return FloatArray(values.size) { (values[it] - lo) / r }
    }

    /** salsdk `apply_postprocess` with [options] on a map already at the image's resolution. */
    fun apply(map: FloatMap, options: PostOptions): FloatMap {
        var out = DoubleArray(map.values.size) { map.values[it].toDouble() }
        if (options.smooth > 0) out = gaussianFilter(out, map.height, map.width, options.smooth * max(map.height, map.width))
        if (options.minMax) out = minMax(out)
        return FloatMap(map.width, map.height, FloatArray(out.size) { out[it].toFloat() })
    }

    /** Classic 'jet' colour of a value in [0, 1] -> packed 0xRRGGBB (piecewise linear, as salsdk). */
    fun jet(value: Float): Int {
        val v = min(max(value, 0f), 1f)
        fun ch(shift: Float): Int {
            val c = min(max(1.5f - abs(4.0f * v - shift), 0f), 1f)
            return Math.rint((c * 255.0f).toDouble()).toInt()
        }
        return (ch(3f) shl 16) or (ch(2f) shl 8) or ch(1f)
    }

    /** Blend the min-max scaled, jet-coloured map over the image (salsdk `overlay`), RGB bytes out. */
    fun overlay(image: RgbImage, map: FloatMap, alpha: Float = 0.5f): RgbImage {
        val m = if (map.width != image.width || map.height != image.height)
            FloatMap(image.width, image.height, Preprocess.resizeBilinear(map.values, map.height, map.width, 1, image.height, image.width))
        else map
        val scaled = minMax(m.values)
        val out = ByteArray(image.pixels.size)
        val keep = 1f - alpha
        for (i in scaled.indices) {
            val rgb = jet(scaled[i])
            for (k in 0 until 3) {
                val heat = ((rgb shr (16 - 8 * k)) and 0xFF).toFloat()
                val px = (image.pixels[i * 3 + k].toInt() and 0xFF).toFloat()
                out[i * 3 + k] = Math.rint((keep * px + alpha * heat).toDouble()).toInt().toByte()
            }
        }
        return RgbImage(image.width, image.height, out)
    }
}
