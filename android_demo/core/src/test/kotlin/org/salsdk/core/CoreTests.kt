package org.salsdk.core

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.zip.GZIPInputStream
import kotlin.math.abs
import kotlin.math.max
import kotlin.system.exitProcess

/**
 * Plain `main` test runner (no JUnit offline): unit checks of the core, then every test-vector folder written
 * by `salsdk export android` (Python SDK results) is reproduced by the Kotlin pipeline within the tolerances its
 * `vectors.json` gives: pre-processed tensor (1/100 of a grey level in the tensor's units, at least 1e-4), int8
 * input within 1 level, post-processed map 1e-3, overlay within 1 grey level.
 *
 * Usage: `CoreTestsKt [vectors-dir] [bench-json-out]`; the vectors folder defaults to `$SALSDK_VECTORS`, then
 * `src/test/resources/vectors`. Prints `kotlin core tests: N passed, M failed` and exits 1 on any failure.
 */
object Report {
    var passed = 0
    var failed = 0

    fun check(name: String, ok: Boolean, detail: String = "") {
        if (ok) passed++ else failed++
        println((if (ok) "PASS " else "FAIL ") + name + if (detail.isNotEmpty()) "  ($detail)" else "")
    }

    fun run(name: String, block: () -> Unit) {
        try {
            block()
        } catch (e: Throwable) {
            check(name, false, "${e::class.simpleName}: ${e.message}")
        }
    }
}

fun readBytes(file: File): ByteArray =
    if (file.name.endsWith(".gz")) GZIPInputStream(file.inputStream()).use { it.readBytes() } else file.readBytes()

fun readFloats(file: File): FloatArray {
    val b = ByteBuffer.wrap(readBytes(file)).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    return FloatArray(b.remaining()).also { b.get(it) }
}

fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
    require(a.size == b.size) { "sizes differ: ${a.size} vs ${b.size}" }
    var m = 0.0
    for (i in a.indices) m = max(m, abs(a[i].toDouble() - b[i].toDouble()))
    return m
}

@Suppress("UNCHECKED_CAST")
fun Any?.o(): Map<String, Any?> = this as Map<String, Any?>
fun Map<String, Any?>.i(key: String): Int = (this[key] as Number).toInt()

