/**
 * salsdk's browser client (ES modules, no build step): open a bundle exported by `salsdk export web`, verify it as
 * every salsdk client does, and predict saliency maps on onnxruntime-web (ONNX) or LiteRT.js (TFLite), with the
 * same pre- and post-processing as the Python SDK.
 *
 *   import { Predictor, RgbImage, overlay } from "./client/salsdk.js";
 *   const predictor = await Predictor.open("bundles/UniSal-onnx-fp32/", { threads: 2 });
 *   const { map, ms } = await predictor.predict(RgbImage.fromImageData(imageData));
 */
export { BundleError, loadSchema, openBundle, verifyBundle } from "./bundle.js";
export { letterboxFit, uncropFit, inputGeometry } from "./geometry.js";
export { Manifest, ManifestError, parseManifest } from "./manifest.js";
export { FloatMap, jet, overlay, postprocess, restoreMap } from "./postprocess.js";
export { Predictor } from "./predictor.js";
export { RgbImage, dequantize, pack, prepareFrame, quantize, resizeBilinear } from "./preprocess.js";
export { BROWSER_RUNTIMES, threadPlan } from "./runtimes/index.js";
export { VideoStream } from "./video.js";
