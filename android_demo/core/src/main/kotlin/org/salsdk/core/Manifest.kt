package org.salsdk.core

/** A bundle's manifest is missing, malformed or of another schema. */
class ManifestError(message: String) : IllegalArgumentException(message)

/**
 * How raw RGB pixels become the model input (mirrors salsdk `cards.Preprocessing`): convert to [channelOrder];
 * fit to [size] by [resize] (`stretch`, or `letterbox` by the official UMSI rule, padding with [padValue]); then
 * `x = (pixel * scale - mean) / std` per channel.
 */
data class Preprocessing(
    val resize: String,
    val size: IntArray?,
    val channelOrder: String = "RGB",
    val scale: Float = 1f / 255f,
    val mean: FloatArray = floatArrayOf(0f, 0f, 0f),
    val std: FloatArray = floatArrayOf(1f, 1f, 1f),
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
    /** Outputs: `saliency` or `class_probs`; null for inputs. */
    val role: String? = null,
    /** Outputs: applied after dequantisation; `sigmoid` for a map stored as int8 logits (`tflite-int8-io`). */
    val activation: String? = null,
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
            role = m.strOrNull("role"),
            activation = m.strOrNull("activation")?.also {
                if (it != "sigmoid") throw ManifestError("tensor '${m["name"]}' has activation '$it'; this client applies 'sigmoid' only")
            },
        )
    }
}

/** How a clip model consumes a stream: [frames] frames in, one map out (`miso`) or one per frame (`mimo`). */
data class Temporal(val mode: String, val frames: Int)

/**
 * The fields of a salsdk bundle manifest (schema `salsdk-manifest/2`, `sdk/schemas/salsdk-manifest-2.schema.json`)
 * that running the model needs. The whole parsed JSON stays available in [raw].
 *
 * A bundle's files are verified by the Python SDK before export (`salsdk export android` copies only bundles whose
 * pinned hashes and embedded manifest match); this parser still bounds every size it reads.
 */