fun unitTests() {
    Report.run("json parser") {
        val v = Json.parse("""{"a": [1, -2.5e1, true, null, "x\"\u00e9\n"], "b": {}, "c": []}""").o()
        val a = v["a"] as List<*>
        Report.check("json parser", a[0] == 1L && a[1] == -25.0 && a[2] == true && a[3] == null &&
            a[4] == "x\"\u00e9\n" && (v["b"] as Map<*, *>).isEmpty() && (v["c"] as List<*>).isEmpty())
    }
    Report.run("json round trip") {
        val m = linkedMapOf("s" to "q\"uote", "n" to listOf(1, 2.5), "z" to null, "t" to false)
        Report.check("json round trip", Json.parse(Json.write(m, 2)) == linkedMapOf("s" to "q\"uote", "n" to listOf(1L, 2.5), "z" to null, "t" to false))
    }
    Report.run("json rejects bad input") {
        val bad = listOf("{", "[1,]", "{\"a\" 1}", "tru", "1 2").count {
            try { Json.parse(it); false } catch (e: Json.ParseError) { true }
        }
        Report.check("json rejects bad input", bad == 5, "$bad of 5 rejected")
    }
    Report.run("manifest rejects other schemas") {
        fun refused(text: String, says: String) =
            try { Manifest.parse(text); false } catch (e: ManifestError) { says in (e.message ?: "") }
        Report.check("manifest rejects other schemas", refused("""{"schema": "other/1"}""", "not a salsdk manifest") &&
            refused("""{"schema": "salsdk-manifest/9", "salsdk_version": "9.0.0"}""", "update the app") &&
            refused("""{"schema": "salsdk-manifest/1"}""", "export the bundle again") &&
            refused("""[1, 2]""", "expected a JSON object"))
    }
    Report.run("letterbox geometry") {
        // the official UMSI rule: the fitted side by integer division (300x451 -> 212 rows at top 14, not 213 at 13)
        val g = Preprocess.letterboxGeometry(600, 800, 240, 320)
        val g2 = Preprocess.letterboxGeometry(100, 300, 240, 320)
        val g3 = Preprocess.letterboxGeometry(300, 451, 240, 320)
        Report.check("letterbox geometry", g.content.toList() == listOf(0, 0, 240, 320) &&
            g2.content.toList() == listOf(67, 0, 106, 320) && g3.content.toList() == listOf(14, 0, 212, 320),
            "${g2.content.toList()} ${g3.content.toList()}")
    }
    Report.run("letterbox, BGR, pad and restore (values from salsdk)") {
        // Python: preprocess_image(arange(45).reshape(3,5,3)*5, letterbox 4x4, BGR, scale 1, Caffe means, pad 10,20,30)
        val rgb = RgbImage(5, 3, ByteArray(45) { (it * 5).toByte() })
        val pre = Preprocessing("letterbox", intArrayOf(4, 4), "BGR", 1f, floatArrayOf(103.9f, 116.7f, 123.6f),
            floatArrayOf(1f, 1f, 1f), padValue = floatArrayOf(10f, 20f, 30f))
        val f = Preprocess.prepare(rgb, pre)
        val pad = listOf(-73.900002f, -96.699997f, -113.599998f)
        val expected = (pad + pad + pad + pad + listOf(-73.275002f, -91.074997f, -102.974998f, -54.525002f, -72.324997f,
            -84.224998f, -35.775002f, -53.574997f, -65.474998f, -17.025002f, -34.824997f, -46.724998f, 39.224998f,
            21.425003f, 9.525002f, 57.974998f, 40.175003f, 28.275002f, 76.724998f, 58.925003f, 47.025002f, 95.474998f,
            77.675003f, 65.775002f) + pad + pad + pad + pad).toFloatArray()
        val restored = Postprocess.restoreMap(FloatMap(4, 4, FloatArray(16) { it.toFloat() }), f.geometry)
        // official un-crop: the 4x4 map resized to cover 3x5 (5x5), rows 1..3 kept
        val back = floatArrayOf(2.8f, 3.5f, 4.3f, 5.1f, 5.8f, 6f, 6.7f, 7.5f, 8.3f, 8.999999f, 9.2f, 9.9f, 10.700001f, 11.500001f, 12.2f)
        val d1 = maxAbsDiff(f.hwc, expected); val d2 = maxAbsDiff(restored.values, back)
        Report.check("letterbox, BGR, pad and restore (values from salsdk)", f.geometry.content.toList() == listOf(1, 0, 2, 4) &&
            d1 < 1e-4 && d2 < 1e-5, "diffs %.1e %.1e".format(d1, d2))
    }
    Report.run("bilinear resize") {
        // 1x2 -> 1x4 with half-pixel centres: [0, 10] -> [0, 2.5, 7.5, 10]
        val r = Preprocess.resizeBilinear(floatArrayOf(0f, 10f), 1, 2, 1, 1, 4)
        Report.check("bilinear resize", maxAbsDiff(r, floatArrayOf(0f, 2.5f, 7.5f, 10f)) < 1e-6, r.toList().toString())
    }
    Report.run("int8 quantisation") {
        val q = Quant.quantize(floatArrayOf(0.5f, 1.5f, -0.5f, 1000f, -1000f), 1f, 0)
        val d = Quant.dequantize(byteArrayOf(-128, 0, 127), 0.5f, -128)
        Report.check("int8 quantisation", q.toList() == listOf<Byte>(0, 2, 0, 127, -128) &&
            d.toList() == listOf(0f, 64f, 127.5f), "${q.toList()} ${d.toList()}")
    }
    Report.run("sigmoid activation") {
        // numpy: 1 / (1 + exp(-x)) for x = 0, 2, -2; -50 stays positive (no 1 - 1 cancellation), 200 is 1
        val s = listOf(0f, 2f, -2f, -50f, 200f).map { Quant.sigmoid(it) }
        Report.check("sigmoid activation", s[0] == 0.5f && Math.abs(s[1] - 0.880797f) < 1e-6 &&
            Math.abs(s[2] - 0.119203f) < 1e-6 && s[3] > 0f && s[3] < 1e-21f && s[4] == 1f, s.toString())
        val spec = TensorSpec.parse(mapOf("name" to "saliency_logits", "shape" to listOf(1L, 2L, 2L, 1L),
            "layout" to "NHWC", "dtype" to "int8", "scale" to 0.5, "zero_point" to 0L, "activation" to "sigmoid"))
        val refused = try {
            TensorSpec.parse(mapOf("name" to "saliency", "shape" to listOf(1L), "layout" to "NC", "dtype" to "float32",
                "activation" to "relu")); false
        } catch (e: ManifestError) { "applies 'sigmoid' only" in (e.message ?: "") }
        Report.check("manifest activations", spec.activation == "sigmoid" && refused)
    }
    Report.run("jet colours") {
        // 127.5 rounds half to even -> 128, as numpy
        Report.check("jet colours", Postprocess.jet(0f) == 0x000080 && Postprocess.jet(0.5f) == 0x80FF80 &&
            Postprocess.jet(1f) == 0x800000, Integer.toHexString(Postprocess.jet(0.5f)))
    }
    Report.run("clip window") {
        val g = Geometry(2, 2, 2, 2, intArrayOf(0, 0, 2, 2))
        val w = ClipWindow(3)
        val f = (0 until 4).map { PreparedFrame(FloatArray(12) { _ -> it.toFloat() }, 2, 2, g) }
        w.push(f[0]); w.push(f[1])
        val first = w.clip().map { it.hwc[0] }
        w.push(f[2]); w.push(f[3])
        val later = w.clip().map { it.hwc[0] }
        Report.check("clip window", first == listOf(0f, 0f, 1f) && later == listOf(1f, 2f, 3f), "$first $later")
    }
}

