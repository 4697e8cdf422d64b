package org.salsdk.demo

import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.widget.Button
import android.widget.CheckBox
import android.widget.EditText
import android.widget.TextView
import androidx.activity.ComponentActivity
import org.salsdk.core.BenchReport
import org.salsdk.core.RgbImage
import java.io.File
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone
import java.util.concurrent.Executors

/**
 * Benchmark of the bundle on this phone: for each chosen delegate (CPU built-in kernels and XNNPACK at each
 * thread count, GPU delegate, NNAPI) it measures interpreter creation, the first run, [WARMUP] warm-up runs and
 * the timed runs, and the peak memory of the app during the measurement. Results are written as JSON in the
 * `salsdk-android-bench/1` format (`salsdk bench import <file> --bundles <bundle>` reads it) to the app's
 * external files folder (`adb pull /sdcard/Android/data/org.salsdk.demo/files/`).
 */
class BenchmarkActivity : ComponentActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private lateinit var log: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_benchmark)
        log = findViewById(R.id.log)
        val run = findViewById<Button>(R.id.run)
        run.setOnClickListener {
            val delegates = listOf(R.id.cpu to Delegate.CPU, R.id.xnnpack to Delegate.XNNPACK, R.id.gpu to Delegate.GPU,
                R.id.nnapi to Delegate.NNAPI).filter { findViewById<CheckBox>(it.first).isChecked }.map { it.second }
            val threads = findViewById<EditText>(R.id.threads).text.split(',', ' ')
                .mapNotNull { it.trim().toIntOrNull() }.filter { it > 0 }.ifEmpty { listOf(1) }
            val runs = findViewById<EditText>(R.id.runs).text.toString().toIntOrNull()?.coerceIn(1, 1000) ?: 30
            run.isEnabled = false
            log.text = ""
            worker.execute {
                try {
                    benchmark(delegates, threads, runs)
                } catch (e: Exception) {
                    say("failed: ${e.message}")
                } finally {
                    runOnUiThread { run.isEnabled = true }
                }
            }
        }
    }

    private fun say(line: String) = runOnUiThread { log.append(line + "\n") }

    private fun benchmark(delegates: List<Delegate>, threadCounts: List<Int>, runs: Int) {
        val bundle = SaliencyBundle.load(this)
        val core = bundle.core
        val manifest = core.manifest
        say(bundle.describe())
        // a deterministic, textured test image at the model's input size, pre-processed by the core
        val (h, w) = core.inputHw.let { it[0] to it[1] }
        val image = RgbImage(w, h, ByteArray(w * h * 3) { i ->
            val p = i / 3; val y = p / w; val x = p % w
            (((x * 255) / w + (i % 3) * 60 + ((x / 16 + y / 16) % 2) * 50) and 0xFF).toByte()
        })
        val prepared = core.prepare(image)
        val tensor = core.inputTensor(List(manifest.frames) { prepared })
        val mapsPerRun = if (manifest.temporal?.mode == "mimo") manifest.frames else 1
        val results = ArrayList<BenchReport.Result>()
        for (delegate in delegates) {
            for (threads in if (delegate.usesThreads) threadCounts else listOf(1)) {
                val label = "${delegate.key}" + if (delegate.usesThreads) " x$threads" else ""
                results += measure(bundle, delegate, threads, tensor, runs, mapsPerRun).also { r ->
                    say(if (r.status == "ok") "%-12s load %.0f ms, first %.1f ms, median %.2f ms, peak %.0f MB".format(
                        label, r.loadMs, r.firstRunMs, r.latenciesMs.sorted()[r.latenciesMs.size / 2], r.peakMemoryMb ?: 0.0)
                    else "%-12s %s: %s".format(label, r.status, r.error))
                }
            }
        }
        val json = BenchReport.toJson(isoNow(), BuildInfo.VERSION, device(), results)
        val dir = getExternalFilesDir(null) ?: filesDir
        val file = File(dir, "salsdk-bench-${bundle.name}-${System.currentTimeMillis()}.json")
        file.writeText(json)
        say("\nwritten: ${file.absolutePath}\nadb pull ${file.absolutePath}\n" +
            "salsdk bench import ${file.name} --bundles <folder holding ${bundle.name}>")
    }

    private fun measure(bundle: SaliencyBundle, delegate: Delegate, threads: Int, tensor: FloatArray, runs: Int,
                        mapsPerRun: Int): BenchReport.Result {
        val manifest = bundle.core.manifest
        fun result(status: String = "ok", error: String = "", loadMs: Double? = null, firstMs: Double? = null,
                   latencies: List<Double> = emptyList(), peak: Double? = null) = BenchReport.Result(
            bundle = bundle.name, model = manifest.modelName, format = manifest.formatKey, delegate = delegate.key,
            threads = threads, inputShape = manifest.input.dims.toList(), loadMs = loadMs, firstRunMs = firstMs,
            warmupRuns = if (status == "ok") WARMUP else 0, latenciesMs = latencies, peakMemoryMb = peak,
            fileBytes = bundle.fileBytes, mapsPerRun = mapsPerRun, status = status, error = error)
        Memory.resetPeak()
        val t0 = SystemClock.elapsedRealtimeNanos()
        val engine = try {
            SaliencyEngine(bundle, delegate, threads)
        } catch (e: Throwable) {
            return result("failed", "${e::class.java.simpleName}: ${e.message}")
        }
        engine.use {
            val loadMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
            return try {
                val t1 = SystemClock.elapsedRealtimeNanos()
                it.run(tensor)
                val firstMs = (SystemClock.elapsedRealtimeNanos() - t1) / 1e6
                repeat(WARMUP) { _ -> it.run(tensor) }
                val latencies = List(runs) { _ ->
                    val s = SystemClock.elapsedRealtimeNanos()
                    it.run(tensor)
                    (SystemClock.elapsedRealtimeNanos() - s) / 1e6
                }
                result(loadMs = loadMs, firstMs = firstMs, latencies = latencies, peak = Memory.peakMb())
            } catch (e: Throwable) {
                result("failed", "${e::class.java.simpleName}: ${e.message}", loadMs)
            }
        }
    }

    private fun device(): BenchReport.Device = BenchReport.Device(
        manufacturer = Build.MANUFACTURER, model = Build.MODEL,
        soc = if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE,
        androidSdk = Build.VERSION.SDK_INT, abi = Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown",
        cpuCores = Runtime.getRuntime().availableProcessors(),
    )

    private fun isoNow(): String = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.US)
        .apply { timeZone = TimeZone.getTimeZone("UTC") }.format(Date())

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        const val WARMUP = 3
    }
}

/** The app's version, as the benchmark JSON reports it. */
object BuildInfo {
    const val VERSION = "0.1.0"
}

/** Peak resident memory of the app process (`VmHWM`), reset before each measurement where the kernel allows. */
object Memory {
    /** Reset the high-water mark (`echo 5 > /proc/self/clear_refs`); ignored where not permitted. */
    fun resetPeak() {
        try {
            File("/proc/self/clear_refs").writeText("5")
        } catch (_: Exception) {
        }
    }

    /** Peak RSS in MB since the last reset (or since the process started). */
    fun peakMb(): Double? = try {
        File("/proc/self/status").readLines().firstOrNull { it.startsWith("VmHWM:") }
            ?.split(Regex("\\s+"))?.getOrNull(1)?.toDouble()?.div(1024.0)
    } catch (_: Exception) {
        null
    }
}
