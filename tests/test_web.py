"""The browser client (``salsdk/web``) runs bundles in headless Chromium exactly as the Python SDK does.

A session fixture exports real bundles with ``salsdk export web --vectors`` into a temporary site: the main job's
TinyHD-S-x1/4 bundles (official weights: ONNX fp32/int8, TFLite fp32/int8), a UniSal stand-in in every ONNX and
TFLite format the browser runs (fp32, fp16, int8, dynamic-range int8), an UMSI stand-in (letterboxed, BGR,
non-square photos) and TinyHD-M-x1/4 (official weights, 16 maps per run). Playwright drives Debian's Chromium
(``apt-get install chromium``; no browser download) on the site served by ``salsdk serve``'s server, and the page's
own client code runs the shared test vectors (:mod:`salsdk.clients.vectors`) on onnxruntime-web and LiteRT.js.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from salsdk.clients.browser import Browser
from salsdk.clients.web import MARKER, export_web
from salsdk.manifest import MANIFEST_NAME, read_manifest

UNISAL_WEB_FORMATS = ("onnx-fp32", "onnx-fp16", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-dr8", "tflite-int8")
WEB_BUNDLES = (
    *(f"TinyHD-S-x0.25-{k}" for k in ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")),
    *(f"UniSal-{k}" for k in UNISAL_WEB_FORMATS),
    "UMSI-onnx-fp32", "UMSI-tflite-fp32", "TinyHD-M-x0.25-onnx-fp32", "TinyHD-M-x0.25-tflite-fp32",
)
INPUT_TOLERANCE = 1e-5  # pre-processed tensors, in tensor units
MAP_TOLERANCE = 1e-5  # Python's raw output post-processed in the browser vs Python's maps
CC_FLOAT, CC_INT8 = 0.9999, 0.999  # browser runtime vs the same bundle run by salsdk in Python
RUN_VECTORS = """async ([name, threads]) => {
  const m = await import('./client/conformance.js');
  return await m.runVectors(`vectors/${name}/`, `bundles/${name}/`, {threads});
}"""
OPEN = """async (folder) => {
  const c = await import('./client/salsdk.js');
  try { await c.Predictor.open(`${folder}/`); return 'opened'; } catch (e) { return `${e.name}: ${e.message}`; }
}"""


@pytest.fixture(scope="session")
def web_bundles(tinyhd_s_bundles, unisal_bundles, umsi_bundles, tinyhd_m_bundles) -> list[Path]:
    tinyhd_s = tinyhd_s_bundles[0]
    found = [tinyhd_s / n if n.startswith("TinyHD-S") else unisal_bundles / n if n.startswith("UniSal")
             else umsi_bundles / n if n.startswith("UMSI") else tinyhd_m_bundles / n for n in WEB_BUNDLES]
    return found


@pytest.fixture(scope="session")
def site(tmp_path_factory, web_bundles) -> Path:
    return export_web(web_bundles, tmp_path_factory.mktemp("web") / "site", vectors=True, log=lambda _: None)


@pytest.fixture(scope="session")
def browser(site):
    with Browser(site) as b:
        yield b


@pytest.fixture(scope="session")
def page(browser):
    return browser.page(threads=1)


def _cc_floor(bundle: str) -> float:
    precision = bundle.rsplit("-", 1)[-1]
    return CC_FLOAT if precision in ("fp32", "fp16") else CC_INT8


@pytest.mark.parametrize("name", WEB_BUNDLES)
def test_browser_reproduces_python(page, site, name):
    """Input tensor to 1e-5, maps (Python's output post-processed in JS) to 1e-5, the browser's own maps with CC
    >= 0.9999 (fp32/fp16) or >= 0.999 (int8) against the bundle run by salsdk, overlays to one grey level."""
    result = page.evaluate(RUN_VECTORS, [name, 1])
    assert result["bundle"] == name and result["cases"]
    manifest = read_manifest(site / "bundles" / name)
    expected_cases = 5 if manifest.preprocessing.resize == "letterbox" else (1 if manifest.is_clip else 2)
    assert len(result["cases"]) == expected_cases
    floor = _cc_floor(name)
    for case in result["cases"]:
        where = f"{name} {case['name']}: {case}"
        assert case["geometry"], where
        assert case["input"] <= INPUT_TOLERANCE, where
        assert case.get("input_q", 0) == 0, where
        assert max(case["maps_py"]) <= MAP_TOLERANCE, where
        assert case["overlay"] <= 1, where
        assert case["output_cc"] >= floor and min(case["maps_run_cc"]) >= floor, where
        assert case["ok"], where


def test_runtimes_are_the_real_ones(page, browser):
    """onnxruntime-web and LiteRT.js executed (their WASM files were fetched from the site, nothing else)."""
    onnx = page.evaluate(RUN_VECTORS, ["UniSal-onnx-fp32", 1])
    tflite = page.evaluate(RUN_VECTORS, ["UniSal-tflite-fp32", 1])
    assert onnx["runtime"].startswith("onnxruntime-web") and tflite["runtime"].startswith("LiteRT.js")
    wasm = {u.rsplit("/", 1)[-1] for u in browser.requests if u.endswith(".wasm")}
    assert "ort-wasm-simd-threaded.wasm" in wasm and any(w.startswith("litert_wasm") for w in wasm), wasm
    assert not [u for u in browser.requests if not u.startswith((browser.url, browser.base_url(False), "data:", "blob:"))]


@pytest.mark.parametrize("isolated", [True, False])
def test_threads_when_cross_origin_isolated(browser, isolated):
    """Two WASM threads where the page is cross-origin isolated (salsdk serve's headers); one, said plainly, where
    it is not; the maps are the same either way."""
    page = browser.page(threads=2, isolated=isolated)
    assert page.evaluate("crossOriginIsolated") is isolated
    for name in ("UniSal-onnx-fp32", "UniSal-tflite-int8"):
        result = page.evaluate(RUN_VECTORS, [name, 2])
        assert result["threads"] == (2 if isolated else 1), result
        assert all(c["ok"] and c["output_cc"] >= _cc_floor(name) for c in result["cases"]), result
    note = page.evaluate("""async () => (await (await import('./client/salsdk.js')).threadPlan(2)).note""")
    assert ("not cross-origin isolated" in note) is not isolated
    page.close()


def _frames(video: Path, n: int) -> list[np.ndarray]:
    from salsdk.imageio import iter_video_frames
    from salsdk.preprocess import resize_bilinear

    return [np.clip(np.round(resize_bilinear(f, (72, 128))), 0, 255).astype(np.uint8)
            for f in iter_video_frames(video, max_frames=n)]


STREAM = """async ([name, frames, h, w]) => {
  const c = await import('./client/salsdk.js');
  const p = await c.Predictor.open(`bundles/${name}/`);
  const stream = new c.VideoStream(p, { smooth: 0, minMax: true });
  const maps = [], emitted = [];
  for (const b64 of frames) {
    const rgb = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const out = await stream.push(new c.RgbImage(w, h, rgb));
    emitted.push(out.length);
    maps.push(...out);
  }
  const rest = await stream.flush();
  emitted.push(rest.length);
  maps.push(...rest);
  return { emitted, maps: maps.map((m) => Array.from(m.values)) };
}"""


@pytest.mark.parametrize("name", ["TinyHD-M-x0.25-onnx-fp32", "TinyHD-M-x0.25-tflite-fp32", "TinyHD-S-x0.25-onnx-fp32"])
def test_video_streamed_frame_by_frame(page, site, shared_video, name):
    """20 frames of the DHF1K clip pushed one by one: one map per frame, in order, matching salsdk.predict_video
    (MIMO: 16 maps at frame 16, the last 4 at flush; MISO: one per frame)."""
    from salsdk.api import load_bundle
    from salsdk.postprocess import PostprocessOptions
    from salsdk.video import predict_video

    frames = _frames(shared_video, 20)
    expected = list(predict_video(load_bundle(site / "bundles" / name), frames, PostprocessOptions(scale="min-max")))
    result = page.evaluate(STREAM, [name, [base64.b64encode(f.tobytes()).decode() for f in frames], 72, 128])
    mimo = read_manifest(site / "bundles" / name).temporal.mode == "mimo"
    assert result["emitted"] == ([0] * 15 + [16, 0, 0, 0, 0, 4] if mimo else [1] * 20 + [0])
    assert len(result["maps"]) == len(expected) == 20
    for k, (mine, theirs) in enumerate(zip(result["maps"], expected)):
        assert np.corrcoef(np.asarray(mine), theirs.ravel())[0, 1] >= CC_FLOAT, f"frame {k}"


def _tampered(site: Path, name: str, tag: str, edit) -> str:
    """A copy of bundle ``name`` in the site's ``tampered/`` with ``edit(folder)`` applied; returns its URL path."""
    target = site / "tampered" / f"{name}-{tag}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(site / "bundles" / name, target)
    edit(target)
    return f"tampered/{target.name}"


def _edit_manifest(change):
    def edit(folder: Path) -> None:
        document = json.loads((folder / MANIFEST_NAME).read_text())
        change(document)
        (folder / MANIFEST_NAME).write_text(json.dumps(document))
    return edit


def _swap_model(other: Path):
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        shutil.copy2(other, folder / manifest["model_file"])
    return edit


def _repin(folder: Path) -> None:  # an attacker who also rewrites the pinned hash and size
    from salsdk.hashing import file_sha256

    document = json.loads((folder / MANIFEST_NAME).read_text())
    path = folder / document["model_file"]
    document["files"][document["model_file"]] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    (folder / MANIFEST_NAME).write_text(json.dumps(document))


ATTACKS = {
    "mean-edited": (_edit_manifest(lambda d: d["preprocessing"].update(mean=[0.5, 0.5, 0.5])), "differs from the manifest embedded"),
    "model-file-outside": (_edit_manifest(lambda d: d.update(model_file="../UniSal-onnx-int8/model.onnx")), "model_file"),
    "absolute-path": (_edit_manifest(lambda d: d.update(model_file="/etc/passwd")), "model_file"),
    "no-files": (_edit_manifest(lambda d: d.pop("files")), "files"),
    "no-sha": (_edit_manifest(lambda d: next(iter(d["files"].values())).pop("sha256")), "sha256"),
    "future-schema": (_edit_manifest(lambda d: d.update(schema="salsdk-manifest/9")), "update the web client"),
    "runtime-tensorrt": (_edit_manifest(lambda d: d["format"].update(runtime="tensorrt")), "format.runtime"),
    "frames-1e9": (_edit_manifest(lambda d: d.update(temporal={"mode": "miso", "frames": 10**9})), "temporal"),
    "not-an-object": (lambda f: (f / MANIFEST_NAME).write_text("[1, 2]"), "not a salsdk manifest"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tampered_bundles_never_run_in_the_browser(page, site, attack):
    edit, says = ATTACKS[attack]
    folder = _tampered(site, "UniSal-onnx-fp32", attack, edit)
    message = page.evaluate(OPEN, folder)
    assert message.startswith("BundleError") and says in message and folder.split("/")[-1] in message, message


def test_swapped_model_file_never_runs(page, site):
    """Another bundle's model file in place of this one's: refused by size/hash; with the pins rewritten too, by
    the embedded manifest (it is the other bundle's)."""
    other = site / "bundles" / "UniSal-onnx-int8" / read_manifest(site / "bundles" / "UniSal-onnx-int8").model_file
    swapped = _tampered(site, "UniSal-onnx-fp32", "swapped", _swap_model(other))
    assert "was changed or swapped" in page.evaluate(OPEN, swapped)
    repinned = _tampered(site, "UniSal-onnx-fp32", "repinned", lambda f: (_swap_model(other)(f), _repin(f)))
    assert "differs from the manifest embedded" in page.evaluate(OPEN, repinned)
    intact = page.evaluate(OPEN, "bundles/UniSal-onnx-fp32")
    assert intact == "opened"


def _webm(frames: list[np.ndarray], path: Path) -> Path:
    """Frames as a VP8 WebM (what browsers decode; the shared clip is an AVI)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "b:v": "2M"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _show(page, names: list[str]) -> None:
    page.evaluate("document.querySelectorAll('#models input').forEach((box) => { box.checked = false; })")
    for name in names:
        page.check(f"#models input[value='{name}']")


def test_page_shows_maps_offline(browser, shared_video, tmp_path):
    """The page, with every request off localhost refused: two bundles side by side on the sample photo (overlay,
    map, latency each), then a video dropped in: TinyHD streams its frames through the <video> element."""
    page = browser.page(threads=1)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(browser.url) else route.abort())
    _show(page, ["UniSal-onnx-fp32", "UMSI-tflite-fp32"])
    page.click("#sample")
    done = "(n) => document.querySelectorAll('.card .meta').length === n && [...document.querySelectorAll('.card .meta')].every((m) => m.textContent.includes('ms'))"
    page.wait_for_function(done, arg=2)
    metas = page.eval_on_selector_all(".card .meta", "(ms) => ms.map((m) => m.textContent)")
    assert all("ms" in m and "error" not in m for m in metas), metas
    lit = page.evaluate("""() => [...document.querySelectorAll('.card canvas')].map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return [c.width, s]; })""")
    assert len(lit) == 4 and all(w > 0 and s > 0 for w, s in lit), lit
    _show(page, ["TinyHD-S-x0.25-onnx-fp32", "TinyHD-M-x0.25-tflite-fp32"])
    page.set_input_files("#file", str(_webm(_frames(shared_video, 20), tmp_path / "clip.webm")))
    page.wait_for_function("[...document.querySelectorAll('.card .meta')].some((m) => m.textContent.includes('end of video'))",
                           timeout=180_000)
    metas = page.eval_on_selector_all(".card .meta", "(ms) => ms.map((m) => m.textContent)")
    assert metas[0].startswith("frame 19: ") and "(1 map(s))" in metas[0], metas  # MISO: a map per frame
    assert metas[1].startswith("frame 19: ") and "last 4 map(s), end of video" in metas[1], metas  # MIMO: 16, then 4
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert not [u for u in browser.requests if not u.startswith((browser.url, browser.base_url(False), "data:", "blob:"))]
    page.close()


def test_page_benchmark_json_is_what_bench_import_reads(page, site, tmp_path):
    """The page's benchmark JSON -> ``salsdk bench import``: browser rows (onnxruntime-web / litert.js, wasm)."""
    report = page.evaluate("async () => await window.salsdkPage.benchmark({bundles: "
                           "['UniSal-onnx-fp32', 'UniSal-tflite-int8'], runs: 3, warmup: 1})")
    path = tmp_path / "web-bench.json"
    path.write_text(json.dumps(report))
    done = subprocess.run([sys.executable, "-m", "salsdk", "bench", "import", str(path), "--bundles",
                           str(site / "bundles"), "--json", "--db", str(tmp_path / "db.sqlite")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {(r["format"], r["runtime"], r["delegate"]) for r in rows} == {("onnx-fp32", "onnxruntime-web", "wasm"),
                                                                          ("tflite-int8", "litert.js", "wasm")}
    assert all(r["runs"] == 3 and r["latency_ms_p50"] > 0 and r["source"] == "browser" for r in rows)
    assert all(r["fidelity_cc_min"] is not None and r["input_shape"][1] == 3 for r in rows)


def test_export_web_refuses_what_the_browser_cannot_run(unisal_bundles, tmp_path):
    from salsdk.errors import BundleError, InputError

    for key, says in (("pte-fp32", "browser runs ONNX"), ("coreml-fp16", "browser runs ONNX"),
                      ("openvino-bf16", "browser runs ONNX"), ("tflite-int8-io", "no int8 input/output")):
        with pytest.raises(BundleError, match=says):
            export_web([unisal_bundles / f"UniSal-{key}"], tmp_path / key, log=lambda _: None)
        assert not (tmp_path / key).exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not a site written by salsdk"):
        export_web([unisal_bundles / "UniSal-onnx-fp32"], precious, log=lambda _: None)
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_export_and_serve_cli(unisal_bundles, tmp_path):
    """``salsdk export web`` writes a site (re-export replaces it as a whole), ``salsdk serve`` refuses a folder
    that is not one; missing runtimes name the npm command."""
    import os

    out = tmp_path / "site"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "salsdk", "export", "web", "--bundle",
                               str(unisal_bundles / "UniSal-onnx-fp32"), "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert (out / MARKER).is_file() and (out / "bundles" / "UniSal-onnx-fp32" / MANIFEST_NAME).is_file()
    assert not (out / "vendor" / "litertjs").exists()  # only the runtimes its bundles need
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]  # no staging folder left behind
    done = subprocess.run([sys.executable, "-m", "salsdk", "serve", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "not a site written by salsdk export web" in done.stderr
    env = {**os.environ, "SALSDK_WEB_RUNTIMES": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "salsdk", "export", "web", "--bundle",
                           str(unisal_bundles / "UniSal-onnx-fp32"), "--out", str(tmp_path / "other")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "npm ci --prefix sdk/web" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "other").exists()