/** The official letterbox fit and un-crop (salsdk `geometry`) for the thousands of sizes in `letterbox.json`. */
fun letterboxTests(root: File) {
    Report.run("letterbox vectors") {
        val cases = (Json.parse(File(root, "letterbox.json").readText()).o()["cases"] as List<*>).map { it.o() }
        fun ints(c: Map<String, Any?>, key: String) = (c[key] as List<*>).map { (it as Number).toInt() }
        var wrong = 0
        for (c in cases) {
            val (h, w) = ints(c, "image"); val (rows, cols) = ints(c, "input"); val (mh, mw) = ints(c, "map")
            val fit = Preprocess.letterboxGeometry(h, w, rows, cols).content.toList()
            val uncrop = Letterbox.uncrop(mh, mw, h, w).toList()
            if (fit != ints(c, "content") || uncrop != ints(c, "uncrop")) wrong++
        }
        Report.check("letterbox vectors: fit and un-crop of ${cases.size} sizes", cases.size >= 1000 && wrong == 0, "$wrong differ")
    }
}

/** Every exported manifest is valid against the JSON Schema that ships beside the vectors; edits break it. */
fun schemaTests(root: File, manifests: List<File>) {
    Report.run("manifest JSON Schema") {
        val schemaFile = root.listFiles { f -> f.name.matches(Regex("salsdk-manifest-\\d+\\.schema\\.json")) }!!.single()
        val checker = SchemaCheck(Json.parse(schemaFile.readText()).o())
        for (file in manifests) {
            val doc = Json.parse(file.readText()).o()
            val ok = try { checker.validate(doc); "" } catch (e: SchemaCheck.Violation) { e.message ?: "invalid" }
            Report.check("${file.parentFile.name}: manifest valid against ${schemaFile.name}", ok.isEmpty(), ok)
            val edited = doc.toMutableMap()
            edited["temporal"] = mapOf("mode" to "miso", "frames" to 1_000_000_000L)
            edited["model_file"] = "../../etc/passwd"
            val refused = try { checker.validate(edited); false } catch (e: SchemaCheck.Violation) { true }
            val parsed = try { Manifest.parse(Json.write(edited)); false } catch (e: ManifestError) { true }
            Report.check("${file.parentFile.name}: edited manifest refused by the schema and the parser", refused && parsed)
        }
    }
}

fun vectorTests(root: File) {
    val folders = root.listFiles { f -> f.isDirectory && File(f, "vectors.json").isFile }?.sortedBy { it.name } ?: emptyList()
    Report.check("vector folders found in $root", folders.isNotEmpty(), "${folders.size}")
    letterboxTests(root)
    schemaTests(root, folders.map { File(it, "manifest.json") })
    for (dir in folders) {
        val core = try {
            SaliencyCore.fromManifestText(File(dir, "manifest.json").readText())
        } catch (e: Exception) {
            Report.check("${dir.name}: manifest", false, e.message ?: ""); continue
        }
        val spec = Json.parse(File(dir, "vectors.json").readText()).o()
        for (case in (spec["cases"] as List<*>).map { it.o() }) {
            val label = "${dir.name}/${case["name"]}"
            Report.run("$label: pipeline") { runCase(dir, core, case, label, spec["tolerances"].o()) }
        }
    }
}

