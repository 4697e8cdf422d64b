"""The bundle contract under attack: a bundle that was edited, redirected or swapped never runs.

Every attack is applied to a copy of a real bundle (UniSal TFLite fp32, random init) and must be refused, with a
one-line error that names the bundle, by each entry point: ``salsdk.load``, ``salsdk predict``, ``salsdk check``,
``salsdk bench`` and ``salsdk export android``. Further tests edit each manifest field in turn, and feed malformed
manifests to the reader.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

import salsdk
import salsdk.clients.android
from salsdk.cli import main
from salsdk.errors import BundleError
from salsdk.manifest import MANIFEST_NAME, SCHEMA, SCHEMA_FILE, read_manifest, schema_json

KEY = "tflite-fp32"
Attack = Callable[[Path, Path], None]  # (bundle copy, a scratch folder outside it)


def _document(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text())


def _write(bundle: Path, document) -> None:
    (bundle / MANIFEST_NAME).write_text(json.dumps(document))


def _edit(change: Callable[[dict], None]) -> Attack:
    def attack(bundle: Path, _scratch: Path) -> None:
        document = _document(bundle)
        change(document)
        _write(bundle, document)
    return attack


def _redirect(target: Callable[[Path, Path], str]) -> Attack:
    """model_file redirected to another file, with that file's real size and hash pinned."""
    def attack(bundle: Path, scratch: Path) -> None:
        from salsdk.manifest import tree_sha256

        document = _document(bundle)
        name = target(bundle, scratch)
        resolved = (bundle / name) if not os.path.isabs(name) else Path(name)
        document["model_file"] = name
        document["files"] = {name: {"sha256": tree_sha256(resolved), "bytes": resolved.stat().st_size}}
        _write(bundle, document)
    return attack


def _outside_copy(bundle: Path, scratch: Path) -> str:
    other = scratch / "other.tflite"
    shutil.copy2(bundle / _document(bundle)["model_file"], other)
    return str(other)


def _symlink_out(bundle: Path, scratch: Path) -> None:
    model = bundle / _document(bundle)["model_file"]
    outside = scratch / "outside.tflite"
    shutil.move(model, outside)
    model.symlink_to(outside)  # same bytes, same hash: but the file lives outside the bundle


def _swap_model(sibling: str) -> Attack:
    """The model file replaced by another bundle's (with its pins updated, as a careful attacker would)."""
    def attack(bundle: Path, _scratch: Path) -> None:
        from salsdk.manifest import tree_sha256

        source = bundle.parent.parent / "originals" / sibling
        document = _document(bundle)
        model = bundle / document["model_file"]
        shutil.copy2(source / _document(source)["model_file"], model)
        document["files"] = {document["model_file"]: {"sha256": tree_sha256(model), "bytes": model.stat().st_size}}
        _write(bundle, document)
    return attack


def _appended_byte(bundle: Path, _scratch: Path) -> None:
    with open(bundle / _document(bundle)["model_file"], "ab") as handle:
        handle.write(b"\0")


