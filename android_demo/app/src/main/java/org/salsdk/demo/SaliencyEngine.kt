package org.salsdk.demo

import org.salsdk.core.FloatMap
import org.salsdk.core.PostOptions
import org.salsdk.core.RgbImage
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** How LiteRT executes the model; [key] is the delegate name of the benchmark JSON. */
enum class Delegate(val key: String, val usesThreads: Boolean) {
    CPU("cpu", true),         // LiteRT built-in kernels, XNNPACK off
    XNNPACK("xnnpack", true), // XNNPACK delegate (LiteRT's default CPU path)
    GPU("gpu", false),
    NNAPI("nnapi", false),
}

/** One saliency result: the map at the image's resolution, the overlay and the inference time. */
class Saliency(val map: FloatMap, val overlay: RgbImage, val inferenceMs: Double)

/**
 * A LiteRT interpreter for a [SaliencyBundle] with one [Delegate]. Buffers in and out are built and read by the
 * shared core from the manifest (layout, int8 scale/zero point), so this class only runs the model.
 */
class SaliencyEngine(val bundle: SaliencyBundle, val delegate: Delegate, val threads: Int) : Closeable {
    private var gpu: GpuDelegate? = null
    private var nnapi: NnApiDelegate? = null
    val interpreter: Interpreter
    private val outputs: Map<Int, ByteBuffer>
    private val saliencyIndex: Int

    init {
        val options = Interpreter.Options()
        when (delegate) {
            Delegate.CPU -> options.setNumThreads(threads).setUseXNNPACK(false)
            Delegate.XNNPACK -> options.setNumThreads(threads).setUseXNNPACK(true)
            Delegate.GPU -> {
                val compatibility = CompatibilityList()
                if (!compatibility.isDelegateSupportedOnThisDevice) {
                    compatibility.close()
                    throw UnsupportedOperationException("the GPU delegate is not supported on this device")
                }
                gpu = GpuDelegate(compatibility.bestOptionsForThisDevice).also { options.addDelegate(it) }
                compatibility.close()
            }
            Delegate.NNAPI -> nnapi = NnApiDelegate().also { options.addDelegate(it) }
        }
        try {
            interpreter = Interpreter(bundle.model, options)
        } catch (e: Exception) {
            closeDelegates()
            throw e
        }
        val wanted = bundle.core.output.name.substringBefore(':')
        val count = interpreter.outputTensorCount
        saliencyIndex = (0 until count).firstOrNull { interpreter.getOutputTensor(it).name().substringBefore(':') == wanted }
            ?: (0 until count).first { interpreter.getOutputTensor(it).shape().size >= 4 }
        outputs = (0 until count).associateWith {
            ByteBuffer.allocateDirect(interpreter.getOutputTensor(it).numBytes()).order(ByteOrder.nativeOrder())
        }
        val expected = bundle.core.input.elements * bundle.core.input.bytesPerElement
        check(interpreter.getInputTensor(0).numBytes() == expected) {
            "the model's input tensor (${interpreter.getInputTensor(0).numBytes()} bytes) does not match the manifest ($expected)"
        }
    }

    /** Run the model on an input tensor in the model's layout (float); returns the raw saliency output values. */
    fun run(tensor: FloatArray): FloatArray {
        val input = bundle.core.inputBuffer(tensor)
        outputs.values.forEach { it.rewind() }
        interpreter.runForMultipleInputsOutputs(arrayOf<Any>(input), outputs)
        return bundle.core.outputValues(outputs.getValue(saliencyIndex))
    }

    /**
     * Saliency of one image. Clip models get a clip of this image alone (the window left-padded with it, as for
     * the first frame of a video).
     */
    fun predictImage(image: RgbImage, options: PostOptions = PostOptions()): Saliency {
        val core = bundle.core
        val prepared = core.prepare(image)
        val frames = if (core.manifest.isVideo) core.newWindow().also { it.push(prepared) }.clip() else listOf(prepared)
        val tensor = core.inputTensor(frames)
        val start = System.nanoTime()
        val raw = run(tensor)
        val ms = (System.nanoTime() - start) / 1e6
        val map = core.postprocess(core.readMaps(raw).last(), prepared.geometry, options)
        return Saliency(map, core.overlay(image, map), ms)
    }

    private fun closeDelegates() {
        gpu?.close(); gpu = null
        nnapi?.close(); nnapi = null
    }

    override fun close() {
        interpreter.close()
        closeDelegates()
    }
}
