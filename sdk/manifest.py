"""The one manifest format of artifact bundles (``manifest.json``), shared by Python, Android and iOS.

A bundle is a folder holding one model file (or ``.mlpackage``) and ``manifest.json``. The manifest says what the
model is (card, licence, weights provenance), how to feed it (input tensor, layout, dtype, pre-processing),
how to read it (outputs, post-processing), how it was made (format, quantization, tool versions) and how faithful
it is (the fidelity report measured at conversion). ``files`` pins every file's SHA-256 so that a bundle whose
files are missing, swapped or edited is refused. The same JSON, minus ``files``, is embedded in the model file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .cards import Preprocessing
from .contract import Contract
from .errors import BundleError

SCHEMA = "salsdk-manifest/1"
MANIFEST_NAME = "manifest.json"


def tree_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder (``.mlpackage``) as the hash of its sorted (relative path, file hash) list."""
    if path.is_file():
        from .weights import sha256_of

        return sha256_of(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        from .weights import sha256_of

        digest.update(f"{item.relative_to(path).as_posix()}\0{sha256_of(item)}\n".encode())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes of a file or of all files in a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pin_files(manifest: dict[str, Any], bundle: Path) -> dict[str, Any]:
    """Return ``manifest`` with ``files`` listing the SHA-256 and size of its model file."""
    name = manifest["model_file"]
    return {**manifest, "files": {name: {"sha256": tree_sha256(bundle / name), "bytes": tree_size(bundle / name)}}}


def read_manifest(bundle: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read and check a bundle's manifest; with ``verify`` also check every pinned file's hash.

    Raises :class:`BundleError` naming the bundle and what is wrong (missing manifest or file, unknown schema,
    hash mismatch).
    """
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a bundle folder (expected a folder with {MANIFEST_NAME})")
    if not path.is_file():
        raise BundleError(f"{bundle} has no {MANIFEST_NAME}: not a salsdk bundle, or an interrupted conversion")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"{path}: schema {manifest.get('schema')!r} is not {SCHEMA!r}")
    if verify:
        for name, pinned in manifest.get("files", {}).items():
            target = bundle / name
            if not target.exists():
                raise BundleError(f"{bundle}: {name} listed in the manifest is missing")
            actual = tree_sha256(target)
            if actual != pinned["sha256"]:
                raise BundleError(f"{bundle}: {name} has SHA-256 {actual}, but the manifest pins {pinned['sha256']}: "
                                  "the file was edited or swapped; convert again")
    return manifest


def contract_from_manifest(manifest: dict[str, Any]) -> Contract:
    """The pre/post-processing contract a runtime follows for this bundle."""
    pre = dict(manifest["input"]["preprocessing"])
    for key in ("size", "mean", "std", "pad_value"):
        if pre.get(key) is not None:
            pre[key] = tuple(pre[key])
    model = manifest["model"]
    return Contract(model["name"], model["task"], Preprocessing(**pre), model.get("temporal"),
                    tuple(model.get("class_names", ())), manifest["weights"]["trained"])
