package org.salsdk.core

/**
 * The subset of JSON Schema that salsdk's manifest schema uses (the same keywords as salsdk `schema_check`):
 * type, properties, required, additionalProperties, propertyNames, min/maxProperties, items, min/maxItems, enum,
 * const, minimum, maximum, exclusiveMinimum, min/maxLength, pattern, `$defs` and local `$ref`. Any other keyword
 * in the schema is an error, so the schema cannot ask for more than is checked.
 */
class SchemaCheck(private val root: Map<String, Any?>) {
    class Violation(val path: String, message: String) : Exception("${path.ifEmpty { "(top level)" }}: $message")

    private val keywords = setOf("\$schema", "\$id", "\$defs", "\$ref", "title", "description", "type", "properties",
        "required", "additionalProperties", "propertyNames", "minProperties", "maxProperties", "items", "minItems",
        "maxItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "pattern")

    /** Throws [Violation] at the first part of [document] that breaks the schema. */
    fun validate(document: Any?) = check(document, root, "")

    private fun isNumber(v: Any?) = (v is Long) || (v is Double && v.isFinite())

    private fun typeOk(v: Any?, name: String): Boolean = when (name) {
        "object" -> v is Map<*, *>
        "array" -> v is List<*>
        "string" -> v is String
        "boolean" -> v is Boolean
        "null" -> v == null
        "integer" -> v is Long
        "number" -> isNumber(v)
        else -> throw IllegalArgumentException("unknown JSON Schema type $name")
    }

    private fun num(v: Any?): Double = (v as Number).toDouble()

    /** JSON equality: 1 and 1.0 are the same number. */
    private fun same(a: Any?, b: Any?): Boolean =
        if (isNumber(a) && isNumber(b)) num(a) == num(b) else a == b

    @Suppress("UNCHECKED_CAST")
    private fun check(doc: Any?, schema: Map<String, Any?>, path: String) {
        val unknown = schema.keys - keywords
        require(unknown.isEmpty()) { "schema at '$path' uses keywords outside the supported subset: $unknown" }
        (schema["\$ref"] as String?)?.let { ref ->
            require(ref.startsWith("#/\$defs/")) { "only local #/\$defs/ references are supported, got $ref" }
            val defs = root["\$defs"] as Map<String, Any?>
            return check(doc, defs[ref.removePrefix("#/\$defs/")] as Map<String, Any?>, path)
        }
        schema["type"]?.let { t ->
            val names = if (t is String) listOf(t) else (t as List<*>).map { it as String }
            if (names.none { typeOk(doc, it) }) throw Violation(path, "expected ${names.joinToString(" or ")}, got $doc")
        }
        if ("const" in schema && !same(doc, schema["const"])) throw Violation(path, "must be ${schema["const"]}, got $doc")
        (schema["enum"] as List<*>?)?.let { e -> if (e.none { same(doc, it) }) throw Violation(path, "must be one of $e, got $doc") }
        if (isNumber(doc)) {
            val x = num(doc)
            schema["minimum"]?.let { if (x < num(it)) throw Violation(path, "$x is below the minimum $it") }
            schema["exclusiveMinimum"]?.let { if (x <= num(it)) throw Violation(path, "$x must be above $it") }
            schema["maximum"]?.let { if (x > num(it)) throw Violation(path, "$x is above the maximum $it") }
        }
        if (doc is String) {
            schema["minLength"]?.let { if (doc.length < num(it)) throw Violation(path, "is shorter than $it characters") }
            schema["maxLength"]?.let { if (doc.length > num(it)) throw Violation(path, "is longer than $it characters") }
            (schema["pattern"] as String?)?.let { if (!Regex(it).containsMatchIn(doc)) throw Violation(path, "'$doc' does not match $it") }
        }
        if (doc is List<*>) {
            schema["minItems"]?.let { if (doc.size < num(it)) throw Violation(path, "has ${doc.size} items, at least $it needed") }
            schema["maxItems"]?.let { if (doc.size > num(it)) throw Violation(path, "has ${doc.size} items, at most $it allowed") }
            (schema["items"] as Map<String, Any?>?)?.let { items -> doc.forEachIndexed { i, v -> check(v, items, "$path[$i]") } }
        }
        if (doc is Map<*, *>) checkObject(doc as Map<String, Any?>, schema, path)
    }

    @Suppress("UNCHECKED_CAST")
    private fun checkObject(doc: Map<String, Any?>, schema: Map<String, Any?>, path: String) {
        val prefix = if (path.isEmpty()) "" else "$path."
        schema["minProperties"]?.let { if (doc.size < num(it)) throw Violation(path, "needs at least $it entries") }
        schema["maxProperties"]?.let { if (doc.size > num(it)) throw Violation(path, "has more than $it entries") }
        (schema["required"] as List<*>?)?.forEach { if (it !in doc) throw Violation("$prefix$it", "is missing (required)") }
        val properties = schema["properties"] as Map<String, Any?>? ?: emptyMap()
        val extra = schema["additionalProperties"]
        for ((name, value) in doc) {
            (schema["propertyNames"] as Map<String, Any?>?)?.let { check(name, it, "$prefix$name (name)") }
            when {
                name in properties -> check(value, properties[name] as Map<String, Any?>, "$prefix$name")
                extra == false -> throw Violation("$prefix$name", "is not a known field")
                extra is Map<*, *> -> check(value, extra as Map<String, Any?>, "$prefix$name")
            }
        }
    }
}
