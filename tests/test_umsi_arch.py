"""UMSI port: architecture, Keras .h5 loading, and numerical parity with the same network built in Keras.

The official checkpoint is not available here, so the Keras-side network is rebuilt below from the official
builder's description (``xception_cl_fus_aspp`` + ``xception_custom``: Xception with block-4/13 strides 1, ASPP,
global branch, class fusion, dilated decoder), given random weights, saved as a Keras 2 ``.h5`` and loaded with
:func:`salsdk.models.umsi.checkpoint.load_keras_h5`. Parity tests need ``tensorflow`` + ``tf-keras`` (the ``convert`` extra)
and skip without them (marked ``slow``: about 15 s each on 2 CPU cores); the loader's error paths are tested with
h5py alone.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from salsdk.geometry import letterbox_fit, uncrop_fit
from salsdk.models.umsi.checkpoint import RESIDUAL_BN, RESIDUAL_CONV, decode_h5_text, torch_targets, keras_layer_table, load_keras_h5, torch_tensors_covered
from salsdk.models.umsi.network import Conv2dSame, MaxPool2dSame, UMSI, UpsampleBilinear, build_umsi, tf_same_padding
from salsdk.models.umsi.zoo import OFFICIAL_CHECKPOINT_BYTES, UMSI_INPUT_SIZE, UMSI_MEAN_BGR, UMSI_NUM_CLASSES, UMSI_OUTPUT_SIZE

# 82x66 -> conv2 output 38x30 (even: max-pools pad 0 before, 1 after) -> encoder grid 10x8 (8 = 3k+2: the
# stride-3 global conv pads 0 before, 1 after). The official 240x320 only ever pads symmetrically.
SMALL = (82, 66)

# ----------------------------------------------------------------------------------------------------------------
# Torch-only checks
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> UMSI:
    torch.manual_seed(0)
    return build_umsi()


def test_parameter_count_and_official_file_size(model):
    params = sum(p.numel() for p in model.parameters())
    running = sum(v.numel() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var")))
    assert params == 29_850_799
    assert sum(p.numel() for p in model.encoder.parameters()) == 20_806_952  # Keras Xception (no top), trainable
    # Keras count_params() counts BN moving statistics too: 29,920,687 float32 = 119.68 MB of the official
    # 120,194,112-byte file (the rest: HDF5 metadata and the JSON model_config; no optimizer state).
    assert params + running == 29_920_687
    assert 0 < OFFICIAL_CHECKPOINT_BYTES - 4 * (params + running) < 1_000_000


def test_every_torch_tensor_is_mapped_from_exactly_one_keras_array(model):
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert torch_tensors_covered() == keys
    names = [spec.keras_name for spec in keras_layer_table()]
    assert len(names) == len(set(names)) == 107  # 80 in the encoder, 27 in the head


def test_output_geometry_and_probabilities(model):
    with torch.no_grad():
        heatmap, probs = model(torch.randn(1, 3, *SMALL) * 60)
    assert heatmap.shape == (1, 1, 160, 128)  # 16x the 10x8 encoder grid
    assert probs.shape == (1, UMSI_NUM_CLASSES)
    assert torch.allclose(probs.sum(1), torch.ones(1))
    assert heatmap.min() >= 0


def test_output_is_twice_the_official_input_size():
    with torch.device("meta"):
        heatmap, probs = build_umsi()(torch.zeros(1, 3, *UMSI_INPUT_SIZE))
    assert tuple(heatmap.shape[-2:]) == UMSI_OUTPUT_SIZE == (480, 640)


@pytest.mark.parametrize("size,kernel,stride,dilation,pads", [
    (117, 3, 2, 1, (1, 1)),  # block2_pool at 240x320
    (118, 3, 2, 1, (0, 1)),  # an even size: TF puts the odd pixel after
    (40, 3, 3, 1, (1, 1)),  # global_conv at 240x320 (30 -> (0, 0))
    (8, 3, 3, 1, (0, 1)),
    (30, 3, 1, 18, (18, 18)),  # aspp_csepd18_depthwise
])
def test_tf_same_padding(size, kernel, stride, dilation, pads):
    assert tf_same_padding(size, kernel, stride, dilation) == pads


def test_tf1_upsampling_matches_resize_bilinear_without_half_pixel_centres():
    x = torch.randn(1, 2, 3, 5)
    out = UpsampleBilinear(4, "tf1")(x)
    # reference: source coordinate j / 4, upper neighbour clamped to the last row/column
    ref = torch.empty(1, 2, 12, 20)
    for i in range(12):
        for j in range(20):
            y, xx = i / 4, j / 4
            y0, x0 = int(y), int(xx)
            y1, x1 = min(y0 + 1, 2), min(x0 + 1, 4)
            dy, dx = y - y0, xx - x0
            top = x[..., y0, x0] * (1 - dx) + x[..., y0, x1] * dx
            bottom = x[..., y1, x0] * (1 - dx) + x[..., y1, x1] * dx
            ref[..., i, j] = top * (1 - dy) + bottom * dy
    assert torch.allclose(out, ref, atol=1e-6)


def test_letterbox_and_uncrop_geometry():
    size = UMSI_INPUT_SIZE
    assert letterbox_fit((480, 640), size) == (0, 0, 240, 320)  # (top, left, height, width)
    assert letterbox_fit((1000, 500), size) == (0, 100, 240, 120)  # tall: fit rows, centre columns
    assert letterbox_fit((300, 1000), size) == (72, 0, 96, 320)  # wide: fit columns, centre rows
    assert letterbox_fit((300, 451), size) == (14, 0, 212, 320)  # 451 -> 320 gives 212.86 rows: rounded down
    assert uncrop_fit(UMSI_OUTPUT_SIZE, (1000, 500)) == ((1000, 1333), 0, 416)
    assert uncrop_fit(UMSI_OUTPUT_SIZE, (300, 1000)) == ((750, 1000), 225, 0)


@pytest.mark.parametrize("size", [(38, 30), (39, 41)])  # asymmetric and symmetric 'same' pads
def test_onnx_export_keeps_same_padding_and_tf1_resize(size, tmp_path):
    """Pads are Python ints (traced shape tensors made the exporter drop them); TF1 resize is Pad/Resize/Slice."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = torch.nn.Sequential(MaxPool2dSame(3, 2), Conv2dSame(4, 4, 3, stride=3), Conv2dSame(4, 4, 3, stride=2),
                              UpsampleBilinear(4, "tf1"), UpsampleBilinear(2, "tf2")).eval()
    x = torch.randn(1, 4, *size)
    path = tmp_path / "same.onnx"
    torch.onnx.export(net, (x,), path, input_names=["x"], opset_version=17, dynamo=False)
    (got,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5


# ----------------------------------------------------------------------------------------------------------------
# Loader error paths, on a Keras-layout .h5 written from the torch weights (h5py only)
# ----------------------------------------------------------------------------------------------------------------

def _to_keras_layout(kind: str, key: str, array: np.ndarray) -> np.ndarray:
    if key in ("kernel", "pointwise_kernel") and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if key == "depthwise_kernel":
        return array.transpose(2, 3, 0, 1)
    if kind == "dense" and key == "kernel":
        return array.T
    return array


def _names(values) -> np.ndarray:
    """An h5 string-list attribute as Keras writes it (fixed-length bytes)."""
    return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in values], dtype="S")


