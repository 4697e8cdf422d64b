package org.salsdk.demo

import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.contract.ActivityResultContracts
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Gallery image -> saliency overlay. The bundle (assets/bundle) is loaded once; its manifest, read by the shared
 * core, decides every pre/post-processing step. Buttons open the live camera and the benchmark screens.
 */
class MainActivity : ComponentActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var engine: SaliencyEngine? = null
    private lateinit var status: TextView
    private lateinit var overlay: ImageView

    private val pick = registerForActivityResult(ActivityResultContracts.GetContent()) { uri: Uri? ->
        if (uri != null) predict(uri)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        overlay = findViewById(R.id.overlay)
        findViewById<Button>(R.id.pick).setOnClickListener { pick.launch("image/*") }
        findViewById<Button>(R.id.camera).setOnClickListener { startActivity(Intent(this, CameraActivity::class.java)) }
        findViewById<Button>(R.id.benchmark).setOnClickListener {
            startActivity(Intent(this, BenchmarkActivity::class.java))
        }
        status.text = "loading bundle…"
        worker.execute {
            val text = try {
                val bundle = SaliencyBundle.load(this)
                engine = SaliencyEngine(bundle, Delegate.XNNPACK, DEFAULT_THREADS)
                bundle.describe() + "\nPick an image."
            } catch (e: Exception) {
                "cannot load the bundle: ${e.message}"
            }
            runOnUiThread { status.text = text }
        }
    }

    private fun predict(uri: Uri) {
        status.text = "running…"
        worker.execute {
            val current = engine
            if (current == null) {
                runOnUiThread { status.text = "no bundle loaded" }
                return@execute
            }
            try {
                val bitmap = Images.decode(contentResolver, uri)
                val image = Images.toRgb(bitmap)
                val start = System.nanoTime()
                val result = current.predictImage(image)
                val totalMs = (System.nanoTime() - start) / 1e6
                val shown = Images.toBitmap(result.overlay)
                val note = if (current.bundle.core.manifest.isVideo) " (clip model: a still clip of this image)" else ""
                runOnUiThread {
                    overlay.setImageBitmap(shown)
                    status.text = "%s\n%dx%d: inference %.1f ms, with pre/post-processing %.1f ms%s".format(
                        current.bundle.name, image.width, image.height, result.inferenceMs, totalMs, note)
                }
            } catch (e: Exception) {
                runOnUiThread { status.text = "failed: ${e.message}" }
            }
        }
    }

    override fun onDestroy() {
        worker.execute { engine?.close(); engine = null }
        worker.shutdown()
        super.onDestroy()
    }

    companion object {
        const val DEFAULT_THREADS = 4
    }
}
