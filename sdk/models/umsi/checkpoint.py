"""The official UMSI Keras ``.h5`` checkpoint, read into :class:`~salsdk.models.umsi.network.UMSI` with h5py.

No Keras, no TensorFlow and no pickled code are involved: the arrays are read by name, transposed to PyTorch's
layout and copied after every layer, shape and (when the file has one) saved layer configuration was checked.

Checkpoint layout (h5py, weights only): a full-model file has the root attributes ``keras_version``, ``backend``,
``model_config`` (JSON) and the group ``model_weights``; a ``save_weights`` file has the layer groups at the root.
Each layer group ``<layer>`` lists its arrays in the attribute ``weight_names`` (``'<layer>/kernel:0'``, ...), stored
at ``<layer>/<layer>/kernel:0``. The names are those of the official code (:func:`keras_layer_table`); the four
Xception residual 1x1 convs and their BatchNorms were left unnamed there, so Keras numbered them
(``conv2d_1`` ... ``conv2d_4`` and ``batch_normalization_1`` ... ``batch_normalization_4`` in a fresh Keras 2.2
session; ``conv2d``, ``conv2d_1``, ... in tf.keras): :func:`load_keras_h5` matches them by that number's order.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from ...cards import ModelCard
from ...errors import WeightsError
from .network import ASPP, UMSI, SeparableConv2d

if TYPE_CHECKING:
    import h5py

# Array names inside each kind of Keras layer, in Keras' weight order.
KERAS_WEIGHTS = {
    "conv": ("kernel",),  # + "bias" when the torch conv has one
    "depthwise": ("depthwise_kernel",),
    "separable": ("depthwise_kernel", "pointwise_kernel"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}
RESIDUAL_CONV = "<conv2d #{}>"  # unnamed Keras layers, resolved by their auto-number (see load_keras_h5)
RESIDUAL_BN = "<batch_normalization #{}>"


@dataclass(frozen=True)
class KerasLayer:
    """One weighted Keras layer and the PyTorch module its arrays go to."""

    keras_name: str  # official layer name, or a RESIDUAL_* placeholder
    kind: str  # key of KERAS_WEIGHTS
    module: str  # dotted path in UMSI
    activation: str = "linear"  # the Keras layer's own activation (checked against model_config when present)

    def expected_keys(self, model: nn.Module) -> tuple[str, ...]:
        keys = KERAS_WEIGHTS[self.kind]
        if self.kind == "conv" and model.get_submodule(self.module).bias is not None:
            keys += ("bias",)
        return keys


def keras_layer_table() -> list[KerasLayer]:
    """Every weighted layer of the official Keras model, in build order, with its PyTorch module.

    Encoder (Keras applications names): ``block1_conv1``/``_bn``, ``block1_conv2``/``_bn``;
    ``block{2..13}_sepconv{i}`` (SeparableConv2D) and ``..._bn``; ``block14_sepconv{1,2}``/``_bn``; the residual
    projections of blocks 2, 3, 4, 13 (unnamed: ``<conv2d #k>``, ``<batch_normalization #k>``, k = 1..4).
    Head: ``aspp_csep0``, ``aspp0_BN``, ``aspp_csepd{6,12,18}_depthwise``/``_depthwise_BN``/``_pointwise``/
    ``_pointwise_BN``; ``global_conv``, ``global_BN``, ``global_dense``, ``out_classif``, ``dense_fusion``,
    ``concat_projection``, ``concat_projection_BN``, ``dec_c1`` ... ``dec_c5``, ``dec_c_out``.
    """
    t: list[KerasLayer] = [
        KerasLayer("block1_conv1", "conv", "encoder.block1_conv1"),
        KerasLayer("block1_conv1_bn", "bn", "encoder.block1_conv1_bn"),
        KerasLayer("block1_conv2", "conv", "encoder.block1_conv2"),
        KerasLayer("block1_conv2_bn", "bn", "encoder.block1_conv2_bn"),
    ]
    residual_blocks = {2: 1, 3: 2, 4: 3, 13: 4}  # block -> auto-number order of its projection
    for n, n_sep in [(2, 2), (3, 2), (4, 2)] + [(k, 3) for k in range(5, 13)] + [(13, 2)]:
        if n in residual_blocks:
            k = residual_blocks[n]
            t += [KerasLayer(RESIDUAL_CONV.format(k), "conv", f"encoder.block{n}.residual_conv"),
                  KerasLayer(RESIDUAL_BN.format(k), "bn", f"encoder.block{n}.residual_bn")]
        for i in range(1, n_sep + 1):
            t += [KerasLayer(f"block{n}_sepconv{i}", "separable", f"encoder.block{n}.sepconv{i}"),
                  KerasLayer(f"block{n}_sepconv{i}_bn", "bn", f"encoder.block{n}.sepconv{i}_bn")]
    for i in (1, 2):
        t += [KerasLayer(f"block14_sepconv{i}", "separable", f"encoder.block14_sepconv{i}"),
              KerasLayer(f"block14_sepconv{i}_bn", "bn", f"encoder.block14_sepconv{i}_bn")]
    t += [
        KerasLayer("global_conv", "conv", "global_net.conv"),
        KerasLayer("global_BN", "bn", "global_net.bn"),
        KerasLayer("global_dense", "dense", "global_net.dense"),
        KerasLayer("out_classif", "dense", "out_classif", "softmax"),
        KerasLayer("aspp_csep0", "conv", "aspp.conv0"),
        KerasLayer("aspp0_BN", "bn", "aspp.conv0_bn"),
    ]
    for j, rate in enumerate(ASPP.RATES):
        p = f"aspp_csepd{rate}"
        t += [KerasLayer(f"{p}_depthwise", "depthwise", f"aspp.branches.{j}.depthwise"),
              KerasLayer(f"{p}_depthwise_BN", "bn", f"aspp.branches.{j}.depthwise_bn"),
              KerasLayer(f"{p}_pointwise", "conv", f"aspp.branches.{j}.pointwise"),
              KerasLayer(f"{p}_pointwise_BN", "bn", f"aspp.branches.{j}.pointwise_bn")]
    t += [
        KerasLayer("dense_fusion", "dense", "dense_fusion"),
        KerasLayer("concat_projection", "conv", "concat_projection"),
        KerasLayer("concat_projection_BN", "bn", "concat_projection_bn"),
    ]
    t += [KerasLayer(f"dec_c{i}", "conv", f"decoder.c{i}", "relu") for i in range(1, 6)]
    t.append(KerasLayer("dec_c_out", "conv", "decoder.c_out", "relu"))
    return t


def _to_torch_layout(kind: str, key: str, array: np.ndarray) -> np.ndarray:
    """Keras array -> PyTorch layout: HWIO -> OIHW, depthwise HWC1 -> C1HW, Dense (in, out) -> (out, in)."""
    if key in ("kernel", "pointwise_kernel") and array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    if key == "depthwise_kernel":
        return array.transpose(2, 3, 0, 1)
    if kind == "dense" and key == "kernel":
        return array.T
    return array


def torch_targets(module: nn.Module, kind: str) -> dict[str, Tensor]:
    """The PyTorch tensors each Keras array name of ``kind`` is written to."""
    if kind == "conv":
        return {"kernel": module.weight, "bias": module.bias}
    if kind == "depthwise":
        return {"depthwise_kernel": module.weight}
    if kind == "separable":
        return {"depthwise_kernel": module.depthwise.weight, "pointwise_kernel": module.pointwise.weight}
    if kind == "bn":
        return {"gamma": module.weight, "beta": module.bias, "moving_mean": module.running_mean,
                "moving_variance": module.running_var}
    if kind == "dense":
        return {"kernel": module.weight, "bias": module.bias}
    raise KeyError(kind)


def decode_h5_text(value: object) -> str:
    """An h5 attribute string (Keras writes bytes) as ``str``."""
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _keras_layers(root: h5py.Group, path: Path) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(layer name, {array name: array}) of every layer group holding weights, in the file's layer order.

    Array names are the last component of each ``weight_names`` entry without ``:0`` (``'x/y/kernel:0'`` ->
    ``'kernel'``), so TF1 variable-name suffixes and scopes do not matter.
    """
    names = [decode_h5_text(n) for n in root.attrs["layer_names"]] if "layer_names" in root.attrs else list(root)
    for name in names:
        arrays: dict[str, np.ndarray] = {}
        try:
            group = root[name]
            for weight_name in (decode_h5_text(w) for w in group.attrs.get("weight_names", [])):
                key = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
                arrays[key] = np.asarray(group[weight_name])
        except KeyError as exc:
            raise ValueError(f"{path}: Keras layer '{name}' is listed but its arrays are missing ({exc})") from exc
        if arrays:
            yield name, arrays


def _auto_number(name: str, prefix: str) -> int | None:
    """Keras auto-name counter: ``conv2d`` -> 0, ``conv2d_3`` -> 3; None when ``name`` is not of that form."""
    m = re.fullmatch(re.escape(prefix) + r"(?:_(\d+))?", name)
    return None if m is None else int(m.group(1) or 0)


def _resolve_unnamed(layers: dict[str, dict[str, np.ndarray]], path: Path) -> dict[str, str]:
    """Map RESIDUAL_* placeholders to the file's auto-named layers, in auto-number order."""
    resolved: dict[str, str] = {}
    for placeholder, prefix in ((RESIDUAL_CONV, "conv2d"), (RESIDUAL_BN, "batch_normalization")):
        found = sorted((n, name) for name in layers if (n := _auto_number(name, prefix)) is not None)
        if len(found) != 4:
            raise ValueError(f"{path}: expected 4 unnamed '{prefix}_<n>' layers (the Xception residual "
                             f"projections of blocks 2, 3, 4, 13), found {[name for _, name in found]}")
        for k, (_, name) in enumerate(found, start=1):
            resolved[placeholder.format(k)] = name
    return resolved


def _layer_configs(h5: h5py.File) -> dict[str, dict]:
    """{layer name: Keras config} from a full-model file's ``model_config`` attribute (JSON; empty if absent)."""
    if "model_config" not in h5.attrs:
        return {}
    config = json.loads(decode_h5_text(h5.attrs["model_config"]))
    return {layer["config"]["name"]: layer for layer in config.get("config", {}).get("layers", [])}


def _check_config(spec: KerasLayer, name: str, config: dict, module: nn.Module, path: Path) -> None:
    """Compare a layer's saved Keras hyper-parameters with the PyTorch module (strides, dilation, epsilon...)."""
    cfg = config.get("config", {})
    expected: dict[str, object] = {}
    if spec.kind != "bn":
        expected["activation"] = spec.activation
    if isinstance(module, nn.BatchNorm2d):
        expected["epsilon"] = module.eps
    elif isinstance(module, nn.Conv2d):
        expected["strides"] = list(module.stride)
        expected["dilation_rate"] = list(module.dilation)
        expected["kernel_size"] = list(module.kernel_size)
        if module.kernel_size != (1, 1) or module.stride != (1, 1):  # 'same' == 'valid' for a 1x1 stride-1 conv
            expected["padding"] = getattr(module, "keras_padding", "same")
    elif isinstance(module, SeparableConv2d):
        expected.update(strides=[1, 1], dilation_rate=[1, 1], kernel_size=[3, 3], padding="same")
    for key, want in expected.items():
        if key in cfg and not _same_setting(cfg[key], want):
            raise ValueError(f"{path}: Keras layer '{name}' has {key}={cfg[key]!r}, this UMSI port uses {want!r}")


def _same_setting(got: object, want: object) -> bool:
    """Config equality: floats to 1e-6 relative, lists and tuples alike (JSON has no tuples)."""
    if isinstance(want, float):
        return isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-6)
    def as_list(value: object) -> object:
        return list(value) if isinstance(value, (list, tuple)) else value
    return as_list(got) == as_list(want)


