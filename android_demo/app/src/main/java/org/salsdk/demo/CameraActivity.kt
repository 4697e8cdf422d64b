package org.salsdk.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.widget.ImageView
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import org.salsdk.core.ClipWindow
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Live camera frames -> saliency overlay. Image models run on every frame; clip models (TinyHD) keep the last
 * 16 pre-processed frames in a [ClipWindow] (left-padded with the first frame, as salsdk's VideoStream) and run
 * the window at every frame: MISO gives the map of the newest frame, MIMO's last map is the newest frame's.
 */
class CameraActivity : ComponentActivity() {
    private val analyzer: ExecutorService = Executors.newSingleThreadExecutor()
    private var engine: SaliencyEngine? = null
    private var window: ClipWindow? = null
    private lateinit var preview: PreviewView
    private lateinit var overlay: ImageView
    private lateinit var status: TextView
    private var lastFrameNs = 0L

    private val permission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else status.text = "camera permission denied"
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_camera)
        preview = findViewById(R.id.preview)
        overlay = findViewById(R.id.overlay)
        status = findViewById(R.id.status)
        analyzer.execute {
            try {
                val bundle = SaliencyBundle.load(this)
                engine = SaliencyEngine(bundle, Delegate.XNNPACK, MainActivity.DEFAULT_THREADS)
                if (bundle.core.manifest.isVideo) window = bundle.core.newWindow()
                runOnUiThread { status.text = bundle.name }
            } catch (e: Exception) {
                runOnUiThread { status.text = "cannot load the bundle: ${e.message}" }
            }
        }
        if (checkSelfPermission(Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera()
        else permission.launch(Manifest.permission.CAMERA)
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analyzer) { frame -> analyze(frame) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, analysis)
        }, mainExecutor)
    }

    private fun analyze(frame: ImageProxy) {
        val current = engine
        if (current == null) {
            frame.close()
            return
        }
        val bitmap = try {
            Images.upright(frame.toBitmap(), frame.imageInfo.rotationDegrees, MAX_SIDE)
        } finally {
            frame.close()
        }
        try {
            val core = current.bundle.core
            val image = Images.toRgb(bitmap)
            val prepared = core.prepare(image)
            val frames = window?.let { w ->
                if (w.count > 0 && w.clip().last().geometry != prepared.geometry) w.clear() // rotation changed
                w.push(prepared)
                w.clip()
            } ?: listOf(prepared)
            val start = System.nanoTime()
            val raw = current.run(core.inputTensor(frames))
            val inferenceMs = (System.nanoTime() - start) / 1e6
            val map = core.postprocess(core.readMaps(raw).last(), prepared.geometry)
            val shown = Images.toBitmap(core.overlay(image, map))
            val now = System.nanoTime()
            val fps = if (lastFrameNs > 0) 1e9 / (now - lastFrameNs) else 0.0
            lastFrameNs = now
            val filled = window?.let { " window ${it.count}/${it.size}" } ?: ""
            runOnUiThread {
                overlay.setImageBitmap(shown)
                status.text = "%s  %.1f ms  %.1f fps%s".format(current.bundle.name, inferenceMs, fps, filled)
            }
        } catch (e: Exception) {
            runOnUiThread { status.text = "failed: ${e.message}" }
        }
    }

    override fun onDestroy() {
        analyzer.execute { engine?.close(); engine = null }
        analyzer.shutdown()
        super.onDestroy()
    }

    companion object {
        /** Longer side of the analysed frames (the models take at most 480x640). */
        const val MAX_SIDE = 640
    }
}
