"""A validator for the subset of JSON Schema that salsdk's schemas use, with errors that name the field.

Keywords: ``type`` (a name or a list; ``integer`` excludes booleans), ``properties``, ``required``,
``additionalProperties`` (boolean or schema), ``propertyNames``, ``minProperties``, ``maxProperties``, ``items``,
``minItems``, ``maxItems``, ``enum``, ``const``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``minLength``,
``maxLength``, ``pattern`` (a search, as JSON Schema says), ``$defs`` and local ``$ref`` (``#/$defs/name``).
Anything else in a schema is an error, so a schema cannot silently ask for more than is checked. The Kotlin core
and the browser client implement the same subset.
"""
from __future__ import annotations

import math
import re
from typing import Any

KEYWORDS = {"$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
            "additionalProperties", "propertyNames", "minProperties", "maxProperties", "items", "minItems",
            "maxItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength",
            "pattern"}


class SchemaViolation(ValueError):
    """The first place where a document breaks its schema: ``path`` (e.g. ``input.shape[2]``) and why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '(top level)'}: {message}")
        self.path = path
        self.message = message


def _type_ok(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    raise ValueError(f"unknown JSON Schema type {name!r}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(document: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, path: str = "") -> None:
    """Raise :class:`SchemaViolation` at the first part of ``document`` that breaks ``schema``."""
    root = schema if root is None else root
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"schema at {path or 'top level'} uses keywords outside the supported subset: {unknown}")
    if "$ref" in schema:
        reference = schema["$ref"]
        if not reference.startswith("#/$defs/"):
            raise ValueError(f"only local #/$defs/ references are supported, got {reference!r}")
        validate(document, root["$defs"][reference.removeprefix("#/$defs/")], root, path)
        return
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_type_ok(document, n) for n in names):
            raise SchemaViolation(path, f"expected {' or '.join(names)}, got {_describe(document)}")
    if "const" in schema and document != schema["const"]:
        raise SchemaViolation(path, f"must be {schema['const']!r}, got {_describe(document)}")
    if "enum" in schema and document not in schema["enum"]:
        raise SchemaViolation(path, f"must be one of {schema['enum']}, got {_describe(document)}")
    if _type_ok(document, "number"):
        if "minimum" in schema and document < schema["minimum"]:
            raise SchemaViolation(path, f"{document} is below the minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and document <= schema["exclusiveMinimum"]:
            raise SchemaViolation(path, f"{document} must be above {schema['exclusiveMinimum']}")
        if "maximum" in schema and document > schema["maximum"]:
            raise SchemaViolation(path, f"{document} is above the maximum {schema['maximum']}")
    if isinstance(document, str):
        if len(document) < schema.get("minLength", 0):
            raise SchemaViolation(path, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(document) > schema["maxLength"]:
            raise SchemaViolation(path, f"has {len(document)} characters, at most {schema['maxLength']} allowed")
        if "pattern" in schema and not re.search(schema["pattern"], document):
            raise SchemaViolation(path, f"{_describe(document)} does not match {schema['pattern']!r}")
    if isinstance(document, list):
        if len(document) < schema.get("minItems", 0):
            raise SchemaViolation(path, f"has {len(document)} items, at least {schema['minItems']} needed")
        if "maxItems" in schema and len(document) > schema["maxItems"]:
            raise SchemaViolation(path, f"has {len(document)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for i, item in enumerate(document):
                validate(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(document, dict):
        _validate_object(document, schema, root, path)


def _validate_object(document: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    prefix = f"{path}." if path else ""
    if len(document) < schema.get("minProperties", 0):
        raise SchemaViolation(path, f"needs at least {schema['minProperties']} entries, has {len(document)}")
    if "maxProperties" in schema and len(document) > schema["maxProperties"]:
        raise SchemaViolation(path, f"has {len(document)} entries, at most {schema['maxProperties']} allowed")
    for name in schema.get("required", ()):
        if name not in document:
            raise SchemaViolation(f"{prefix}{name}", "is missing (required)")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, value in document.items():
        if "propertyNames" in schema:
            validate(name, schema["propertyNames"], root, f"{prefix}{name} (name)")
        if name in properties:
            validate(value, properties[name], root, f"{prefix}{name}")
        elif extra is False:
            raise SchemaViolation(f"{prefix}{name}", "is not a known field")
        elif isinstance(extra, dict):
            validate(value, extra, root, f"{prefix}{name}")