def write_keras_layout_h5(model: UMSI, path: Path, residual_names: list[tuple[str, str]]) -> None:
    """Weights-only Keras 2 layout: root ``layer_names``; ``<layer>/<layer>/<key>:0`` + ``weight_names``."""
    rename = {}
    for k, (conv, bn) in enumerate(residual_names, start=1):
        rename[RESIDUAL_CONV.format(k)], rename[RESIDUAL_BN.format(k)] = conv, bn
    with h5py.File(path, "w") as f:
        names = []
        for spec in keras_layer_table():
            name = rename.get(spec.keras_name, spec.keras_name)
            names.append(name)
            group = f.create_group(name)
            targets = torch_targets(model.get_submodule(spec.module), spec.kind)
            weight_names = []
            for key in spec.expected_keys(model):
                weight_names.append(f"{name}/{key}:0")
                group[weight_names[-1]] = _to_keras_layout(spec.kind, key, targets[key].detach().numpy())
            group.attrs["weight_names"] = _names(weight_names)
        f.create_group("dropout_1").attrs["weight_names"] = np.array([], dtype="S")  # weightless layers are listed too
        f.attrs["layer_names"] = _names(names + ["dropout_1"])


KERAS22_NAMES = [(f"conv2d_{k}", f"batch_normalization_{k}") for k in range(1, 5)]