def _check_upsampling(model: UMSI, configs: dict[str, dict], path: Path) -> None:
    """The decoder's saved ``UpSampling2D`` layers must be bilinear x2, x2, x4."""
    for i, name in enumerate(("dec_ups1", "dec_ups2", "dec_ups3"), start=1):
        cfg = configs.get(name, {}).get("config")
        if cfg is None:
            continue
        factor = getattr(model.decoder, f"ups{i}").factor
        if not _same_setting(cfg.get("size"), [factor, factor]) or cfg.get("interpolation", "nearest") != "bilinear":
            raise ValueError(f"{path}: Keras layer '{name}' is size={cfg.get('size')!r} "
                             f"interpolation={cfg.get('interpolation')!r}, expected [{factor}, {factor}] bilinear")


def load_keras_h5(model: UMSI, path: str | Path) -> None:
    """Load an official UMSI Keras ``.h5`` (full model or weights only) into ``model``, in place.

    Reads arrays with h5py only (no Keras, no deserialisation of code). Every layer of :func:`keras_layer_table`
    must be present with exactly the expected arrays and shapes, and every weighted layer of the file must be
    consumed; otherwise a ``ValueError`` names the file and the first offending layer. The four unnamed residual
    conv/BN pairs are taken in the order of their Keras auto-numbers (``conv2d[_k]``, ``batch_normalization[_k]``).
    When the file carries ``model_config``, saved activations, strides, dilations, kernel sizes, paddings, BatchNorm
    epsilons and the decoder's upsampling factors are checked too. Nothing is written unless everything matches.
    """
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with h5:
        root = h5["model_weights"] if "model_weights" in h5 else h5
        layers = dict(_keras_layers(root, path))
        configs = _layer_configs(h5)
    if not layers:
        raise ValueError(f"{path}: no Keras layer weights found (expected a Keras 2 .h5 model or weights file)")
    resolved = _resolve_unnamed(layers, path)
    _check_upsampling(model, configs, path)

    staged: list[tuple[Tensor, np.ndarray]] = []
    used: set[str] = set()
    for spec in keras_layer_table():
        name = resolved.get(spec.keras_name, spec.keras_name)
        if name not in layers:
            raise ValueError(f"{path}: Keras layer '{name}' ({spec.kind} -> {spec.module}) is missing")
        arrays = layers[name]
        want = spec.expected_keys(model)
        if set(arrays) != set(want):
            raise ValueError(f"{path}: Keras layer '{name}' holds arrays {sorted(arrays)}, expected {list(want)}")
        module = model.get_submodule(spec.module)
        if name in configs:
            _check_config(spec, name, configs[name], module, path)
        targets = torch_targets(module, spec.kind)
        for key in want:
            value = _to_torch_layout(spec.kind, key, arrays[key])
            target = targets[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{path}: Keras layer '{name}' array '{key}' has shape {arrays[key].shape}, "
                                 f"expected {_keras_shape(spec.kind, key, tuple(target.shape))} "
                                 f"(-> {spec.module}, {tuple(target.shape)})")
            staged.append((target, value))
        used.add(name)
    unused = [name for name in layers if name not in used]
    if unused:
        raise ValueError(f"{path}: Keras layer '{unused[0]}' has weights this UMSI port does not use "
                         f"({len(unused)} unused layer(s): {unused[:5]})")
    with torch.no_grad():
        for target, value in staged:
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))


