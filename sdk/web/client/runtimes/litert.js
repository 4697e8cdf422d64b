/** TFLite bundles on LiteRT.js (`@litertjs/core`, XNNPACK in WASM; threads when the page is cross-origin isolated). */
import { threadPlan } from "./index.js";

let liteRt = null;
let liteRtThreads = null;

async function loadCore(vendor, threads) {
  if (liteRt === null) {
    const core = await import(new URL("litertjs/core/dist/index.js", vendor).href);
    let used = threads;
    try {
      await core.loadLiteRt(new URL("litertjs/core/wasm/", vendor).href, { threads: threads > 1 });
    } catch (e) {  // threaded WASM needs relaxed SIMD as well as cross-origin isolation
      if (threads <= 1) throw e;
      await core.loadLiteRt(new URL("litertjs/core/wasm/", vendor).href);
      used = 1;
    }
    liteRt = core;
    liteRtThreads = used;
  }
  return liteRt;
}

const ARRAYS = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array };

/** Tensor types LiteRT.js moves in and out of a model (2.5: no int8 tensors). */
export const IO_DTYPES = ["float32", "uint8"];

export async function open(manifest, modelBytes, { threads: wanted = 1, vendor }) {
  const io = [manifest.input, ...manifest.outputs].find((t) => !IO_DTYPES.includes(t.dtype));
  if (io) {
    throw new Error(`${manifest.bundleName}: LiteRT.js has no ${io.dtype} input/output tensors (${io.name}); use the bundle ` +
      "with int8 inside and float32 input/output (tflite-int8)");
  }
  const plan = threadPlan(wanted);
  const core = await loadCore(vendor, plan.threads);
  const threads = Math.min(plan.threads, liteRtThreads);
  const note = threads < plan.threads ? "LiteRT.js could not start its threaded WASM build here (it needs relaxed SIMD); 1 thread used" : plan.note;
  const model = await core.loadAndCompile(new Uint8Array(modelBytes), { accelerator: "wasm", cpuOptions: { numThreads: threads } });
  const input = manifest.input;
  const outputNames = model.getOutputDetails().map((d) => d.name);
  return {
    backend: "LiteRT.js (wasm, XNNPACK)",
    threads,
    threadNote: note,
    async run(data) {
      if (!(data instanceof ARRAYS[input.dtype])) throw new Error(`input ${input.name} is ${input.dtype}`);
      const tensor = new core.Tensor(data, input.dims);
      const outputs = await model.run(tensor);
      tensor.delete();
      const named = {};
      outputs.forEach((t, i) => {
        named[outputNames[i]] = t.toTypedArray().slice();
        t.delete();
      });
      return named;
    },
    release() { model.delete(); },
  };
}
