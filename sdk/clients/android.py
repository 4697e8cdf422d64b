"""Export a bundle to the Android demo: its assets, and test vectors the Kotlin core must reproduce.

:func:`export_android` accepts only bundles the app can run (TFLite, executed by LiteRT), verifies them
(:func:`salsdk.manifest.read_manifest`: schema, confinement, hashes, embedded copy), copies exactly the files the
manifest pins into ``android_demo/app/src/main/assets/bundle/`` (staged in a temporary folder, verified again
there, then renamed into place) and writes the shared test vectors (:mod:`salsdk.clients.vectors`) under
``android_demo/core/src/test/resources/vectors/<bundle name>/``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from .. import atomic
from ..errors import BundleError
from ..manifest import MANIFEST_NAME, SCHEMA_NAME, read_manifest
from ..paths import REPOSITORY
from .vectors import write_shared_vectors, write_vectors

DEFAULT_APP = REPOSITORY / "android_demo"
ASSETS = Path("app/src/main/assets/bundle")
VECTORS = Path("core/src/test/resources/vectors")
APP_RUNTIMES = ("litert",)  # what the demo app executes (LiteRT 1.x); see android_demo/README in the main README


def stage_bundle(bundle: Path, staged: Path) -> None:
    """Copy the verified files of ``bundle`` (its manifest and the files it pins, nothing else) into ``staged``
    and verify the copy."""
    manifest = read_manifest(bundle)
    shutil.copy2(bundle / MANIFEST_NAME, staged / MANIFEST_NAME)
    for name in manifest.files:
        source = bundle / name
        shutil.copytree(source, staged / name) if source.is_dir() else shutil.copy2(source, staged / name)
    read_manifest(staged)


def export_android(bundle: Path, app: Path = DEFAULT_APP, vectors: bool = True,
                   vectors_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Copy a verified bundle into the Android demo's assets and write its test vectors; return the assets copy.

    Args:
        bundle: a bundle folder written by ``salsdk convert`` whose runtime the app has (TFLite / LiteRT).
        app: the Android Studio project (default: ``android_demo/`` of this repository).
        vectors: also write the test vectors for the Kotlin core.
        vectors_dir: folder holding one vector folder per bundle (default ``<app>/core/src/test/resources/vectors``).
        log: progress messages.
    """
    bundle, app = Path(bundle), Path(app)
    manifest = read_manifest(bundle)
    if manifest.stored_schema != SCHEMA_NAME:
        raise BundleError(f"{bundle / MANIFEST_NAME} is {manifest.stored_schema}; the Android core reads {SCHEMA_NAME} "
                          f"only: convert the model again with this salsdk")
    if manifest.format.family == "pte":
        raise BundleError(f"{bundle} is an ExecuTorch bundle: this demo app runs TFLite bundles with LiteRT. On Android "
                          "a .pte runs with the ExecuTorch Android library (org.pytorch:executorch-android: "
                          "Module.load(path).forward(EValue.from(Tensor.fromBlob(input, shape)))) and the same "
                          ":core pre/post-processing; convert with --format tflite to use this app")
    if manifest.format.runtime not in APP_RUNTIMES:
        raise BundleError(f"{bundle} is a {manifest.format.key} bundle ({manifest.format.runtime}); the Android demo "
                          f"runs TFLite bundles with LiteRT: convert with --format tflite and export that bundle")
    assets = atomic.writable_folder(app / ASSETS.parent, "Android assets folder") / ASSETS.name
    with atomic.staging_folder(assets.parent, "bundle") as staged:
        stage_bundle(bundle, staged)
        atomic.replace_folder(staged, assets)
    log(f"bundle {bundle.name} -> {assets}")
    if vectors:
        root = atomic.writable_folder(Path(vectors_dir) if vectors_dir is not None else app / VECTORS, "vectors folder")
        with atomic.staging_folder(root, bundle.name) as work:
            write_vectors(bundle, work, log)
            atomic.replace_folder(work, root / bundle.name)
        write_shared_vectors(root)
        log(f"test vectors -> {root / bundle.name}")
    return assets
