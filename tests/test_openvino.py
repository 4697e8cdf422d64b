"""The OpenVINO format family: an IR folder (``model.xml`` + ``model.bin``) compiled for bf16 inference.

The bundle itself is made, gated and run with every other format by the session's UniSal bundles
(``test_zoo_and_formats``) and, with the official TinyHD-S x1/4 weights, by the conversion pipeline and streaming
tests. Here: the precision the IR asks for is the one the CPU runs, and the attacks a model *folder* invites
(a second file, weights swapped under an unchanged graph file, a link, an XML entity bomb) are refused.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import salsdk
from salsdk.artifact_metadata import OPENVINO_BIN, OPENVINO_XML, read_openvino
from salsdk.bench.machine import isa_flags
from salsdk.cli import main
from salsdk.errors import BundleError
from salsdk.manifest import EMBED_KEY, MANIFEST_NAME, tree_sha256, tree_size

pytest.importorskip("openvino")

BUNDLE = "UniSal-openvino-bf16"


@pytest.fixture()
def bundle(unisal_bundles, tmp_path) -> Path:
    copy = tmp_path / BUNDLE
    shutil.copytree(unisal_bundles / BUNDLE, copy)
    return copy


def _repin(bundle: Path) -> None:
    """Update manifest.json's pins to the model folder as it now is (what a careful attacker does)."""
    document = json.loads((bundle / MANIFEST_NAME).read_text())
    folder = bundle / document["model_file"]
    document["files"] = {document["model_file"]: {"sha256": tree_sha256(folder), "bytes": tree_size(folder)}}
    (bundle / MANIFEST_NAME).write_text(json.dumps(document))


def test_the_ir_runs_at_the_precision_it_was_gated_at(unisal_bundles):
    from skimage import data

    from salsdk.metrics import cc
    from salsdk.runtimes import open_runtime

    path = unisal_bundles / BUNDLE
    manifest = salsdk.read_manifest(path)
    assert manifest.format.precision == "bf16" and manifest.model_file == "model.openvino"
    assert sorted(p.name for p in (path / manifest.model_file).iterdir()) == [OPENVINO_BIN, OPENVINO_XML]
    assert manifest.graph_rewrite is None and manifest.tool_versions["openvino"]
    predictor = salsdk.load(path, threads=1)
    native_bf16 = bool({"amx_bf16", "avx512_bf16"} & set(isa_flags()))
    assert predictor.describe()["precision"] == ("bf16" if native_bf16 else "f32")
    assert "CPU, bf16" in predictor.executes() or not native_bf16
    image = data.chelsea()[::3, ::3]
    fp32 = salsdk.load(unisal_bundles / "UniSal-onnx-fp32").predict(image)
    ours = predictor.predict(image)
    assert cc(ours, fp32) > 0.995
    if native_bf16:  # bf16 arithmetic really ran: not bit-identical to fp32
        assert np.abs(ours - fp32).max() > 1e-4
    raw = open_runtime("openvino", path / manifest.model_file, threads=1)
    assert raw.input_hw == (96, 128) and raw.max_batch == 1


def test_the_manifest_reads_back_without_openvino(unisal_bundles):
    folder = unisal_bundles / BUNDLE / "model.openvino"
    embedded = json.loads(read_openvino(folder, EMBED_KEY))
    stored = json.loads((unisal_bundles / BUNDLE / MANIFEST_NAME).read_text())
    assert embedded == {k: v for k, v in stored.items() if k != "files"}
    assert read_openvino(folder, "no_such_entry") is None


def _extra_file(bundle: Path) -> None:
    (bundle / "model.openvino" / "notes.txt").write_text("harmless?")


def _weights_swapped(bundle: Path) -> None:
    weights = bundle / "model.openvino" / OPENVINO_BIN
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # other weights, same size, graph file (and its embedded manifest) unchanged
    weights.write_bytes(bytes(data))


def _linked_weights(bundle: Path) -> None:
    weights = bundle / "model.openvino" / OPENVINO_BIN
    outside = bundle.parent / "outside.bin"
    shutil.move(weights, outside)
    weights.symlink_to(outside)


def _entity_bomb(bundle: Path) -> None:
    xml = bundle / "model.openvino" / OPENVINO_XML
    text = xml.read_text(encoding="utf-8")
    head, rest = text.split("?>", 1)
    bomb = '<!DOCTYPE net [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    xml.write_text(head + "?>" + bomb + rest, encoding="utf-8")


FOLDER_ATTACKS = {
    "a file added to the model folder": (_extra_file, False, "bytes, the manifest pins"),
    "model.bin swapped, pins updated": (_weights_swapped, True, "not the weights file"),
    "model.bin a symbolic link": (_linked_weights, True, "symbolic link inside"),
    "an entity declaration in model.xml, pins updated": (_entity_bomb, True, "declares a DTD or entities"),
}


@pytest.mark.parametrize("attack", list(FOLDER_ATTACKS), ids=list(FOLDER_ATTACKS))
def test_model_folder_attacks_are_refused(attack, bundle, capsys):
    change, repin, says = FOLDER_ATTACKS[attack]
    change(bundle)
    if repin:
        _repin(bundle)
    with pytest.raises(BundleError, match=says):
        salsdk.load(bundle)
    assert main(["check", str(bundle)]) != 0
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and str(bundle) in err
