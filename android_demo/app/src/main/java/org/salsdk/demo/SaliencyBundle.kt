package org.salsdk.demo

import android.content.Context
import org.salsdk.core.SaliencyCore
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.security.MessageDigest

/**
 * The bundle shipped in `assets/bundle/` (copied there by `salsdk export android`): its manifest, parsed by the
 * shared core (all pre/post-processing comes from it), and the memory-mapped model file the manifest names,
 * checked against the SHA-256 the manifest pins.
 */
class SaliencyBundle(val core: SaliencyCore, val model: MappedByteBuffer, val fileBytes: Long) {
    /** `<Model>-<format>`, the bundle folder name `salsdk bench import` expects. */
    val name: String get() = "${core.manifest.modelName}-${core.manifest.formatKey}"

    /** One-paragraph description for the UI. */
    fun describe(): String {
        val m = core.manifest
        val shape = m.input.dims.joinToString("x")
        val trained = if (m.trained) "" else "  UNTRAINED (random init)"
        val fidelity = "  fidelity CC min %.4f (gate %.2f)".format(m.fidelityCcMin, m.gate)
        return "$name: input ${m.input.layout} $shape ${m.input.dtype}, ${m.preprocessing.resize} " +
            "${m.preprocessing.channelOrder}$fidelity$trained\nlicence: ${m.licence}"
    }

    companion object {
        const val ASSET_DIR = "bundle"

        /** Load and verify the bundle from the app's assets. */
        fun load(context: Context): SaliencyBundle {
            val assets = context.assets
            val text = assets.open("$ASSET_DIR/manifest.json").bufferedReader().use { it.readText() }
            val core = SaliencyCore.fromManifestText(text)
            require(core.manifest.runtime == "litert") {
                "bundle format ${core.manifest.formatKey} runs on ${core.manifest.runtime}; this app runs TFLite bundles"
            }
            val fd = assets.openFd("$ASSET_DIR/${core.manifest.modelFile}")
            val model = fd.use { d ->
                FileInputStream(d.fileDescriptor).use { stream ->
                    stream.channel.map(FileChannel.MapMode.READ_ONLY, d.startOffset, d.declaredLength)
                }
            }
            verify(core, model)
            return SaliencyBundle(core, model, model.capacity().toLong())
        }

        /** Refuse a model file whose SHA-256 differs from the one the manifest pins. */
        private fun verify(core: SaliencyCore, model: MappedByteBuffer) {
            val files = core.manifest.raw["files"] as? Map<*, *> ?: return
            val pinned = (files[core.manifest.modelFile] as? Map<*, *>)?.get("sha256") as? String ?: return
            val digest = MessageDigest.getInstance("SHA-256").apply { update(model.duplicate()) }.digest()
            val actual = digest.joinToString("") { "%02x".format(it) }
            check(actual == pinned) {
                "${core.manifest.modelFile} has SHA-256 $actual but the manifest pins $pinned: export the bundle again"
            }
        }
    }
}