fun runCase(dir: File, core: SaliencyCore, case: Map<String, Any?>, label: String, tolerances: Map<String, Any?>) {
    val inputTolerance = (tolerances["input"] as Number).toDouble()
    val mapTolerance = (tolerances["map"] as Number).toDouble()
    val overlayTolerance = (tolerances["overlay"] as Number).toInt()
    val images = (case["frames"] as List<*>).map { it.o() }.map {
        RgbImage(it.i("width"), it.i("height"), readBytes(File(dir, it["file"] as String)))
    }
    // pre-processing: every frame into the clip window (clip models) or the single image
    val prepared = images.map { core.prepare(it) }
    val frames = if (core.manifest.isVideo) core.newWindow().also { w -> prepared.forEach { w.push(it) } }.clip() else prepared
    val tensor = core.inputTensor(frames)
    val input = case["input"].o()
    val expected = readFloats(File(dir, input["file"] as String))
    val stored = (input["frames_stored"] as List<*>?)?.map { (it as Number).toInt() }
    val actual = if (stored == null) tensor else {
        require(core.input.layout == "NTHWC") { "partial clip vectors need an NTHWC input" }
        val per = tensor.size / frames.size
        FloatArray(stored.size * per).also { out -> stored.forEachIndexed { k, t -> System.arraycopy(tensor, t * per, out, k * per, per) } }
    }
    val dIn = maxAbsDiff(actual, expected)
    Report.check("$label: pre-processed tensor ${core.input.layout}${stored?.let { " frames $it" } ?: ""}", dIn <= inputTolerance, "max abs diff %.2e".format(dIn))
    (case["input_q"] as Map<*, *>?)?.let { q ->
        val exp = readBytes(File(dir, q["file"] as String))
        val got = core.quantizeInput(tensor)!!
        var worst = 0; var off = 0
        for (i in got.indices) { val d = abs(got[i] - exp[i]); worst = max(worst, d); if (d != 0) off++ }
        Report.check("$label: ${core.input.dtype} input (scale ${core.input.scale}, zero point ${core.input.zeroPoint})",
            got.size == exp.size && worst <= 1, "max diff $worst levels, $off of ${got.size} differ")
    }
    // the model's raw output buffer -> maps -> post-processed maps at the original resolution
    val out = case["output"].o()
    val raw = ByteBuffer.wrap(readBytes(File(dir, out["file"] as String))).order(ByteOrder.LITTLE_ENDIAN)
    val maps = core.readMaps(core.outputValues(raw))
    val rawMap = maps[(out["map_index"] as Number?)?.toInt() ?: 0]
    val geometry = prepared.last().geometry
    (case["geometry"] as Map<*, *>?)?.let { g ->
        val want = (g["content"] as List<*>).map { (it as Number).toInt() }
        Report.check("$label: geometry ${geometry.content.toList()}", geometry.content.toList() == want && geometry.letterbox == g["letterbox"],
            "salsdk: $want")
    }
    val post = (case["maps"] as List<*>).map { it.o() }.map { m ->
        val options = PostOptions(smooth = (m["smooth"] as Number).toDouble(), minMax = m["min_max"] as Boolean)
        val got = core.postprocess(rawMap, geometry, options)
        val exp = readFloats(File(dir, m["file"] as String))
        val d = maxAbsDiff(got.values, exp)
        Report.check("$label: map ${got.height}x${got.width} $options", got.height == m.i("height") && got.width == m.i("width") && d <= mapTolerance,
            "max abs diff %.2e".format(d))
        got
    }
    val ov = case["overlay"].o()
    val image = images[ov.i("frame")]
    val got = core.overlay(image, post[ov.i("map")], (ov["alpha"] as Number).toFloat())
    val exp = readBytes(File(dir, ov["file"] as String))
    var worst = 0
    for (i in exp.indices) worst = max(worst, abs((got.pixels[i].toInt() and 0xFF) - (exp[i].toInt() and 0xFF)))
    Report.check("$label: overlay", got.pixels.size == exp.size && worst <= overlayTolerance, "max diff $worst grey levels")
}

fun benchReport(out: File) {
    val json = BenchReport.toJson(
        "2026-01-01T00:00:00Z", "0.1.0",
        BenchReport.Device("Google", "Pixel 7", "Google Tensor G2", 34, "arm64-v8a", 8),
        listOf(
            BenchReport.Result("UniSal-tflite-int8", "UniSal", "tflite-int8", "xnnpack", 4, listOf(1, 96, 128, 3),
                85.2, 61.0, 3, listOf(41.2, 40.8, 42.0, 40.9), 96.5, 11610000L, ccMin = 0.993, ccMean = 0.995),
            BenchReport.Result("TinyHD-S-x0.25-tflite-fp32", null, null, "gpu", 1, listOf(1, 16, 192, 256, 3),
                950.0, 30.0, 3, emptyList(), null, null, status = "failed", error = "GPU delegate unavailable"),
        ),
    )
    out.writeText(json)
    Report.check("bench report JSON written to $out", Json.parse(json).o()["schema"] == BenchReport.SCHEMA)
}

fun main(args: Array<String>) {
    val root = File(args.getOrNull(0) ?: System.getenv("SALSDK_VECTORS") ?: "src/test/resources/vectors")
    unitTests()
    vectorTests(root)
    args.getOrNull(1)?.let { benchReport(File(it)) }
    println("kotlin core tests: ${Report.passed} passed, ${Report.failed} failed")
    exitProcess(if (Report.failed == 0) 0 else 1)
}
