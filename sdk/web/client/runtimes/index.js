/**
 * The browser runtimes, one module each, keyed by the manifest's `format.runtime`. Each module exports
 * `async open(manifest, modelBytes, options)` returning a session with `threads` (used), `threadNote`,
 * `backend` and `async run(input: TypedArray) -> {name: TypedArray}` (raw output buffers by tensor name).
 * `options`: `{threads, vendor}` (threads wanted; URL of the site's vendor/ folder).
 */
const RUNTIMES = {
  onnxruntime: () => import("./ort.js"),
  litert: () => import("./litert.js"),
};

/** Names of the manifest runtimes the browser client can execute. */
export const BROWSER_RUNTIMES = Object.keys(RUNTIMES);

/** Threads a page may use: the wanted number when cross-origin isolated (SharedArrayBuffer), else 1 and why. */
export function threadPlan(wanted) {
  if (wanted <= 1) return { threads: 1, note: "" };
  if (globalThis.crossOriginIsolated) return { threads: wanted, note: "" };
  return { threads: 1, note: `${wanted} threads asked, 1 used: the page is not cross-origin isolated (serve it with ` +
    "COOP/COEP headers, as `salsdk serve` does)" };
}

/** Open a verified model file with the runtime its manifest names. */
export async function openRuntime(manifest, modelBytes, options) {
  const load = RUNTIMES[manifest.runtime];
  if (!load) {
    throw new Error(`${manifest.bundleName} needs ${manifest.runtime}; the browser runs ${BROWSER_RUNTIMES.join(" and ")} bundles (ONNX, TFLite)`);
  }
  return (await load()).open(manifest, modelBytes, options);
}
