// The salsdk web page: pick bundles, drop an image, a design or a video (or use the camera), see the map, the
// overlay and the latency per frame for each bundle side by side; benchmark the bundles and save the JSON that
// `salsdk bench import` reads. Everything is served from this folder: the page works offline.
import { Predictor, RgbImage, VideoStream, overlay } from "./client/salsdk.js";

const params = new URLSearchParams(location.search);
const threads = Number(params.get("threads") ?? "1");
const $ = (id) => document.getElementById(id);
const predictors = new Map();  // bundle name -> Promise<Predictor>
let index = [];

function status(text) { $("status").textContent = text; }

function selected() {
  return [...document.querySelectorAll("#models input:checked")].map((box) => index.find((b) => b.name === box.value));
}

function predictor(entry) {
  if (!predictors.has(entry.name)) predictors.set(entry.name, Predictor.open(`bundles/${entry.name}/`, { threads }));
  return predictors.get(entry.name);
}

function drawRgb(canvas, data, width, height) {
  canvas.width = width; canvas.height = height;
  const image = canvas.getContext("2d").createImageData(width, height);
  for (let i = 0, j = 0; i < data.length; i += 3, j += 4) {
    image.data[j] = data[i]; image.data[j + 1] = data[i + 1]; image.data[j + 2] = data[i + 2]; image.data[j + 3] = 255;
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function drawMap(canvas, map) {
  const grey = new Uint8Array(map.values.length * 3);
  map.values.forEach((v, i) => grey.fill(Math.round(Math.min(Math.max(v, 0), 1) * 255), i * 3, i * 3 + 3));
  drawRgb(canvas, grey, map.width, map.height);
}

function card(entry) {
  let node = document.querySelector(`.card[data-bundle="${entry.name}"]`);
  if (!node) {
    node = document.createElement("div");
    node.className = "card";
    node.dataset.bundle = entry.name;
    node.innerHTML = `<h2>${entry.name}</h2><div class="row"><canvas class="overlay"></canvas><canvas class="map"></canvas></div><div class="meta"></div>`;
    $("results").append(node);
  }
  return node;
}

function show(entry, image, map, text) {
  const node = card(entry);
  drawRgb(node.querySelector(".overlay"), overlay(image, map), image.width, image.height);
  drawMap(node.querySelector(".map"), map);
  node.querySelector(".meta").textContent = text;
}

function showError(entry, error) {
  card(entry).querySelector(".meta").innerHTML = `<span class="error">${error.message ?? error}</span>`;
}

function rgbOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, width, height);
  return RgbImage.fromImageData(ctx.getImageData(0, 0, width, height));
}

async function threadNote(p) {
  $("threadnote").textContent = p.session.threadNote || (threads > 1 ? "" : "1 WASM thread (choose more above)");
}

async function predictImage(image) {
  $("results").replaceChildren();
  for (const entry of selected()) {
    try {
      const p = await predictor(entry);
      await threadNote(p);
      if (p.manifest.isClip) { showError(entry, new Error(`${entry.model} is a video model: drop a video`)); continue; }
      const { map, ms, classes } = await p.predict(image, { smooth: Number($("smooth").value) });
      const top = classes ? ` · ${classes.reduce((a, b) => (b.p > a.p ? b : a)).name}` : "";
      show(entry, image, map, `${ms.toFixed(1)} ms · ${p.session.backend}, ${p.session.threads} thread(s)${top}`);
    } catch (e) { showError(entry, e); }
  }
  status(`${image.width}x${image.height} image`);
}

async function predictFrames(nextFrame) {
  $("results").replaceChildren();
  const entries = selected();
  const streams = new Map();
  for (const entry of entries) {
    const p = await predictor(entry);
    await threadNote(p);
    streams.set(entry.name, p.manifest.isClip ? new VideoStream(p, { smooth: Number($("smooth").value) }) : null);
  }
  let last = null;
  for (let n = 0; ; n++) {
    const image = await nextFrame();
    if (image === null) break;
    for (const entry of entries) {
      try {
        const stream = streams.get(entry.name);
        const p = await predictor(entry);
        if (stream === null) {
          const { map, ms } = await p.predict(image, { smooth: Number($("smooth").value) });
          show(entry, image, map, `frame ${n}: ${ms.toFixed(1)} ms`);
        } else {
          const maps = await stream.push(image);
          if (maps.length) show(entry, image, maps[maps.length - 1], `frame ${n}: ${stream.lastMs.toFixed(1)} ms per model run (${maps.length} map(s))`);
        }
      } catch (e) { showError(entry, e); }
    }
    status(`frame ${n}`);
    last = { n, image };
  }
  for (const entry of entries) {  // end of the video: a MIMO model predicts its last partial block
    const stream = streams.get(entry.name);
    const maps = stream === null ? [] : await stream.flush();
    if (maps.length && last) show(entry, last.image, maps[maps.length - 1], `frame ${last.n}: ${stream.lastMs.toFixed(1)} ms per model run (last ${maps.length} map(s), end of video)`);
  }
}

