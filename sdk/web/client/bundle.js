/**
 * Open a bundle in the browser, as every salsdk client does: read `manifest.json` (schema, cross-field rules), fetch
 * every file it pins and check its size and SHA-256, check that the manifest embedded in the model file equals
 * `manifest.json` (without `files`), and only then hand the verified bytes to the runtime. Nothing else from the
 * bundle's folder is read, and the bytes that were checked are the bytes that run.
 */
import { readEmbedded } from "./embedded.js";
import { ManifestError, parseManifest } from "./manifest.js";
import { openRuntime } from "./runtimes/index.js";
import { jsonEqual } from "./schema.js";

/** A bundle failed verification; the message names the bundle, the file and what to do. */
export class BundleError extends Error {
  name = "BundleError";
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");

async function fetchBytes(url) {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new BundleError(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** The manifest's JSON Schema shipped with the client (`schema/salsdk-manifest-2.schema.json`). */
export async function loadSchema(url = new URL("schema/salsdk-manifest-2.schema.json", import.meta.url)) {
  return JSON.parse(new TextDecoder().decode(await fetchBytes(url)));
}

/** Check sizes and SHA-256 of `files` (name -> bytes) and the embedded manifest; throws {@link BundleError}. */
export async function verifyBundle(manifest, files, where) {
  for (const [name, entry] of Object.entries(manifest.files)) {
    const bytes = files[name];
    if (bytes === undefined) throw new BundleError(`${where}: ${name} (pinned by manifest.json) is missing: copy the whole bundle folder`);
    if (bytes.byteLength !== entry.bytes) {
      throw new BundleError(`${where}: ${name} is ${bytes.byteLength} bytes, manifest.json pins ${entry.bytes}: the file was changed or swapped; export the bundle again`);
    }
    const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
    if (digest !== entry.sha256) {
      throw new BundleError(`${where}: ${name} has SHA-256 ${digest.slice(0, 12)}..., manifest.json pins ${entry.sha256.slice(0, 12)}...: the file was changed or swapped; export the bundle again`);
    }
  }
  let text;
  try {
    text = readEmbedded(manifest.family, files[manifest.modelFile]);
  } catch (e) {
    throw new BundleError(`${where}: ${manifest.modelFile} is not a readable ${manifest.family} file (${e.message})`);
  }
  if (text === null) throw new BundleError(`${where}: ${manifest.modelFile} carries no embedded manifest: it was not written by salsdk convert`);
  let embedded;
  try {
    embedded = JSON.parse(text);
  } catch (e) {
    throw new BundleError(`${where}: the manifest embedded in ${manifest.modelFile} is not valid JSON (${e.message})`);
  }
  const { files: _pins, ...stored } = manifest.raw;
  if (!jsonEqual(embedded, stored)) {
    const keys = [...new Set([...Object.keys(embedded), ...Object.keys(stored)])].filter((k) => !jsonEqual(embedded[k], stored[k]));
    throw new BundleError(`${where}: manifest.json differs from the manifest embedded in ${manifest.modelFile} (fields ${keys.sort().join(", ")}): it was edited after conversion; export the bundle again`);
  }
}

/**
 * Fetch, verify and open the bundle at `url` (a folder URL). `options`: `threads` (wanted, default 1), `schema`
 * (parsed JSON Schema; default: the client's copy), `vendor` (URL of the runtimes' folder; default `../vendor/`).
 * Returns `{manifest, session, verifyMs, loadMs}`.
 */
export async function openBundle(url, options = {}) {
  const base = new URL(url.endsWith("/") ? url : `${url}/`, location.href);
  const where = decodeURIComponent(base.pathname.replace(/\/$/, "").split("/").pop());
  const schema = options.schema ?? await loadSchema();
  const started = performance.now();
  let manifest;
  try {
    manifest = parseManifest(new TextDecoder().decode(await fetchBytes(new URL("manifest.json", base))), schema, `${where}/manifest.json`);
  } catch (e) {
    if (e instanceof ManifestError) throw new BundleError(e.message);
    throw e;
  }
  const files = {};
  for (const name of Object.keys(manifest.files)) files[name] = await fetchBytes(new URL(name, base));
  await verifyBundle(manifest, files, where);
  const verified = performance.now();
  const vendor = options.vendor ?? new URL("../vendor/", import.meta.url);
  const session = await openRuntime(manifest, files[manifest.modelFile], { threads: options.threads ?? 1, vendor });
  return { manifest, session, verifyMs: verified - started, loadMs: performance.now() - verified };
}