ATTACKS: dict[str, tuple[Attack, str]] = {
    "absolute model_file outside the bundle": (_redirect(_outside_copy), "not a plain name|does not match"),
    "model_file ../../../etc/passwd": (_redirect(lambda b, s: os.path.relpath("/etc/passwd", b)),
                                       "not a plain name|does not match"),
    "model_file /etc/passwd": (_redirect(lambda b, s: "/etc/passwd"), "not a plain name|does not match"),
    "files section deleted": (_edit(lambda d: d.pop("files")), "files"),
    "files emptied": (_edit(lambda d: d.__setitem__("files", {})), "files"),
    "files without sha256": (_edit(lambda d: [e.pop("sha256") for e in d["files"].values()]), "sha256"),
    "declared size 1e12 bytes": (_edit(lambda d: [e.__setitem__("bytes", 10**12) for e in d["files"].values()]),
                                 "bytes"),
    "symlinked model file pointing out": (_symlink_out, "symbolic link"),
    "model file swapped (pins updated)": (_swap_model("UniSal-tflite-int8"), "differs from the manifest embedded"),
    "model file edited": (_appended_byte, "bytes, the manifest pins"),
    "model file deleted": (lambda b, s: (b / _document(b)["model_file"]).unlink(), "missing"),
    "pre-processing edited": (_edit(lambda d: d["preprocessing"].__setitem__("mean", [0.5, 0.5, 0.5])),
                              "differs from the manifest embedded"),
    "labels edited": (_edit(lambda d: d["model"].__setitem__("name", "UMSI")), "differs from the manifest embedded"),
    "output sigmoid switched on": (_edit(lambda d: d["outputs"][0].__setitem__("activation", "sigmoid")),
                                   "differs from the manifest embedded"),
    "output activation relu": (_edit(lambda d: d["outputs"][0].__setitem__("activation", "relu")), "activation"),
    "fidelity edited": (_edit(lambda d: d["fidelity"].__setitem__("cc_min", 1.0)), "differs from the manifest embedded"),
    "schema from the future": (_edit(lambda d: d.update(schema="salsdk-manifest/9", salsdk_version="9.1.0")),
                               r"needs salsdk >= 9\.1\.0"),
    "runtime tensorrt": (_edit(lambda d: d["format"].__setitem__("runtime", "tensorrt")), "runtime"),
    "no input": (_edit(lambda d: d.pop("input")), "input"),
    "frames 1e9": (_edit(lambda d: d.__setitem__("temporal", {"mode": "miso", "frames": 10**9})), "frames"),
    "a JSON list": (lambda b, s: _write(b, [1, 2, 3]), "JSON object"),
    "not JSON": (lambda b, s: (b / MANIFEST_NAME).write_text("{'schema':"), "not valid JSON"),
    "empty manifest": (lambda b, s: (b / MANIFEST_NAME).write_text(""), "not valid JSON"),
    "manifest deleted": (lambda b, s: (b / MANIFEST_NAME).unlink(), r"no manifest\.json|no bundles \(folders with manifest"),
}


