package org.salsdk.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import org.salsdk.core.RgbImage
import kotlin.math.max
import kotlin.math.roundToInt

/** Conversions between Android bitmaps and the core's 8-bit RGB images. */
object Images {
    /** ARGB bitmap -> RGB bytes (alpha dropped; decoded photos are opaque). */
    fun toRgb(bitmap: Bitmap): RgbImage {
        val source = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
        val w = source.width
        val h = source.height
        val pixels = IntArray(w * h)
        source.getPixels(pixels, 0, w, 0, 0, w, h)
        val rgb = ByteArray(w * h * 3)
        for (i in pixels.indices) {
            val p = pixels[i]
            rgb[i * 3] = (p shr 16).toByte()
            rgb[i * 3 + 1] = (p shr 8).toByte()
            rgb[i * 3 + 2] = p.toByte()
        }
        return RgbImage(w, h, rgb)
    }

    /** RGB bytes -> an opaque ARGB bitmap. */
    fun toBitmap(image: RgbImage): Bitmap {
        val colors = IntArray(image.width * image.height) {
            val r = image.pixels[it * 3].toInt() and 0xFF
            val g = image.pixels[it * 3 + 1].toInt() and 0xFF
            val b = image.pixels[it * 3 + 2].toInt() and 0xFF
            (0xFF shl 24) or (r shl 16) or (g shl 8) or b
        }
        return Bitmap.createBitmap(colors, image.width, image.height, Bitmap.Config.ARGB_8888)
    }

    /**
     * Decode a gallery image (EXIF orientation applied by ImageDecoder), its longer side capped at [maxSide]
     * pixels to bound memory; the saliency map and overlay are computed at this resolution.
     */
    fun decode(resolver: ContentResolver, uri: Uri, maxSide: Int = 1280): Bitmap =
        ImageDecoder.decodeBitmap(ImageDecoder.createSource(resolver, uri)) { decoder, info, _ ->
            decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            val w = info.size.width
            val h = info.size.height
            if (max(w, h) > maxSide) {
                val scale = maxSide.toFloat() / max(w, h)
                decoder.setTargetSize(max(1, (w * scale).roundToInt()), max(1, (h * scale).roundToInt()))
            }
        }

    /** Rotate a camera frame upright and cap its longer side at [maxSide]. */
    fun upright(bitmap: Bitmap, rotationDegrees: Int, maxSide: Int): Bitmap {
        val scale = minOf(1f, maxSide.toFloat() / max(bitmap.width, bitmap.height))
        if (rotationDegrees == 0 && scale == 1f) return bitmap
        val matrix = Matrix().apply { postScale(scale, scale); postRotate(rotationDegrees.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true)
    }
}