def _keras_shape(kind: str, key: str, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Keras shape that maps onto ``torch_shape`` (for error messages)."""
    if key in ("kernel", "pointwise_kernel") and len(torch_shape) == 4:
        o, i, h, w = torch_shape
        return (h, w, i, o)
    if key == "depthwise_kernel":
        c, m, h, w = torch_shape
        return (h, w, c, m)
    if kind == "dense" and key == "kernel":
        return torch_shape[::-1]
    return torch_shape


def torch_tensors_covered() -> set[str]:
    """State-dict keys written by :func:`load_keras_h5` (all of UMSI's but ``num_batches_tracked``)."""
    with torch.device("meta"):
        model = UMSI()
    names = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    covered: set[str] = set()
    for spec in keras_layer_table():
        for key, tensor in torch_targets(model.get_submodule(spec.module), spec.kind).items():
            if tensor is not None and key in spec.expected_keys(model):
                covered.add(names[id(tensor)])
    return covered


def load_umsi_h5(model: UMSI, path: Path, card: ModelCard) -> None:
    """Checkpoint reader of the UMSI architecture: :func:`load_keras_h5`, its failures as :class:`WeightsError`."""
    try:
        load_keras_h5(model, path)
    except (ValueError, OSError, KeyError) as exc:
        raise WeightsError(f"{path} is not a usable UMSI Keras checkpoint: {exc}") from None
