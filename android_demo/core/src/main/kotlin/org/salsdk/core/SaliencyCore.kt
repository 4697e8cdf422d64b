package org.salsdk.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Everything around the network for one bundle, read from its manifest: build the input buffer (resize,
 * letterbox, normalise, layout, int8 quantisation), read the output buffer (dequantise, layout) and turn the
 * raw map into a map at the image's resolution and an overlay. The engine (LiteRT on Android) only runs the
 * model between [inputBuffer] and [readMaps].
 */
class SaliencyCore(val manifest: Manifest) {
    val pre: Preprocessing get() = manifest.preprocessing
    val input: TensorSpec get() = manifest.input
    val output: TensorSpec get() = manifest.saliencyOutput
    val inputHw: IntArray get() = manifest.inputHw

    /** Pre-process one image or frame (its geometry maps the output back onto it). */
    fun prepare(image: RgbImage): PreparedFrame = Preprocess.prepare(image, pre, inputHw)

    /** Float input tensor in the model's layout, for one image (or a clip of `frames` prepared frames). */
    fun inputTensor(frames: List<PreparedFrame>): FloatArray {
        require(frames.size == manifest.frames) { "${manifest.modelName} takes ${manifest.frames} frame(s), got ${frames.size}" }
        return Preprocess.pack(frames, input.layout)
    }

    /** The input tensor as the model's dtype: int8/uint8 quantised with the input's scale/zero point, else float32. */
    fun quantizeInput(tensor: FloatArray): ByteArray? =
        if (input.quantized) Quant.quantize(tensor, input.scale!!, input.zeroPoint ?: 0, input.dtype == "uint8") else null

    /** A direct, native-order buffer holding [tensor] as the input tensor's dtype (what LiteRT reads). */
    fun inputBuffer(tensor: FloatArray): ByteBuffer {
        val buffer = ByteBuffer.allocateDirect(tensor.size * input.bytesPerElement).order(ByteOrder.nativeOrder())
        val q = quantizeInput(tensor)
        if (q != null) buffer.put(q) else buffer.asFloatBuffer().put(tensor)
        buffer.rewind()
        return buffer
    }

    /** A buffer sized for the saliency output tensor. */
    fun outputBuffer(): ByteBuffer =
        ByteBuffer.allocateDirect(output.elements * output.bytesPerElement).order(ByteOrder.nativeOrder())

    /** Raw output values as float32: dequantised when the output tensor is int8/uint8, then its activation. */
    fun outputValues(buffer: ByteBuffer): FloatArray {
        buffer.rewind()
        val values = if (output.quantized) {
            val q = ByteArray(output.elements)
            buffer.get(q)
            Quant.dequantize(q, output.scale!!, output.zeroPoint ?: 0, output.dtype == "uint8")
        } else {
            val f = FloatArray(output.elements)
            buffer.asFloatBuffer().get(f)
            f
        }
        if (output.activation == "sigmoid") for (i in values.indices) values[i] = Quant.sigmoid(values[i])
        return values
    }

    /**
     * Raw saliency maps (model output resolution) from the output values: one map (MISO / image models) or
     * one per frame (MIMO), channel 0, whatever the output layout.
     */
    fun readMaps(values: FloatArray): List<FloatMap> {
        val d = output.dims
        return when (output.layout) {
            "NHWC" -> listOf(channel(values, 1, d[1], d[2], d[3], 0, last = true))
            "NCHW" -> listOf(channel(values, 1, d[2], d[3], d[1], 0, last = false))
            "NTHWC" -> (0 until d[1]).map { channel(values, d[1], d[2], d[3], d[4], it, last = true) }
            "NCTHW" -> (0 until d[2]).map { channel(values, d[2], d[3], d[4], d[1], it, last = false) }
            else -> throw ManifestError("saliency output layout ${output.layout} is not a map layout")
        }
    }

    private fun channel(values: FloatArray, t: Int, h: Int, w: Int, c: Int, ti: Int, last: Boolean): FloatMap {
        val out = FloatArray(h * w)
        for (i in 0 until h * w) out[i] = if (last) values[(ti * h * w + i) * c] else values[ti * h * w + i]
        return FloatMap(w, h, out)
    }

    /** A raw map -> the image's resolution (crop letterbox, resize), then [options] (min-max by default). */
    fun postprocess(map: FloatMap, geometry: Geometry, options: PostOptions = PostOptions()): FloatMap =
        Postprocess.apply(Postprocess.restoreMap(map, geometry), options)

    /** Heat-map overlay of [map] on [image]. */
    fun overlay(image: RgbImage, map: FloatMap, alpha: Float = 0.5f): RgbImage = Postprocess.overlay(image, map, alpha)

    /** A sliding window of the last `frames` prepared frames, for clip models (TinyHD). */
    fun newWindow(): ClipWindow = ClipWindow(manifest.frames)

    companion object {
        /** Parse a manifest and build the core for it. */
        fun fromManifestText(text: String): SaliencyCore = SaliencyCore(Manifest.parse(text))
    }
}

/**
 * The last [size] pre-processed frames of a stream (salsdk `VideoStream`, MISO): the window is left-padded
 * with the first frame until [size] frames have arrived, so every frame gets a map from the first one on.
 */
class ClipWindow(val size: Int) {
    private val frames = ArrayDeque<PreparedFrame>()
    private var first: PreparedFrame? = null

    /** Frames pushed so far (capped at [size]). */
    val count: Int get() = frames.size

    /** Add a frame; frames of another size than the first are refused. */
    fun push(frame: PreparedFrame) {
        val f0 = first
        if (f0 == null) first = frame
        else require(f0.geometry == frame.geometry) { "all frames of a stream must have the same size" }
        frames.addLast(frame)
        while (frames.size > size) frames.removeFirst()
    }

    /** The current clip, oldest frame first, left-padded with the first frame. */
    fun clip(): List<PreparedFrame> {
        val f0 = first ?: throw IllegalStateException("no frame pushed yet")
        return List(size - frames.size) { f0 } + frames
    }

    /** Start a new stream. */
    fun clear() { frames.clear(); first = null }
}