data class Manifest(
    val modelName: String,
    val task: String,
    val temporal: Temporal?,
    val classNames: List<String>,
    val trained: Boolean,
    val formatKey: String,
    val precision: String,
    val runtime: String,
    val modelFile: String,
    val input: TensorSpec,
    val preprocessing: Preprocessing,
    val outputs: List<TensorSpec>,
    /** How maps return onto the image: `resize` or `letterbox-uncrop` (official UMSI un-crop). */
    val restore: String,
    val fidelityCcMin: Double,
    val gate: Double,
    val licence: String,
    val raw: Map<String, Any?>,
) {
    /** Clip model (TinyHD): the input holds [Temporal.frames] frames. */
    val isVideo: Boolean get() = temporal != null

    /** Frames one model input holds (1 for image models). */
    val frames: Int get() = temporal?.frames ?: 1

    /** The output whose role is `saliency`. */
    val saliencyOutput: TensorSpec get() = outputs.first { it.role == "saliency" }

    /** Input (height, width) of the model. */
    val inputHw: IntArray get() = input.hw

    companion object {
        const val SCHEMA = "salsdk-manifest/2"
        const val MAX_DIM = 16384
        const val MAX_FRAMES = 64
        private val FILE_NAME = Regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

        /** Parse manifest JSON text; throws [ManifestError] naming the field when it is not a usable manifest. */
        fun parse(text: String): Manifest {
            val root = try {
                Json.parse(text).obj("manifest")
            } catch (e: Json.ParseError) {
                throw ManifestError("manifest is not valid JSON: ${e.message}")
            } catch (e: IllegalArgumentException) {
                throw ManifestError("manifest: ${e.message}")
            }
            val schema = root["schema"]
            val version = (schema as? String)?.let { Regex("^salsdk-manifest/(\\d+)$").find(it) }?.groupValues?.get(1)?.toIntOrNull()
            if (version == null) throw ManifestError("field schema is $schema, not a salsdk manifest")
            if (version > 2) throw ManifestError("this bundle uses $schema (written by salsdk ${root["salsdk_version"]}); " +
                "this app reads up to $SCHEMA: update the app")
            if (version != 2) throw ManifestError("schema $schema is not $SCHEMA: export the bundle again with salsdk")
            return try {
                fromRoot(root)
            } catch (e: ManifestError) {
                throw e
            } catch (e: RuntimeException) {
                throw ManifestError("malformed manifest: ${e.message}")
            }
        }

        private fun fromRoot(root: Map<String, Any?>): Manifest {
            val model = root["model"].obj("model")
            val fmt = root["format"].obj("format")
            val pre = root["preprocessing"].obj("preprocessing")
            val weights = root["weights"].obj("weights")
            fun floats(key: String, n: Int = 3): FloatArray {
                val l = pre.list(key)
                if (l.size != n) throw ManifestError("field preprocessing.$key has ${l.size} values, not $n")
                return FloatArray(n) { (l[it] as? Number ?: throw ManifestError("field preprocessing.$key[$it] is not a number")).toFloat() }
            }
            val size = floats("size", 2).map { it.toInt() }.toIntArray()
            if (size.any { it < 1 || it > MAX_DIM }) throw ManifestError("field preprocessing.size ${size.toList()} is out of 1..$MAX_DIM")
            val preprocessing = Preprocessing(
                resize = pre.str("resize"),
                size = size,
                channelOrder = pre.str("channel_order"),
                scale = pre.num("scale").toFloat(),
                mean = floats("mean"),
                std = floats("std"),
                interpolation = pre.str("interpolation"),
                padValue = floats("pad_value"),
            )
            if (preprocessing.resize !in setOf("stretch", "letterbox"))
                throw ManifestError("field preprocessing.resize ${preprocessing.resize} is not stretch or letterbox")
            if (preprocessing.channelOrder !in setOf("RGB", "BGR"))
                throw ManifestError("field preprocessing.channel_order ${preprocessing.channelOrder} is not RGB or BGR")
            if (preprocessing.interpolation != "bilinear")
                throw ManifestError("field preprocessing.interpolation ${preprocessing.interpolation} is not supported (bilinear only)")
            val temporal = (root["temporal"] as? Map<*, *>)?.let {
                @Suppress("UNCHECKED_CAST") val t = it as Map<String, Any?>
                val frames = t.num("frames").toInt()
                if (frames < 1 || frames > MAX_FRAMES) throw ManifestError("field temporal.frames $frames is out of 1..$MAX_FRAMES")
                val mode = t.str("mode")
                if (mode !in setOf("miso", "mimo")) throw ManifestError("field temporal.mode $mode is not miso or mimo")
                Temporal(mode, frames)
            }
            val modelFile = root.str("model_file")
            if (!FILE_NAME.matches(modelFile)) throw ManifestError("field model_file '$modelFile' is not a plain file name inside the bundle")
            val outputs = root.list("outputs").map { TensorSpec.parse(it.obj("outputs[]")) }
            if (outputs.none { it.role == "saliency" }) throw ManifestError("field outputs has no output with role 'saliency'")
            val input = TensorSpec.parse(root["input"].obj("input"))
            if (input.dims.any { it < 1 || it > MAX_DIM }) throw ManifestError("field input.shape ${input.shape} is out of bounds")
            val fidelity = root["fidelity"].obj("fidelity")
            val post = root["postprocessing"].obj("postprocessing")
            return Manifest(
                modelName = model.str("name"),
                task = model.str("task"),
                temporal = temporal,
                classNames = model.list("class_names").map { it.toString() },
                trained = weights["trained"] as? Boolean ?: throw ManifestError("field weights.trained is not a boolean"),
                formatKey = fmt.str("key"),
                precision = fmt.str("precision"),
                runtime = fmt.str("runtime"),
                modelFile = modelFile,
                input = input,
                preprocessing = preprocessing,
                outputs = outputs,
                restore = post.str("restore"),
                fidelityCcMin = fidelity.num("cc_min").toDouble(),
                gate = fidelity.num("min_cc").toDouble(),
                licence = (root["licence"] as? String) ?: "",
                raw = root,
            )
        }
    }
}