function frameSize(video, maxSide = 640) {
  const scale = Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight));
  return [Math.round(video.videoWidth * scale), Math.round(video.videoHeight * scale)];
}

// A video file, frame by frame: seek to the middle of each frame at `fps` (?fps=, default 30), so every frame of a
// 30 fps video is predicted exactly once, however long the models take.
function fileFrames(video, fps = Number(params.get("fps") ?? "30")) {
  const [w, h] = frameSize(video);
  let i = 0;
  return async () => {
    const t = (i + 0.5) / fps;
    if (!(t < video.duration)) return null;
    i += 1;
    await new Promise((resolve) => { video.onseeked = resolve; video.currentTime = t; });
    return rgbOf(video, w, h);
  };
}

// A live camera stream: the next frame the camera presents after the models are done with the last one.
function liveFrames(video) {
  const [w, h] = frameSize(video);
  return () => new Promise((resolve) => {
    video.requestVideoFrameCallback(() => resolve(rgbOf(video, w, h)));
    video.play().catch(() => resolve(null));
  });
}

async function openFile(file) {
  if (file.type.startsWith("video/")) {
    const video = $("video");
    video.src = URL.createObjectURL(file);
    await new Promise((r) => { video.onloadeddata = r; });
    await predictFrames(fileFrames(video));
  } else {
    const bitmap = await createImageBitmap(file);
    await predictImage(rgbOf(bitmap, bitmap.width, bitmap.height));
  }
}

async function benchmark({ bundles = selected().map((e) => e.name), runs = 20, warmup = 3 } = {}) {
  const results = [];
  for (const entry of bundles.map((name) => index.find((e) => e.name === name))) {
    const p = await predictor(entry);
    const [h, w] = p.manifest.preprocessing.size;
    const frame = p.prepare(new RgbImage(w, h, new Uint8Array(w * h * 3).fill(128)));
    const tensor = p.inputTensor(Array(p.manifest.temporal?.frames ?? 1).fill(frame));
    for (let i = 0; i < warmup; i++) await p.run(tensor);
    const latencies = [];
    for (let i = 0; i < runs; i++) latencies.push((await p.run(tensor)).ms);
    results.push({ bundle: entry.name, model: p.manifest.modelName, format: p.manifest.formatKey,
      runtime: p.session.backend, threads: p.session.threads, thread_note: p.session.threadNote,
      input_shape: p.input.dims, load_ms: p.loadMs, verify_ms: p.verifyMs, warmup_runs: warmup,
      latencies_ms: latencies, maps_per_run: p.manifest.temporal?.mode === "mimo" ? p.manifest.temporal.frames : 1,
      file_bytes: p.manifest.files[p.manifest.modelFile].bytes, status: "ok" });
  }
  const report = { schema: "salsdk-web-bench/1", timestamp: new Date().toISOString(), user_agent: navigator.userAgent,
    browser: navigator.userAgentData?.brands?.map((b) => `${b.brand} ${b.version}`).join(", ") ?? "",
    cross_origin_isolated: globalThis.crossOriginIsolated === true, hardware_concurrency: navigator.hardwareConcurrency, results };
  const rows = results.map((r) => {
    const sorted = [...r.latencies_ms].sort((a, b) => a - b);
    return `<tr><td>${r.bundle}</td><td>${r.threads}</td><td>${sorted[Math.floor(sorted.length / 2)].toFixed(1)}</td><td>${sorted[0].toFixed(1)}</td></tr>`;
  });
  $("results").insertAdjacentHTML("beforeend", `<table class="bench"><tr><th>bundle</th><th>threads</th><th>p50 ms</th><th>min ms</th></tr>${rows.join("")}</table>`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(report, null, 2)], { type: "application/json" }));
  link.download = `salsdk-web-bench-${threads}t.json`;
  link.textContent = "save the benchmark JSON (for salsdk bench import)";
  $("results").append(link);
  return report;
}

async function main() {
  $("threads").value = String(threads);
  $("threads").onchange = () => { params.set("threads", $("threads").value); location.search = params.toString(); };
  index = await (await fetch("bundles.json", { cache: "no-cache" })).json();
  index.forEach((entry, i) => {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${entry.name}" ${i === 0 ? "checked" : ""}> ${entry.name}`;
    $("models").append(label);
  });
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]); };
  $("file").onchange = (e) => e.target.files[0] && openFile(e.target.files[0]);
  $("sample").onclick = async () => openFile(await (await fetch("sample.png")).blob());
  $("bench").onclick = () => benchmark();
  $("camera").onclick = async () => {
    const video = $("video");
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    await new Promise((r) => { video.onloadeddata = r; });
    await predictFrames(liveFrames(video));
  };
  status(`${index.length} bundle(s) · ${globalThis.crossOriginIsolated ? "cross-origin isolated: WASM threads available" : "not cross-origin isolated: 1 WASM thread (serve with `salsdk serve`)"}`);
  window.salsdkPage = { benchmark, openFile, predictImage, ready: true };
}

main().catch((e) => status(`error: ${e.message}`));
