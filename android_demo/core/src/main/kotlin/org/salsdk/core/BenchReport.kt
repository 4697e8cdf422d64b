package org.salsdk.core

/**
 * The benchmark JSON the demo app writes, in the format `salsdk bench import` reads
 * (`salsdk-android-bench/1`, see `bench/schema.py` ANDROID_DEMO_SCHEMA / ANDROID_DEMO_EXAMPLE).
 */
object BenchReport {
    const val SCHEMA = "salsdk-android-bench/1"

    /** The phone, as the top-level `device` object. */
    data class Device(
        val manufacturer: String,
        val model: String,
        val soc: String,
        val androidSdk: Int,
        val abi: String,
        val cpuCores: Int?,
    ) {
        fun toMap(): Map<String, Any?> = linkedMapOf<String, Any?>(
            "manufacturer" to manufacturer, "model" to model, "soc" to soc, "android_sdk" to androidSdk, "abi" to abi,
        ).also { if (cpuCores != null) it["cpu_cores"] = cpuCores }
    }

    /** One (bundle, delegate, threads) measurement; [delegate] is `cpu`, `xnnpack`, `gpu` or `nnapi`. */
    data class Result(
        val bundle: String,
        val model: String?,
        val format: String?,
        val delegate: String,
        val threads: Int,
        val inputShape: List<Int>,
        val loadMs: Double?,
        val firstRunMs: Double?,
        val warmupRuns: Int,
        val latenciesMs: List<Double>,
        val peakMemoryMb: Double?,
        val fileBytes: Long?,
        val mapsPerRun: Int = 1,
        val status: String = "ok",
        val error: String = "",
        val ccMin: Double? = null,
        val ccMean: Double? = null,
    ) {
        fun toMap(): Map<String, Any?> {
            val m = linkedMapOf<String, Any?>("bundle" to bundle)
            if (model != null) m["model"] = model
            if (format != null) m["format"] = format
            m["delegate"] = delegate
            m["threads"] = threads
            m["input_shape"] = inputShape
            if (loadMs != null) m["load_ms"] = loadMs
            if (firstRunMs != null) m["first_run_ms"] = firstRunMs
            m["warmup_runs"] = warmupRuns
            if (latenciesMs.isNotEmpty()) m["latencies_ms"] = latenciesMs
            if (peakMemoryMb != null) m["peak_memory_mb"] = peakMemoryMb
            if (fileBytes != null) m["file_bytes"] = fileBytes
            m["maps_per_run"] = mapsPerRun
            if (ccMin != null) m["fidelity"] = linkedMapOf("cc_min" to ccMin, "cc_mean" to (ccMean ?: ccMin))
            m["status"] = status
            if (error.isNotEmpty()) m["error"] = error
            return m
        }
    }

    /** The whole file: schema, ISO 8601 [timestamp], app version, device and results. */
    fun toJson(timestamp: String, appVersion: String, device: Device, results: List<Result>): String = Json.write(
        linkedMapOf(
            "schema" to SCHEMA, "timestamp" to timestamp, "app_version" to appVersion,
            "device" to device.toMap(), "results" to results.map { it.toMap() },
        ),
        indent = 2,
    )

    /** Pearson correlation (CC) of two maps of the same size, for the `fidelity` field. */
    fun cc(a: FloatArray, b: FloatArray): Double {
        require(a.size == b.size && a.isNotEmpty()) { "maps differ in size" }
        val ma = a.average(); val mb = b.average()
        var sab = 0.0; var saa = 0.0; var sbb = 0.0
        for (i in a.indices) {
            val x = a[i] - ma; val y = b[i] - mb
            sab += x * y; saa += x * x; sbb += y * y
        }
        return if (saa <= 0 || sbb <= 0) 0.0 else sab / Math.sqrt(saa * sbb)
    }
}
