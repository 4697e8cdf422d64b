/**
 * Video saliency with clip models (TinyHD), the official windowing of salsdk `sdk/video.py`: MISO models (16 in,
 * 1 out) give the map of frame j from frames j-15..j, the window left-padded with frame 0 at the start; MIMO models
 * (16 in, 16 out) predict non-overlapping blocks, and `flush()` predicts the last partial block from the last 16
 * frames, emitting only the frames not yet predicted. Each frame is pre-processed once.
 */
import { postprocess, restoreMap } from "./postprocess.js";

export class VideoStream {
  constructor(predictor, options = {}) {
    const temporal = predictor.manifest.temporal;
    if (temporal === null) throw new Error(`${predictor.manifest.modelName} is an image model: use predict(image)`);
    Object.assign(this, { predictor, options, frames: temporal.frames, mimo: temporal.mode === "mimo" });
    this.window = [];
    this.first = null;
    this.geometry = null;
    this.pending = 0;
    this.count = 0;
    this.lastMs = 0;
  }

  async predictWindow() {
    const padding = Array(this.frames - this.window.length).fill(this.first);
    const { outputs, ms } = await this.predictor.run(this.predictor.inputTensor([...padding, ...this.window]));
    this.lastMs = ms;
    return this.predictor.maps(outputs).map((m) => postprocess(restoreMap(m, this.geometry), this.options));
  }

  /** Add one RGB frame; resolves to the maps that became available (one for MISO; none or 16 for MIMO). */
  async push(image) {
    const frame = this.predictor.prepare(image);
    if (this.geometry === null) {
      this.geometry = frame.geometry;
      this.first = frame;
    } else if (frame.geometry.originalHw.join() !== this.geometry.originalHw.join()) {
      throw new Error(`frame ${this.count} is ${frame.geometry.originalHw.join("x")}, earlier frames ${this.geometry.originalHw.join("x")}`);
    }
    this.window.push(frame);
    if (this.window.length > this.frames) this.window.shift();
    this.count += 1;
    if (!this.mimo) return this.predictWindow();
    this.pending += 1;
    if (this.pending < this.frames) return [];
    this.pending = 0;
    return this.predictWindow();
  }

  /** End of stream: maps of the frames a MIMO model has not predicted yet. */
  async flush() {
    if (!this.mimo || this.pending === 0) return [];
    const maps = await this.predictWindow();
    const waiting = this.pending;
    this.pending = 0;
    return maps.slice(-waiting);
  }
}
