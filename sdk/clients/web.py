"""Export bundles to a static web site that runs them in the browser (``salsdk export web``).

The site is self-contained (no CDN; it works with the network off)::

    SITE/
      index.html app.js style.css sample.png   the page (from salsdk/web/site)
      client/                                  the JavaScript client (ES modules, salsdk/web/client) and the
                                               manifest JSON Schema it validates manifests against
      vendor/onnxruntime-web/ vendor/litertjs/ the WASM runtimes, copied from npm's node_modules
      bundles/<name>/                          each bundle: verified, then only its manifest and pinned files
      bundles.json                             the page's list of bundles
      vectors/<name>/                          with ``vectors=True``: the shared client test vectors
      salsdk-site.json                         what wrote the site (salsdk and runtime versions)

The whole site is assembled in a staging folder and renamed into place, so an interrupted export leaves the
previous site (or nothing) behind; an existing folder is replaced only if it is a site salsdk wrote.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

from .. import __version__, atomic
from ..errors import BundleError, InputError
from ..manifest import SCHEMA_FILE, SCHEMA_NAME, Manifest, read_manifest
from .android import stage_bundle
from .vectors import write_shared_vectors, write_vectors

WEB = Path(__file__).resolve().parents[1] / "web"  # salsdk/web: client/, site/, package.json
CLIENT, PAGE = WEB / "client", WEB / "site"
MARKER = "salsdk-site.json"
WEB_FAMILIES = {"onnx": "onnxruntime-web", "tflite": "@litertjs/core"}  # what the browser client runs
LITERT_JS_IO = ("float32", "uint8")  # tensor types LiteRT.js 2.5 passes in and out (no int8)
INSTALL = "npm ci --prefix sdk/web"
# npm package -> (files copied, folder under vendor/); the loaders pick the WASM build at run time
VENDOR = {
    "onnxruntime-web": (("dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
                         "README.md"), "onnxruntime-web"),
    "@litertjs/core": (("dist/index.js", *(f"wasm/litert_wasm{v}_internal.{e}" for v in ("", "_threaded", "_compat")
                                             for e in ("js", "wasm"))), "litertjs/core"),
    "@litertjs/wasm-utils": (("dist/index.js",), "litertjs/wasm-utils"),
}
NEEDS = {"onnxruntime-web": ("onnxruntime-web",), "@litertjs/core": ("@litertjs/core", "@litertjs/wasm-utils")}
SAMPLE_SIDE = 512


def runtimes_folder() -> Path:
    """npm's ``node_modules`` holding the browser runtimes: ``$SALSDK_WEB_RUNTIMES`` or ``salsdk/web/node_modules``."""
    return Path(os.environ.get("SALSDK_WEB_RUNTIMES") or WEB / "node_modules")


def _copy_runtime(package: str, modules: Path, vendor: Path) -> str:
    files, target = VENDOR[package]
    root = modules / package
    info = root / "package.json"
    if not info.is_file():
        raise InputError(f"the browser runtime {package} is not installed in {modules}: run `{INSTALL}` in the "
                         "salsdk repository (or point SALSDK_WEB_RUNTIMES at a node_modules folder that has it)")
    for name in files:
        source = root / name
        if not source.is_file():
            raise InputError(f"{source} is missing: reinstall the browser runtimes with `{INSTALL}`")
        (vendor / target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, vendor / target / name)
    return json.loads(info.read_text(encoding="utf-8"))["version"]


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise InputError(f"{out} exists and is not a site written by salsdk export web: choose a new folder "
                         "(an existing site is replaced as a whole)")


def _sample(path: Path) -> None:
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut())
    image.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))
    image.save(path)


def web_refusal(manifest: Manifest) -> str | None:
    """Why the browser client cannot run a bundle, or None when it can."""
    if manifest.stored_schema != SCHEMA_NAME:
        return f"it is {manifest.stored_schema}; the web client reads {SCHEMA_NAME}: convert the model again"
    if manifest.format.family not in WEB_FAMILIES:
        return (f"a {manifest.format.key} bundle; the browser runs ONNX (onnxruntime-web) and TFLite (LiteRT.js) "
                "bundles: convert with --format onnx or --format tflite")
    io = [t for t in (manifest.input, *manifest.outputs) if t.dtype not in LITERT_JS_IO]
    if manifest.format.family == "tflite" and io:
        return (f"LiteRT.js (the browser's TFLite runtime) has no {io[0].dtype} input/output tensors ({io[0].name}); "
                "export the tflite-int8 bundle (int8 inside, float32 input and output) instead")
    return None


def export_web(bundles: Sequence[Path], out: Path, vectors: bool = False,
               log: Callable[[str], None] = print) -> Path:
    """Write a static site running ``bundles`` in the browser into ``out``; returns ``out``.

    Args:
        bundles: bundle folders written by ``salsdk convert`` (ONNX or TFLite; verified before they are copied).
        out: the site folder (created; an older site there is replaced as a whole).
        vectors: also write the shared client test vectors of each bundle under ``vectors/``.
        log: progress messages.
    """
    out = Path(out)
    if not bundles:
        raise InputError("give at least one bundle (--bundle DIR)")
    manifests = []
    for bundle in map(Path, bundles):
        manifest = read_manifest(bundle)
        reason = web_refusal(manifest)
        if reason:
            raise BundleError(f"{bundle}: {reason}")
        manifests.append((bundle, manifest))
    names = [m.bundle_name for _, m in manifests]
    if len(set(names)) != len(names):
        raise InputError(f"two bundles have the same name ({', '.join(n for n in names if names.count(n) > 1)}): "
                         "give each bundle once")
    _check_target(out)
    parent = atomic.writable_folder(out.resolve().parent, "site's parent folder")
    with atomic.staging_folder(parent, out.name) as site:
        shutil.copytree(PAGE, site, dirs_exist_ok=True)
        shutil.copytree(CLIENT, site / "client")
        (site / "client" / "schema").mkdir()
        shutil.copy2(SCHEMA_FILE, site / "client" / "schema" / SCHEMA_FILE.name)
        _sample(site / "sample.png")
        modules, versions = runtimes_folder(), {}
        for package in sorted({p for _, m in manifests for p in NEEDS[WEB_FAMILIES[m.format.family]]}):
            versions[package] = _copy_runtime(package, modules, site / "vendor")
        index = []
        for bundle, manifest in manifests:
            target = site / "bundles" / manifest.bundle_name
            target.mkdir(parents=True)
            stage_bundle(bundle, target)
            index.append({"name": manifest.bundle_name, "model": manifest.model_name, "format": manifest.format.key,
                          "runtime": WEB_FAMILIES[manifest.format.family], "task": manifest.task,
                          "clip": manifest.is_clip, "size": list(manifest.input_size)})
            log(f"bundle {bundle.name} -> {out / 'bundles' / manifest.bundle_name}")
            if vectors:
                write_vectors(target, site / "vectors" / manifest.bundle_name, log)
        if vectors:
            write_shared_vectors(site / "vectors")
        (site / "bundles.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        (site / MARKER).write_text(json.dumps({"salsdk_version": __version__, "runtimes": versions,
                                               "bundles": names}, indent=2) + "\n", encoding="utf-8")
        atomic.replace_folder(site, out)
    log(f"site -> {out} ({len(names)} bundle(s); runtimes {', '.join(f'{k} {v}' for k, v in versions.items())}); "
        f"serve it with: salsdk serve {out}")
    return out