@pytest.fixture(scope="module")
def originals(unisal_bundles, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contract") / "originals"
    for key in (KEY, "tflite-int8"):
        shutil.copytree(unisal_bundles / f"UniSal-{key}", root / f"UniSal-{key}")
    return root


@pytest.fixture(params=list(ATTACKS), ids=list(ATTACKS))
def attacked(request, originals, tmp_path) -> tuple[Path, str]:
    """A copy of the bundle with one attack applied, and the pattern its refusal must contain."""
    attack, says = ATTACKS[request.param]
    work = originals.parent / f"attacked-{tmp_path.name}"
    bundle = work / f"UniSal-{KEY}"
    shutil.copytree(originals / f"UniSal-{KEY}", bundle)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    attack(bundle, scratch)
    yield bundle, says
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("contract_image") / "coffee.png"
    Image.fromarray(data.coffee()[::4, ::4]).save(path)
    return path


def test_the_untouched_bundle_runs(originals, image, tmp_path):
    predictor = salsdk.load(originals / f"UniSal-{KEY}")
    assert predictor.predict(np.asarray(Image.open(image))).shape == (100, 150)
    assert main(["predict", str(image), "--model", str(originals / f"UniSal-{KEY}"), "--out", str(tmp_path)]) == 0


def _refused_by_cli(argv: list[str], bundle: Path, says: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    assert str(bundle) in err[0] and re.search(says, err[0]), err[0]


def test_load_refuses(attacked):
    bundle, says = attacked
    with pytest.raises(BundleError, match=says) as refused:
        salsdk.load(bundle)
    assert str(bundle) in str(refused.value)


def test_predict_refuses(attacked, image, tmp_path, capsys):
    bundle, says = attacked
    out = tmp_path / "maps"
    _refused_by_cli(["predict", str(image), "--model", str(bundle), "--out", str(out)], bundle, says, capsys)
    assert not out.exists() or not any(out.iterdir())


def test_check_refuses(attacked, capsys):
    bundle, says = attacked
    _refused_by_cli(["check", str(bundle), "--no-reference"], bundle, says, capsys)


def test_bench_refuses(attacked, tmp_path, capsys):
    bundle, says = attacked
    _refused_by_cli(["bench", "--bundles", str(bundle), "--runs", "1", "--db", str(tmp_path / "db.sqlite"),
                     "--out", str(tmp_path / "report"), "--quiet"], bundle, says, capsys)


def test_export_android_refuses(attacked, tmp_path, capsys):
    bundle, says = attacked
    app = tmp_path / "app"
    _refused_by_cli(["export", "android", "--bundle", str(bundle), "--app", str(app)], bundle, says, capsys)
    assert not app.exists() or not any(p.is_file() for p in app.rglob("*"))


def _leaves(value, path=()):
    """Every leaf of a JSON document as (path, value)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    else:
        yield path, value


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if value == 0 else value * 0.5
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    return [0] if isinstance(value, list) else {"x": 1}


def test_every_manifest_field_edited_in_turn_is_refused(originals, tmp_path):
    """Each leaf of manifest.json changed on its own: the reader refuses every one (schema, pins or embedded copy)."""
    source = originals / f"UniSal-{KEY}"
    document = _document(source)
    leaves = [p for p, _ in _leaves(document)]
    assert len(leaves) > 100
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle)
    accepted = []
    for path in leaves:
        edited = json.loads(json.dumps(document))
        parent = edited
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = _changed(parent[path[-1]])
        _write(bundle, edited)
        try:
            read_manifest(bundle)
            accepted.append(path)
        except BundleError as exc:
            assert str(bundle) in str(exc)
    assert not accepted, f"edits that went unnoticed: {accepted}"


def test_the_json_schema_in_the_repository_is_the_manifest_type(originals):
    """sdk/schemas holds exactly the schema the manifest module validates with, and real manifests pass it."""
    from salsdk.schema_check import validate

    assert SCHEMA_FILE.read_text() == schema_json()
    validate(_document(originals / f"UniSal-{KEY}"), json.loads(SCHEMA_FILE.read_text()))
    assert SCHEMA["properties"]["schema"]["const"] == read_manifest(originals / f"UniSal-{KEY}").stored_schema


def _as_v1(document: dict) -> dict:
    """A current manifest written the way salsdk 0.1 wrote it (salsdk-manifest/1)."""
    v1 = {k: v for k, v in document.items() if k not in ("preprocessing", "temporal", "files")}
    frames = document["temporal"]["frames"] if document["temporal"] else 1
    v1["schema"] = "salsdk-manifest/1"
    v1["input"] = {**document["input"], "preprocessing": {**document["preprocessing"], "frames": frames}}
    v1["outputs"] = [{k: v for k, v in o.items() if k != "role"} for o in document["outputs"]]
    v1["model"] = {**{k: v for k, v in document["model"].items() if k != "architecture"},
                   "temporal": document["temporal"]["mode"] if document["temporal"] else None}
    return v1


def test_a_version_1_bundle_still_loads(originals, tmp_path):
    """A bundle of the previous schema (embedded and pinned as salsdk 0.1 wrote it) verifies and loads, upgraded
    in memory; the Android export, whose core reads the current schema only, asks for a new conversion."""
    from salsdk.convert.formats import FORMATS_BY_KEY
    from salsdk.manifest import SCHEMA_NAME, tree_sha256

    bundle = tmp_path / "v1"
    shutil.copytree(originals / f"UniSal-{KEY}", bundle)
    v1 = _as_v1(_document(bundle))
    model = bundle / v1["model_file"]
    FORMATS_BY_KEY[KEY].embed_manifest(model, json.dumps(v1, sort_keys=True))
    _write(bundle, {**v1, "files": {model.name: {"sha256": tree_sha256(model), "bytes": model.stat().st_size}}})
    manifest = read_manifest(bundle)
    current = read_manifest(originals / f"UniSal-{KEY}")
    assert manifest.stored_schema == "salsdk-manifest/1" and manifest.to_dict()["schema"] == SCHEMA_NAME
    assert manifest.preprocessing == current.preprocessing and manifest.outputs == current.outputs
    assert salsdk.load(bundle).predict(np.zeros((40, 50, 3), np.uint8)).shape == (40, 50)
    with pytest.raises(BundleError, match="convert the model again"):
        salsdk.clients.android.export_android(bundle, app=tmp_path / "app", log=lambda _: None)
