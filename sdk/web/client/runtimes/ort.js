/** ONNX bundles on onnxruntime-web (WASM backend, SIMD; threads when the page is cross-origin isolated). */
import { threadPlan } from "./index.js";

let ortModule = null;
let ortThreads = null;

async function loadOrt(vendor, threads) {
  if (ortModule === null) {
    const base = new URL("onnxruntime-web/dist/", vendor);
    ortModule = await import(new URL("ort.wasm.min.mjs", base).href);
    ortModule.env.wasm.wasmPaths = base.href;
    ortModule.env.wasm.numThreads = threads;  // fixed when the WASM module starts: one setting per page
    ortThreads = threads;
  }
  return ortModule;
}

const ARRAYS = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array };

export async function open(manifest, modelBytes, { threads: wanted = 1, vendor }) {
  const plan = threadPlan(wanted);
  const ort = await loadOrt(vendor, plan.threads);
  const note = ortThreads !== plan.threads
    ? `onnxruntime-web started with ${ortThreads} thread(s) on this page; reload it to change` : plan.note;
  const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const input = manifest.input;
  return {
    backend: "onnxruntime-web (wasm)",
    threads: ortThreads,
    threadNote: note,
    async run(data) {
      if (!(data instanceof ARRAYS[input.dtype])) throw new Error(`input ${input.name} is ${input.dtype}`);
      const results = await session.run({ [input.name]: new ort.Tensor(input.dtype, data, input.dims) });
      return Object.fromEntries(Object.entries(results).map(([name, t]) => [name, t.data]));
    },
    release() { session.release(); },
  };
}