@pytest.fixture(scope="module")
def keras_layout_h5(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("umsi") / "umsi_keras22_names.h5"
    write_keras_layout_h5(model, path, KERAS22_NAMES)
    return path


def test_loader_round_trip_with_keras22_auto_names(model, keras_layout_h5):
    other = build_umsi()
    load_keras_h5(other, keras_layout_h5)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.fixture()
def shapes_only() -> UMSI:
    """A UMSI on the meta device: enough for the loader's checks, nothing allocated."""
    with torch.device("meta"):
        return build_umsi()


def _mutated_copy(src: Path, tmp_path: Path, mutate) -> Path:
    dst = tmp_path / "mutated.h5"
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        mutate(f)
    return dst


def _drop(f: h5py.File, name: str) -> None:
    del f[name]
    f.attrs["layer_names"] = _names(n for n in f.attrs["layer_names"] if decode_h5_text(n) != name)


def test_loader_names_a_missing_layer(keras_layout_h5, tmp_path, shapes_only):
    path = _mutated_copy(keras_layout_h5, tmp_path, lambda f: _drop(f, "dec_c3"))
    with pytest.raises(ValueError, match=r"mutated\.h5: Keras layer 'dec_c3' \(conv -> decoder\.c3\) is missing"):
        load_keras_h5(shapes_only, path)


def test_loader_names_an_unused_layer(keras_layout_h5, tmp_path, shapes_only):
    def add_extra(f):
        f.create_group("extra_dense")["extra_dense/kernel:0"] = np.zeros((3, 3), np.float32)
        f["extra_dense"].attrs["weight_names"] = _names(["extra_dense/kernel:0"])
        f.attrs["layer_names"] = _names([*f.attrs["layer_names"], "extra_dense"])
    path = _mutated_copy(keras_layout_h5, tmp_path, add_extra)
    with pytest.raises(ValueError, match=r"Keras layer 'extra_dense' has weights this UMSI port does not use"):
        load_keras_h5(shapes_only, path)


def test_loader_names_a_wrong_shape(keras_layout_h5, tmp_path, shapes_only):
    def five_classes(f):
        for key in ("kernel", "bias"):
            data = f[f"out_classif/out_classif/{key}:0"][()]
            del f[f"out_classif/out_classif/{key}:0"]
            f[f"out_classif/out_classif/{key}:0"] = data[..., :5]
    path = _mutated_copy(keras_layout_h5, tmp_path, five_classes)
    with pytest.raises(ValueError, match=r"Keras layer 'out_classif' array 'kernel' has shape \(256, 5\), "
                                         r"expected \(256, 6\)"):
        load_keras_h5(shapes_only, path)
    with torch.device("meta"):
        load_keras_h5(build_umsi(num_classes=5), path)  # a 5-class variant loads into a 5-class model


def test_loader_names_an_extra_array_and_a_missing_residual(keras_layout_h5, tmp_path, shapes_only):
    def add_bias(f):
        f["dec_c_out/dec_c_out/extra:0"] = np.zeros(1, np.float32)
        f["dec_c_out"].attrs["weight_names"] = _names([*f["dec_c_out"].attrs["weight_names"], "dec_c_out/extra:0"])
    with pytest.raises(ValueError, match=r"Keras layer 'dec_c_out' holds arrays \['bias', 'extra', 'kernel'\]"):
        load_keras_h5(shapes_only, _mutated_copy(keras_layout_h5, tmp_path, add_bias))
    with pytest.raises(ValueError, match=r"expected 4 unnamed 'conv2d_<n>' layers"):
        load_keras_h5(shapes_only, _mutated_copy(keras_layout_h5, tmp_path, lambda f: _drop(f, "conv2d_2")))


def test_loader_checks_saved_hyperparameters(keras_layout_h5, tmp_path, shapes_only):
    def config(f, epsilon):
        layers = [{"class_name": "BatchNormalization", "config": {"name": "global_BN", "epsilon": epsilon}},
                  {"class_name": "UpSampling2D", "config": {"name": "dec_ups3", "size": [4, 4],
                                                             "interpolation": "bilinear"}}]
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
    load_keras_h5(shapes_only, _mutated_copy(keras_layout_h5, tmp_path, lambda f: config(f, 1e-5)))
    with pytest.raises(ValueError, match=r"Keras layer 'global_BN' has epsilon=0.001, this UMSI port uses 1e-05"):
        load_keras_h5(shapes_only, _mutated_copy(keras_layout_h5, tmp_path, lambda f: config(f, 1e-3)))


def test_loader_rejects_a_non_hdf5_file(tmp_path, shapes_only):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer instead of the file
    with pytest.raises(ValueError, match=r"weights\.h5: not a readable HDF5 file"):
        load_keras_h5(shapes_only, path)


# ----------------------------------------------------------------------------------------------------------------
# Parity with the same network in Keras (tf-keras, Keras 2 API: the official file's h5 layout)
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf_keras():
    for module in ("tensorflow", "tf_keras"):
        pytest.importorskip(module, exc_type=ImportError,
                            reason=f"{module} not importable (pip install 'salsdk[convert]'): "
                                   "Keras parity of the UMSI port is not checked")
    import tf_keras
    return tf_keras


def _tile_over(tensors):
    """Official fusion Lambda: (B, C) vector repeated over the (B, h, w, .) grid of the second tensor."""
    import tensorflow as tf
    vector, grid = tensors
    return tf.tile(vector[:, None, None, :], tf.stack([1, tf.shape(grid)[1], tf.shape(grid)[2], 1]))


def _resize_bilinear_tf1(t, factor):
    """Keras 2.2 / TF1 ``UpSampling2D(interpolation='bilinear')``: no half-pixel centres."""
    import tensorflow as tf
    return tf.compat.v1.image.resize_bilinear(t, tf.shape(t)[1:3] * factor, align_corners=False,
                                              half_pixel_centers=False)


def build_keras_umsi(tfk, upsampling: str = "tf2", num_classes: int = 6,
                     residual_names: list[tuple[str, str]] | None = None):
    """The official ``xception_cl_fus_aspp`` network in Keras; outputs (heatmap, probs, encoder features).

    ``upsampling='tf2'`` uses ``UpSampling2D`` (half-pixel under TF2); ``'tf1'`` replaces it by TF1's
    ``resize_bilinear(half_pixel_centers=False)``, what Keras 2.2 ran when the checkpoint was trained.
    ``residual_names`` names the four unnamed residual conv/BN pairs (None: let Keras number them).
    """
    layers = tfk.layers

    def bn(x, name, eps=1e-3):
        return layers.BatchNormalization(epsilon=eps, name=name)(x)

    def sepconv(x, filters, name):
        return layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)(x)

    names = iter(residual_names or [(None, None)] * 4)

    def residual(x, filters, stride):
        conv_name, bn_name = next(names)
        r = layers.Conv2D(filters, 1, strides=stride, padding="same", use_bias=False, name=conv_name)(x)
        return layers.BatchNormalization(name=bn_name)(r)

    inp = layers.Input((None, None, 3))
    x = layers.Conv2D(32, 3, strides=2, use_bias=False, name="block1_conv1")(inp)
    x = layers.Activation("relu")(bn(x, "block1_conv1_bn"))
    x = layers.Conv2D(64, 3, use_bias=False, name="block1_conv2")(x)
    x = layers.Activation("relu")(bn(x, "block1_conv2_bn"))
    # entry flow; blocks 4 and 13 keep stride 1 (xception_custom), hence output stride 8
    for block, widths, stride in ((2, (128, 128), 2), (3, (256, 256), 2), (4, (728, 728), 1)):
        r = residual(x, widths[-1], stride)
        for i, w in enumerate(widths, start=1):
            if block > 2 or i > 1:
                x = layers.Activation("relu")(x)
            x = bn(sepconv(x, w, f"block{block}_sepconv{i}"), f"block{block}_sepconv{i}_bn")
        x = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"block{block}_pool")(x)
        x = layers.add([x, r])
    for block in range(5, 13):
        r = x
        for i in (1, 2, 3):
            x = layers.Activation("relu")(x)
            x = bn(sepconv(x, 728, f"block{block}_sepconv{i}"), f"block{block}_sepconv{i}_bn")
        x = layers.add([x, r])
    r = residual(x, 1024, 1)
    for i, w in ((1, 728), (2, 1024)):
        x = layers.Activation("relu")(x)
        x = bn(sepconv(x, w, f"block13_sepconv{i}"), f"block13_sepconv{i}_bn")
    x = layers.add([layers.MaxPooling2D(3, strides=1, padding="same", name="block13_pool")(x), r])
    x = layers.Activation("relu")(bn(sepconv(x, 1536, "block14_sepconv1"), "block14_sepconv1_bn"))
    features = layers.Activation("relu", name="block14_sepconv2_act")(
        bn(sepconv(x, 2048, "block14_sepconv2"), "block14_sepconv2_bn"))

    # global_net -> classifier
    g = layers.Conv2D(256, 3, strides=3, padding="same", use_bias=False, name="global_conv")(features)
    g = layers.Activation("relu")(bn(g, "global_BN", 1e-5))
    g = layers.Dropout(0.3)(g)
    g = layers.Dense(256, name="global_dense")(layers.GlobalAveragePooling2D()(g))
    g = layers.Dropout(0.3)(g)
    probs = layers.Dense(num_classes, activation="softmax", name="out_classif")(g)

    # ASPP
    branches = [layers.Activation("relu", name="aspp0_activation")(
        bn(layers.Conv2D(256, 1, padding="same", use_bias=False, name="aspp_csep0")(features), "aspp0_BN", 1e-5))]
    for rate in (6, 12, 18):
        p = f"aspp_csepd{rate}"
        b = layers.DepthwiseConv2D(3, dilation_rate=rate, padding="same", use_bias=False,
                                   name=f"{p}_depthwise")(features)
        b = layers.Activation("relu")(bn(b, f"{p}_depthwise_BN", 1e-5))
        b = layers.Conv2D(256, 1, padding="same", use_bias=False, name=f"{p}_pointwise")(b)
        branches.append(layers.Activation("relu")(bn(b, f"{p}_pointwise_BN", 1e-5)))
    aspp = layers.Concatenate()(branches)

    # fusion: dense_fusion tiled over the ASPP grid, concatenated after it
    fused = layers.Dense(256, name="dense_fusion")(g)
    tiled = layers.Lambda(_tile_over, name="lambda_1")([fused, aspp])
    x = layers.Concatenate()([aspp, tiled])
    x = layers.Conv2D(256, 1, padding="same", use_bias=False, name="concat_projection")(x)
    x = layers.Dropout(0.3)(layers.Activation("relu")(bn(x, "concat_projection_BN", 1e-5)))

    def upsample(x, factor, name):
        if upsampling == "tf2":
            return layers.UpSampling2D(factor, interpolation="bilinear", name=name)(x)
        return layers.Lambda(_resize_bilinear_tf1, arguments={"factor": factor}, name=name)(x)

    def conv(x, filters, name):
        return layers.Conv2D(filters, 3, padding="same", activation="relu", dilation_rate=2, name=name)(x)

    x = layers.Dropout(0.3)(conv(conv(x, 256, "dec_c1"), 256, "dec_c2"))
    x = upsample(x, 2, "dec_ups1")
    x = layers.Dropout(0.3)(conv(conv(x, 128, "dec_c3"), 128, "dec_c4"))
    x = upsample(x, 2, "dec_ups2")
    x = layers.Dropout(0.3)(conv(x, 64, "dec_c5"))
    x = upsample(x, 4, "dec_ups3")
    heatmap = layers.Conv2D(1, 1, padding="same", activation="relu", name="dec_c_out")(x)
    return tfk.Model(inp, [heatmap, probs, features], name="xception_cl_fus_aspp")


