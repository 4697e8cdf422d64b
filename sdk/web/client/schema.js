/**
 * The subset of JSON Schema that salsdk's manifest schema uses (the same keywords as salsdk `schema_check` and the
 * Kotlin core's SchemaCheck): type, properties, required, additionalProperties, propertyNames, min/maxProperties,
 * items, min/maxItems, enum, const, minimum, maximum, exclusiveMinimum, min/maxLength, pattern, `$defs` and local
 * `$ref`. Any other keyword in the schema is an error, so the schema cannot ask for more than is checked.
 */

const KEYWORDS = new Set(["$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties",
  "required", "additionalProperties", "propertyNames", "minProperties", "maxProperties", "items", "minItems",
  "maxItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "pattern"]);

/** A document breaks the schema at `path`. */
export class SchemaViolation extends Error {
  constructor(path, message) {
    super(`${path || "(top level)"}: ${message}`);
    this.name = "SchemaViolation";
    this.path = path;
  }
}

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function typeOk(v, name) {
  switch (name) {
    case "object": return isObject(v);
    case "array": return Array.isArray(v);
    case "string": return typeof v === "string";
    case "boolean": return typeof v === "boolean";
    case "null": return v === null;
    case "integer": return Number.isInteger(v);
    case "number": return isNumber(v);
    default: throw new Error(`unknown JSON Schema type ${name}`);
  }
}

/** JSON equality (objects by value, key order ignored). */
export function jsonEqual(a, b) {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isObject(a) || isObject(b)) {
    if (!isObject(a) || !isObject(b)) return false;
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return a === b;
}

const show = (v) => JSON.stringify(v)?.slice(0, 80);

/** Validates documents against one JSON Schema (`root`, parsed). */
export class SchemaCheck {
  constructor(root) {
    this.root = root;
  }

  /** Throws {@link SchemaViolation} at the first part of `document` that breaks the schema. */
  validate(document) {
    this.check(document, this.root, "");
  }

  check(doc, schema, path) {
    const unknown = Object.keys(schema).filter((k) => !KEYWORDS.has(k));
    if (unknown.length) throw new Error(`schema at '${path}' uses keywords outside the supported subset: ${unknown}`);
    if (schema.$ref !== undefined) {
      if (!schema.$ref.startsWith("#/$defs/")) throw new Error(`only local #/$defs/ references are supported: ${schema.$ref}`);
      return this.check(doc, this.root.$defs[schema.$ref.slice("#/$defs/".length)], path);
    }
    if (schema.type !== undefined) {
      const names = Array.isArray(schema.type) ? schema.type : [schema.type];
      if (!names.some((n) => typeOk(doc, n))) throw new SchemaViolation(path, `expected ${names.join(" or ")}, got ${show(doc)}`);
    }
    if ("const" in schema && !jsonEqual(doc, schema.const)) throw new SchemaViolation(path, `must be ${show(schema.const)}, got ${show(doc)}`);
    if (schema.enum && !schema.enum.some((e) => jsonEqual(doc, e))) {
      throw new SchemaViolation(path, `must be one of ${show(schema.enum)}, got ${show(doc)}`);
    }
    if (isNumber(doc)) {
      if (schema.minimum !== undefined && doc < schema.minimum) throw new SchemaViolation(path, `${doc} is below the minimum ${schema.minimum}`);
      if (schema.exclusiveMinimum !== undefined && doc <= schema.exclusiveMinimum) throw new SchemaViolation(path, `${doc} must be above ${schema.exclusiveMinimum}`);
      if (schema.maximum !== undefined && doc > schema.maximum) throw new SchemaViolation(path, `${doc} is above the maximum ${schema.maximum}`);
    }
    if (typeof doc === "string") {
      if (schema.minLength !== undefined && doc.length < schema.minLength) throw new SchemaViolation(path, `is shorter than ${schema.minLength} characters`);
      if (schema.maxLength !== undefined && doc.length > schema.maxLength) throw new SchemaViolation(path, `is longer than ${schema.maxLength} characters`);
      if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(doc)) throw new SchemaViolation(path, `'${doc}' does not match ${schema.pattern}`);
    }
    if (Array.isArray(doc)) {
      if (schema.minItems !== undefined && doc.length < schema.minItems) throw new SchemaViolation(path, `has ${doc.length} items, at least ${schema.minItems} needed`);
      if (schema.maxItems !== undefined && doc.length > schema.maxItems) throw new SchemaViolation(path, `has ${doc.length} items, at most ${schema.maxItems} allowed`);
      if (schema.items) doc.forEach((v, i) => this.check(v, schema.items, `${path}[${i}]`));
    }
    if (isObject(doc)) this.checkObject(doc, schema, path);
  }

  checkObject(doc, schema, path) {
    const prefix = path ? `${path}.` : "";
    const keys = Object.keys(doc);
    if (schema.minProperties !== undefined && keys.length < schema.minProperties) throw new SchemaViolation(path, `needs at least ${schema.minProperties} entries`);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) throw new SchemaViolation(path, `has more than ${schema.maxProperties} entries`);
    for (const name of schema.required || []) {
      if (!Object.hasOwn(doc, name)) throw new SchemaViolation(`${prefix}${name}`, "is missing (required)");
    }
    const properties = schema.properties || {};
    for (const name of keys) {
      if (schema.propertyNames) this.check(name, schema.propertyNames, `${prefix}${name} (name)`);
      if (Object.hasOwn(properties, name)) this.check(doc[name], properties[name], `${prefix}${name}`);
      else if (schema.additionalProperties === false) throw new SchemaViolation(`${prefix}${name}`, "is not a known field");
      else if (isObject(schema.additionalProperties)) this.check(doc[name], schema.additionalProperties, `${prefix}${name}`);
    }
  }
}
