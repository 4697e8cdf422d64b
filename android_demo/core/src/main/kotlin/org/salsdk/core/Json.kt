package org.salsdk.core

/**
 * A tiny JSON reader and writer (no external libraries), enough for salsdk manifests and benchmark files.
 *
 * Parsed values are: `Map<String, Any?>` (insertion-ordered), `List<Any?>`, `String`, `Double`, `Long`
 * (integers without fraction/exponent that fit), `Boolean` and `null`.
 */
object Json {
    class ParseError(message: String) : IllegalArgumentException(message)

    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val value = p.value()
        p.skipWs()
        if (p.pos != text.length) throw ParseError("trailing characters at ${p.pos}")
        return value
    }

    private class Parser(val s: String) {
        var pos = 0

        fun skipWs() {
            while (pos < s.length && s[pos].isWhitespace()) pos++
        }

        fun fail(what: String): Nothing = throw ParseError("$what at offset $pos")

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end of JSON")
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) num() else if (s.startsWith("NaN", pos)) {
                    pos += 3; Double.NaN
                } else if (s.startsWith("Infinity", pos)) {
                    pos += 8; Double.POSITIVE_INFINITY
                } else fail("unexpected character '$c'")
            }
        }

        fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("expected $word")
            pos += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == '}') { pos++; return out }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') fail("expected a key")
                val key = str()
                skipWs()
                if (pos >= s.length || s[pos] != ':') fail("expected ':'")
                pos++
                skipWs()
                out[key] = value()
                skipWs()
                if (pos >= s.length) fail("unterminated object")
                when (s[pos]) {
                    ',' -> pos++
                    '}' -> { pos++; return out }
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == ']') { pos++; return out }
            while (true) {
                skipWs()
                out.add(value())
                skipWs()
                if (pos >= s.length) fail("unterminated array")
                when (s[pos]) {
                    ',' -> pos++
                    ']' -> { pos++; return out }
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun str(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> {
                        if (pos >= s.length) fail("bad escape")
                        when (val e = s[pos++]) {
                            '"' -> sb.append('"'); '\\' -> sb.append('\\'); '/' -> sb.append('/')
                            'b' -> sb.append('\b'); 'f' -> sb.append('\u000C'); 'n' -> sb.append('\n')
                            'r' -> sb.append('\r'); 't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("bad \\u escape")
                                sb.append(s.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        fun num(): Any {
            val start = pos
            if (s[pos] == '-') pos++
            if (s.startsWith("Infinity", pos)) { pos += 8; return Double.NEGATIVE_INFINITY }
            var integral = true
            while (pos < s.length) {
                val c = s[pos]
                if (c.isDigit()) pos++
                else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { integral = false; pos++ }
                else break
            }
            val text = s.substring(start, pos)
            if (integral) text.toLongOrNull()?.let { return it }
            return text.toDoubleOrNull() ?: fail("bad number '$text'")
        }
    }

    /** Serialise maps, lists, strings, numbers, booleans and null (pretty-printed with [indent] > 0). */
    fun write(value: Any?, indent: Int = 0): String = StringBuilder().also { writeTo(it, value, indent, 0) }.toString()

    private fun writeTo(sb: StringBuilder, v: Any?, indent: Int, level: Int) {
        fun newline(l: Int) { if (indent > 0) { sb.append('\n'); repeat(indent * l) { sb.append(' ') } } }
        when (v) {
            null -> sb.append("null")
            is String -> quote(sb, v)
            is Boolean -> sb.append(v)
            is Float -> sb.append(if (v.isFinite()) v.toString() else "null")
            is Double -> sb.append(if (v.isFinite()) v.toString() else "null")
            is Number -> sb.append(v.toString())
            is Map<*, *> -> {
                sb.append('{')
                var first = true
                for ((k, x) in v) {
                    if (!first) sb.append(',')
                    first = false
                    newline(level + 1)
                    quote(sb, k.toString())
                    sb.append(if (indent > 0) ": " else ":")
                    writeTo(sb, x, indent, level + 1)
                }
                if (!first) newline(level)
                sb.append('}')
            }
            is Iterable<*> -> {
                sb.append('[')
                var first = true
                for (x in v) {
                    if (!first) sb.append(if (indent > 0) ", " else ",")
                    first = false
                    writeTo(sb, x, indent, level + 1)
                }
                sb.append(']')
            }
            is IntArray -> writeTo(sb, v.toList(), indent, level)
            is FloatArray -> writeTo(sb, v.toList(), indent, level)
            is DoubleArray -> writeTo(sb, v.toList(), indent, level)
            else -> quote(sb, v.toString())
        }
    }

    private fun quote(sb: StringBuilder, s: String) {
        sb.append('"')
        for (c in s) {
            when {
                c == '"' -> sb.append("\\\"")
                c == '\\' -> sb.append("\\\\")
                c == '\n' -> sb.append("\\n")
                c == '\r' -> sb.append("\\r")
                c == '\t' -> sb.append("\\t")
                c < ' ' -> sb.append(String.format("\\u%04x", c.code))
                else -> sb.append(c)
            }
        }
        sb.append('"')
    }
}

/** Typed accessors over parsed JSON objects. */
@Suppress("UNCHECKED_CAST")
internal fun Any?.obj(what: String): Map<String, Any?> =
    this as? Map<String, Any?> ?: throw ManifestError("$what: expected a JSON object")

internal fun Map<String, Any?>.str(key: String): String =
    this[key] as? String ?: throw ManifestError("'$key' missing or not a string")

internal fun Map<String, Any?>.strOrNull(key: String): String? = this[key] as? String

internal fun Map<String, Any?>.num(key: String): Double =
    (this[key] as? Number)?.toDouble() ?: throw ManifestError("'$key' missing or not a number")

internal fun Map<String, Any?>.numOrNull(key: String): Double? = (this[key] as? Number)?.toDouble()

internal fun Map<String, Any?>.list(key: String): List<Any?> =
    this[key] as? List<Any?> ?: throw ManifestError("'$key' missing or not a list")

internal fun Map<String, Any?>.listOrNull(key: String): List<Any?>? = this[key] as? List<Any?>
