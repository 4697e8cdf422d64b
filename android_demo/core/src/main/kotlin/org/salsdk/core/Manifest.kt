package org.salsdk.core

/** A bundle's manifest is missing, malformed or of another schema. */
class ManifestError(message: String) : IllegalArgumentException(message)

/**
 * How raw RGB pixels become the model input (mirrors salsdk `cards.Preprocessing`): convert to [channelOrder];
 * fit to [size] by [resize] (`native`, `stretch` or `letterbox`, padding with [padValue]); then
 * `x = (pixel * scale - mean) / std` per channel.
 */
data class Preprocessing(
    val resize: String,
    val size: IntArray?,
    val channelOrder: String = "RGB",
    val scale: Float = 1f / 255f,
    val mean: FloatArray = floatArrayOf(0f, 0f, 0f),
    val std: FloatArray = floatArrayOf(1f, 1f, 1f),
    val frames: Int = 1,
    val interpolation: String = "bilinear",
    val padValue: FloatArray = floatArrayOf(0f, 0f, 0f),
)

/** One model input or output tensor as the manifest describes it; [scale]/[zeroPoint] for int8/uint8. */
data class TensorSpec(
    val name: String,
    val shape: List<Any?>,
    val layout: String,
    val dtype: String,
    val scale: Float?,
    val zeroPoint: Int?,
) {
    /** True for int8/uint8 tensors (quantised with [scale] and [zeroPoint]). */
    val quantized: Boolean get() = dtype == "int8" || dtype == "uint8"

    /** Static dimensions (a symbolic batch counts as 1). */
    val dims: IntArray get() = IntArray(shape.size) { (shape[it] as? Number)?.toInt() ?: 1 }

    /** Number of elements of one static-shaped tensor. */
    val elements: Int get() = dims.fold(1) { a, b -> a * b }

    /** Bytes per element of [dtype]. */
    val bytesPerElement: Int get() = if (quantized) 1 else 4

    /** (height, width) of an image/clip tensor, from its layout. */
    val hw: IntArray
        get() {
            val d = dims
            return when (layout) {
                "NHWC" -> intArrayOf(d[1], d[2])
                "NTHWC" -> intArrayOf(d[2], d[3])
                "NCHW" -> intArrayOf(d[2], d[3])
                "NCTHW" -> intArrayOf(d[3], d[4])
                else -> throw ManifestError("tensor '$name' with layout $layout has no height/width")
            }
        }

    companion object {
        fun parse(m: Map<String, Any?>): TensorSpec = TensorSpec(
            name = m.str("name"),
            shape = m.list("shape"),
            layout = m.str("layout"),
            dtype = m.str("dtype"),
            scale = m.numOrNull("scale")?.toFloat(),
            zeroPoint = m.numOrNull("zero_point")?.toInt(),
        )
    }
}

/**
 * The fields of a salsdk bundle manifest (schema `salsdk-manifest/1`) that running the model needs.
 * The whole parsed JSON stays available in [raw].
 */
data class Manifest(
    val modelName: String,
    val task: String,
    val temporal: String?,
    val classNames: List<String>,
    val trained: Boolean,
    val formatKey: String,
    val precision: String,
    val runtime: String,
    val modelFile: String,
    val input: TensorSpec,
    val preprocessing: Preprocessing,
    val outputs: List<TensorSpec>,
    val fidelityCcMin: Double?,
    val licence: String,
    val raw: Map<String, Any?>,
) {
    /** Clip model (TinyHD): the input holds [Preprocessing.frames] frames. */
    val isVideo: Boolean get() = preprocessing.frames > 1

    /** The saliency output: named `saliency`, else the first rank-4/5 output. */
    val saliencyOutput: TensorSpec
        get() = outputs.firstOrNull { it.name.substringBefore(':') == "saliency" }
            ?: outputs.firstOrNull { it.shape.size >= 4 } ?: outputs.first()

    /** Input (height, width) of the model. */
    val inputHw: IntArray get() = input.hw

    companion object {
        const val SCHEMA = "salsdk-manifest/1"

        /** Parse manifest JSON text; throws [ManifestError] when it is not a salsdk manifest. */
        fun parse(text: String): Manifest {
            val root = try {
                Json.parse(text).obj("manifest")
            } catch (e: Json.ParseError) {
                throw ManifestError("manifest is not valid JSON: ${e.message}")
            }
            if (root["schema"] != SCHEMA) throw ManifestError("schema ${root["schema"]} is not $SCHEMA")
            val model = root["model"].obj("model")
            val fmt = root["format"].obj("format")
            val inputObj = root["input"].obj("input")
            val pre = inputObj["preprocessing"].obj("input.preprocessing")
            val weights = (root["weights"] as? Map<*, *>)
            fun floats(key: String, default: FloatArray): FloatArray =
                pre.listOrNull(key)?.let { l -> FloatArray(l.size) { (l[it] as Number).toFloat() } } ?: default
            val preprocessing = Preprocessing(
                resize = pre.str("resize"),
                size = pre.listOrNull("size")?.let { l -> IntArray(l.size) { (l[it] as Number).toInt() } },
                channelOrder = pre.strOrNull("channel_order") ?: "RGB",
                scale = pre.numOrNull("scale")?.toFloat() ?: (1f / 255f),
                mean = floats("mean", floatArrayOf(0f, 0f, 0f)),
                std = floats("std", floatArrayOf(1f, 1f, 1f)),
                frames = pre.numOrNull("frames")?.toInt() ?: 1,
                interpolation = pre.strOrNull("interpolation") ?: "bilinear",
                padValue = floats("pad_value", floatArrayOf(0f, 0f, 0f)),
            )
            if (preprocessing.interpolation != "bilinear")
                throw ManifestError("interpolation ${preprocessing.interpolation} is not supported (bilinear only)")
            val fidelity = root["fidelity"] as? Map<*, *>
            return Manifest(
                modelName = model.str("name"),
                task = model.strOrNull("task") ?: "",
                temporal = model.strOrNull("temporal"),
                classNames = model.listOrNull("class_names")?.map { it.toString() } ?: emptyList(),
                trained = weights?.get("trained") as? Boolean ?: true,
                formatKey = fmt.str("key"),
                precision = fmt.strOrNull("precision") ?: "",
                runtime = fmt.strOrNull("runtime") ?: "",
                modelFile = root.str("model_file"),
                input = TensorSpec.parse(inputObj),
                preprocessing = preprocessing,
                outputs = root.list("outputs").map { TensorSpec.parse(it.obj("output")) },
                fidelityCcMin = (fidelity?.get("cc_min") as? Number)?.toDouble(),
                licence = (root["licence"] as? String) ?: (root["licence"]?.let { Json.write(it) } ?: ""),
                raw = root,
            )
        }
    }
}