def randomize(tfk, keras_model, seed: int, shape: tuple[int, int]) -> None:
    """Random weights, biases and BN affine terms; BN moving statistics calibrated on a random ``shape`` image.

    Calibration (one training-mode pass with BN momentum 0, so moving mean/variance become the batch statistics)
    keeps activations O(1) through the 36 conv layers, so the outputs are neither saturated nor dead.
    """
    rng = np.random.default_rng(seed)
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        new = []
        for var in layer.weights:
            name, dims = var.name.rsplit("/", 1)[-1].split(":")[0], tuple(var.shape)
            if name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                fan_in = int(np.prod(dims[:2] if name == "depthwise_kernel" else dims[:-1]))
                w = rng.normal(0, np.sqrt(2.0 / fan_in), dims)
            elif name == "gamma":
                w = rng.uniform(0.5, 1.5, dims)
            elif name in ("beta", "bias"):
                w = rng.uniform(-0.2, 0.2, dims)
            else:  # moving statistics: overwritten by the calibration below
                w = np.zeros(dims) if name == "moving_mean" else np.ones(dims)
            new.append(w.astype(np.float32))
        layer.set_weights(new)
    bns = [layer for layer in keras_model.layers if isinstance(layer, tfk.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    keras_model(bgr_like_input(shape, seed + 100), training=True)
    for layer in bns:
        layer.momentum = 0.99


def bgr_like_input(shape: tuple[int, int], seed: int, batch: int = 1) -> np.ndarray:
    """Random 0-255 pixels minus the official BGR means, NHWC, with a zero-padded (black) letterbox band."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch, *shape, 3))
    x[:, : shape[0] // 8] = 0  # letterbox band (black before mean subtraction)
    return (x - np.array(UMSI_MEAN_BGR)).astype(np.float32)


def _compare(keras_model, path: Path, upsampling: str, shape: tuple[int, int], seed: int,
             dtype: torch.dtype = torch.float32) -> dict[str, float]:
    x = bgr_like_input(shape, seed).astype(np.float64 if dtype == torch.float64 else np.float32)
    k_heat, k_probs, k_feat = (np.asarray(t) for t in keras_model(x, training=False))
    torch_model = build_umsi(upsampling=upsampling).to(dtype)
    load_keras_h5(torch_model, path)
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        t_feat = torch_model.encoder(t).permute(0, 2, 3, 1).numpy()
        t_heat, t_probs = torch_model(t)
    t_heat = t_heat.permute(0, 2, 3, 1).numpy()
    assert t_heat.shape == k_heat.shape and t_probs.shape == k_probs.shape
    assert (k_heat > 0).mean() > 0.1, "degenerate random net: heatmap mostly zero"
    assert k_probs.max() < 0.99, "degenerate random net: saturated softmax"
    return {
        "heat_max": float(np.abs(k_heat).max()),
        "heat_abs": float(np.abs(t_heat - k_heat).max()),
        "heat_rel": float(np.abs(t_heat - k_heat).max() / np.abs(k_heat).max()),
        "probs_abs": float(np.abs(t_probs.numpy() - k_probs).max()),
        "feat_rel": float(np.abs(t_feat - k_feat).max() / np.abs(k_feat).max()),
    }


@pytest.mark.slow
def test_keras_parity_official_geometry_full_model_file(tf_keras, tmp_path):
    """240x320 float32, a ``model.save`` file (model_weights + model_config), Keras 2.2-style residual names."""
    keras_model = build_keras_umsi(tf_keras, "tf2", residual_names=KERAS22_NAMES)
    randomize(tf_keras, keras_model, seed=1, shape=UMSI_INPUT_SIZE)
    assert keras_model.count_params() == 29_920_687  # = torch parameters + BN running statistics
    path = tmp_path / "umsi_full.h5"
    keras_model.save(path, include_optimizer=False, save_format="h5")
    with h5py.File(path) as f:
        assert "model_weights" in f and "model_config" in f.attrs
    stats = _compare(keras_model, path, "tf2", UMSI_INPUT_SIZE, seed=2)
    print("UMSI Keras parity, 240x320 float32:", stats)
    # float32 accumulation-order noise over 36 conv layers (measured: 8.7e-5 abs on a heatmap peaking at 4.4)
    assert stats["heat_abs"] < 1e-4 * max(1.0, stats["heat_max"]), stats
    assert stats["probs_abs"] < 1e-5, stats
    assert stats["feat_rel"] < 1e-4, stats


@pytest.fixture()
def keras_float64(tf_keras):
    tf_keras.backend.set_floatx("float64")
    yield tf_keras
    tf_keras.backend.set_floatx("float32")


@pytest.mark.slow
def test_keras_parity_tf1_upsampling_odd_size_auto_names(keras_float64, tmp_path):
    """82x66 float64 (asymmetric 'same' pads in two pools and the stride-3 conv), TF1 resize, auto names.

    float64 shows the port computes the same function, not merely close: what remains is the float32 cast
    TensorFlow's bilinear resize always applies.
    """
    keras_model = build_keras_umsi(keras_float64, "tf1")
    randomize(keras_float64, keras_model, seed=3, shape=SMALL)
    path = tmp_path / "umsi_weights.h5"
    keras_model.save_weights(path, save_format="h5")
    stats = _compare(keras_model, path, "tf1", SMALL, seed=4, dtype=torch.float64)
    print("UMSI Keras parity, 82x66 float64, TF1 resize:", stats)
    assert stats["heat_rel"] < 1e-6, stats
    assert stats["probs_abs"] < 1e-9, stats
    assert stats["feat_rel"] < 1e-12, stats


# ----------------------------------------------------------------------------------------------------------------
# End to end against the official pipeline (sal_imp_utilities: cv2 padding, BGR means, postprocess_predictions)
# ----------------------------------------------------------------------------------------------------------------
def official_padding(img: np.ndarray, shape_r: int, shape_c: int) -> np.ndarray:
    """``sal_imp_utilities.padding`` as released (the test's oracle): float rates, integer division, cv2 resize."""
    import cv2

    padded = np.zeros((shape_r, shape_c, 3), dtype=np.uint8)
    rows_rate, cols_rate = img.shape[0] / shape_r, img.shape[1] / shape_c
    if rows_rate > cols_rate:
        new_cols = (img.shape[1] * shape_r) // img.shape[0]
        img = cv2.resize(img, (new_cols, shape_r))
        new_cols = min(new_cols, shape_c)
        padded[:, (shape_c - new_cols) // 2:(shape_c - new_cols) // 2 + new_cols] = img
    else:
        new_rows = (img.shape[0] * shape_c) // img.shape[1]
        img = cv2.resize(img, (shape_c, new_rows))
        new_rows = min(new_rows, shape_r)
        padded[(shape_r - new_rows) // 2:(shape_r - new_rows) // 2 + new_rows, :] = img
    return padded


def official_postprocess(pred: np.ndarray, shape_r: int, shape_c: int) -> np.ndarray:
    """``postprocess_predictions`` as released, without its final rescale to 0-255 (CC ignores it)."""
    import cv2

    rows_rate, cols_rate = shape_r / pred.shape[0], shape_c / pred.shape[1]
    if rows_rate > cols_rate:
        new_cols = (pred.shape[1] * shape_r) // pred.shape[0]
        pred = cv2.resize(pred, (new_cols, shape_r))
        return pred[:, (pred.shape[1] - shape_c) // 2:(pred.shape[1] - shape_c) // 2 + shape_c]
    new_rows = (pred.shape[0] * shape_c) // pred.shape[1]
    pred = cv2.resize(pred, (shape_c, new_rows))
    return pred[(pred.shape[0] - shape_r) // 2:(pred.shape[0] - shape_r) // 2 + shape_r, :]


def official_box(h: int, w: int, rows: int, cols: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) the official padding pastes an (h, w) image at, read off its arithmetic.

    Where the official code's scaled side is 0 pixels (it then fails in cv2.resize), salsdk keeps 1 pixel."""
    if h / rows > w / cols:
        new_cols = max(1, min((w * rows) // h, cols))
        return 0, (cols - new_cols) // 2, rows, new_cols
    new_rows = max(1, min((h * cols) // w, rows))
    return (rows - new_rows) // 2, 0, new_rows, cols


def official_uncrop(mh: int, mw: int, h: int, w: int) -> tuple[tuple[int, int], int, int]:
    """``postprocess_predictions``'s resize and crop: ((resize_h, resize_w), top, left)."""
    if h / mh > w / mw:
        new_cols = (mw * h) // mh
        return (h, new_cols), 0, (new_cols - w) // 2
    new_rows = (mh * w) // mw
    return (new_rows, w), (new_rows - h) // 2, 0


def test_letterbox_geometry_is_the_official_rule_over_thousands_of_sizes():
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 4000, size=(4000, 2))]
    sizes += [(h, w) for h in range(1, 60) for w in range(1, 60)]  # every small size: ties and 1-pixel sides
    targets = [UMSI_INPUT_SIZE, (96, 128), (480, 640), (320, 240)]
    differ = []
    for k, (h, w) in enumerate(sizes):
        rows, cols = targets[k % len(targets)]
        if letterbox_fit((h, w), (rows, cols)) != official_box(h, w, rows, cols):
            differ.append(("fit", h, w, rows, cols))
        if uncrop_fit((2 * rows, 2 * cols), (h, w)) != official_uncrop(2 * rows, 2 * cols, h, w):
            differ.append(("uncrop", h, w, rows, cols))
    assert len(sizes) > 7000 and not differ, differ[:10]


@pytest.mark.slow
def test_end_to_end_maps_equal_the_official_pipeline_on_non_square_images(tf_keras, tmp_path):
    """A model in the official format (Keras .h5), run by the official pre/post-processing (cv2) and by
    ``salsdk.load('UMSI', weights=...)``, gives the same heat maps on images whose fitted side is not whole.

    The weights are salsdk's stand-in (normalised like a trained network, :mod:`salsdk.standins`): a raw random
    Xception is chaotic, and cv2's fixed-point resize (1 grey level on ~10% of pixels) alone moves its maps to
    CC 0.98, which would hide what this test is about, the geometry.
    """
    import cv2
    from skimage import data

    import salsdk
    from salsdk.metrics import cc

    path = tmp_path / "umsi_official_layout.h5"
    write_keras_layout_h5(salsdk.create_model("UMSI", weights=None), path, KERAS22_NAMES)
    keras_model = build_keras_umsi(tf_keras, "tf1", residual_names=KERAS22_NAMES)  # as Keras 2.2 / TF1 ran it
    keras_model.load_weights(str(path), by_name=True)
    predictor = salsdk.load("UMSI", weights=path)
    for h, w in [(300, 451), (451, 300), (7, 1000), (333, 500)]:
        rgb = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)
        x = official_padding(np.ascontiguousarray(rgb[..., ::-1]), *UMSI_INPUT_SIZE).astype(np.float64)
        x -= np.array(UMSI_MEAN_BGR)
        heat = np.asarray(keras_model(x[None].astype(np.float32), training=False)[0])[0, :, :, 0]
        assert (heat > 0).mean() > 0.2, "degenerate heat map"
        official = official_postprocess(heat, h, w)
        ours = predictor.predict(rgb)
        assert ours.shape == official.shape == (h, w)
        assert cc(ours, official) >= 0.999, (h, w, cc(ours, official))
