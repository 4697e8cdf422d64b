"""Core ML exporter (ML Program, fp16 compute; optional 8-bit weights) and a PyTorch simulation of its numerics.

``coreml-fp16``: ``ct.convert`` of ``torch.jit.trace(model)`` to an ML Program (``minimum_deployment_target``
iOS 16, ``compute_precision=FLOAT16``: weights and activations in float16, float32 outputs).
``coreml-w8``: the same program, then ``ct.optimize.coreml.linear_quantize_weights`` (int8, linear symmetric,
per output channel; tensors of at most :data:`WEIGHT_THRESHOLD` elements stay float16).

Input: an ``ImageType`` (8-bit RGB/BGR image, normalised inside the model as ``x = scale * pixel + bias``) when
the contract's normalisation has that form, i.e. an image model whose ``std`` is the same for the three channels
(KDSalBox: scale 1/255, bias 0; UMSI: scale 1, bias -mean, BGR); otherwise (per-channel std such as TinyHD's
ImageNet statistics, or clips) a float32 ``TensorType`` in canonical layout. The choice and its transform are
stored in the package's ``salsdk_input`` metadata.

PyTorch frontend: ``torch.jit.trace`` first, ``torch.export`` as a fallback when the traced graph cannot be
converted. During a conversion two gaps of coremltools 9.0 are patched in its TorchScript op table and restored
afterwards: ``int``/``bool`` casts of 1-element constants, which fail under NumPy >= 2.3 (UMSI's and TinyHD's
traced shape arithmetic), and ``upsample_trilinear3d`` (TinyHD), converted as separable ``upsample_bilinear`` ops.

Core ML cannot execute off macOS, so :func:`simulate` reproduces the artifact's arithmetic in PyTorch for the
fidelity gate (:func:`salsdk.quantize.coreml_w8.simulate`), which also holds the 8-bit weight quantizer and the
fallback's weight ranking.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from salsdk.errors import ConversionError
from salsdk.manifest import CLASS_PROBS, EMBED_KEY, INPUT_NAME, SALIENCY, TensorSpec
from salsdk.quantize import coreml_w8
from salsdk.quantize.coreml_w8 import PRECISIONS, WEIGHT_THRESHOLD, Recipe
from salsdk.runtimes.coreml_runtime import INPUT_TRANSFORM_KEY, load_package_spec, save_package_spec, validate_mlpackage

from .context import ExportContext, ExportResult
from .formats import Format

MODEL_FILE = "model.mlpackage"
FRONTEND_KEY = "salsdk_frontend"


# ------------------------------------------------------------------------------------------------- input type
def input_transform(ctx: ExportContext) -> dict[str, Any]:
    """How the package takes its input: an 8-bit image with ``x = scale * pixel + bias``, or a float tensor.

    The contract normalises ``x = (pixel * scale - mean) / std``; that is Core ML's image form exactly when
    ``std`` is one number for all channels (then ``scale' = scale / std``, ``bias = -mean / std``).
    """
    pre = ctx.contract.preprocessing
    if ctx.contract.is_video or len(ctx.input_shape) != 4:
        return {"kind": "tensor", "reason": "clip input (N, 3, T, H, W): Core ML images are single frames"}
    if len(set(pre.std)) != 1:
        return {"kind": "tensor", "reason": f"per-channel std {pre.std} cannot be an ImageType scale"}
    std = float(pre.std[0])
    return {"kind": "image", "scale": float(pre.scale) / std, "bias": [-float(m) / std for m in pre.mean],
            "color_layout": pre.channel_order,
            "rule": "x = scale * pixel + bias per channel, pixels 0..255 in color_layout order"}


def _ct_input(ctx: ExportContext, transform: dict[str, Any]) -> Any:
    import coremltools as ct

    if transform["kind"] == "image":
        layout = ct.colorlayout.BGR if transform["color_layout"] == "BGR" else ct.colorlayout.RGB
        return ct.ImageType(name=INPUT_NAME, shape=tuple(ctx.input_shape), scale=transform["scale"],
                            bias=transform["bias"], color_layout=layout)
    return ct.TensorType(name=INPUT_NAME, shape=tuple(ctx.input_shape), dtype=np.float32)


# ------------------------------------------------------------------------------------------------- conversion
def _state_key(ctx: ExportContext) -> str:
    """Cache key of the fp16 program: the weights, the input shape and the input transform."""
    digest = hashlib.sha256(repr((tuple(ctx.input_shape), input_transform(ctx))).encode())
    for name, tensor in ctx.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def _example(ctx: ExportContext) -> torch.Tensor:
    """A real calibration input (falls back to zeros when there is none) for tracing."""
    if len(ctx.calibration):
        return torch.from_numpy(np.ascontiguousarray(ctx.calibration[:1], dtype=np.float32))
    return torch.zeros(ctx.input_shape)


def _torch_programs(ctx: ExportContext) -> Iterator[tuple[str, Any]]:
    """The model as coremltools takes it: TorchScript by ``torch.jit.trace`` first, then ``torch.export``.

    Tracing is the established route; ``torch.export`` (shapes specialised to ints) is the fallback for graphs
    the TorchScript frontend cannot convert (it is built only if tracing's conversion failed).
    """
    model, example = ctx.model.eval(), _example(ctx)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as exc:
            raise ConversionError(f"torch.jit.trace of {ctx.card.name} for Core ML failed: {exc}") from exc
    yield "torch.jit.trace", traced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exported = torch.export.export(model, (example,)).run_decompositions({})
        except Exception as exc:
            raise ConversionError(f"torch.export of {ctx.card.name} for Core ML failed: {exc}") from exc
    yield "torch.export", exported


def _scalar_cast(original: Any, cast: type) -> Any:
    """coremltools' ``int``/``bool`` converter, also folding 1-element constants (NumPy >= 2.3 safe).

    coremltools 9.0 folds ``int(x.shape[-1])``-style casts with ``int(array)``, which NumPy 2.3+ rejects for
    arrays of shape (1,) ("only 0-dimensional arrays can be converted to Python scalars").
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    def convert(context: Any, node: Any) -> None:
        x = _get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const() and np.ndim(x.val) > 0 and np.size(x.val) == 1:
            context.add(mb.const(val=cast(np.asarray(x.val).reshape(-1)[0]), name=node.name), node.name)
        else:
            original(context, node)

    return convert


def _upsample_trilinear3d(context: Any, node: Any) -> None:
    """TorchScript ``upsample_trilinear3d`` (absent from coremltools 9.0) as separable bilinear resizes.

    Linear interpolation is separable, so trilinear = ``upsample_bilinear`` over (H, W), then over (T, 1) with
    T moved to the height axis: the same MIL op and ``align_corners`` mapping coremltools uses for
    ``upsample_bilinear2d``. Needs static shapes and constant sizes/scales (salsdk exports are static).
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    inputs = _get_inputs(context, node)
    x, output_size, align_corners = inputs[0], inputs[1], bool(inputs[2].val)
    t, h, w = (int(d) for d in x.shape[-3:])
    if output_size is not None and output_size.val is not None:
        scales = [o / i for o, i in zip(np.asarray(output_size.val).reshape(-1), (t, h, w))]
    else:
        raw = inputs[3:6] if len(inputs) == 6 else [inputs[3]]
        scales = [float(v) for var in raw for v in np.asarray(var.val).reshape(-1)]
    if len(scales) != 3:
        raise ValueError(f"upsample_trilinear3d {node.name}: cannot read its sizes/scales {scales}")
    s_t, s_h, s_w = scales
    y = x
    if (s_h, s_w) != (1.0, 1.0):
        y = mb.upsample_bilinear(x=y, scale_factor_height=s_h, scale_factor_width=s_w, align_corners=align_corners)
    if s_t != 1.0:
        perm = [0, 1, 3, 2, 4]  # (N, C, T, H, W) <-> (N, C, H, T, W)
        y = mb.transpose(x=y, perm=perm)
        y = mb.upsample_bilinear(x=y, scale_factor_height=s_t, scale_factor_width=1.0, align_corners=align_corners)
        y = mb.transpose(x=y, perm=perm)
    context.add(mb.identity(x=y, name=node.name))


@contextlib.contextmanager
def _torch_op_support() -> Iterator[None]:
    """For the duration of a conversion, patch coremltools' TorchScript op table (restored afterwards):
    NumPy-2-safe ``int``/``bool`` casts and an ``upsample_trilinear3d`` converter (TinyHD's x2 up-sampling)."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY as registry

    table = registry.name_to_func_mapping
    saved = {name: table.get(name) for name in ("int", "bool", "upsample_trilinear3d")}
    for name, cast in (("int", int), ("bool", bool)):
        if saved[name] is not None:
            table[name] = _scalar_cast(saved[name], cast)
    if saved["upsample_trilinear3d"] is None:
        table["upsample_trilinear3d"] = _upsample_trilinear3d
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                table.pop(name, None)
            else:
                table[name] = original


def convert_fp16(ctx: ExportContext, keep_float: Sequence[str] = ()) -> Any:
    """Convert the model to an fp16 ML Program; ops named in ``keep_float`` compute in fp32.

    The frontend that worked is recorded in the model's ``salsdk_frontend`` metadata.
    """
    import coremltools as ct

    seen: set[str] = set()

    def fp16_selector(op: Any) -> bool:
        seen.add(op.name)
        return op.name not in keep_float

    precision = ct.transform.FP16ComputePrecision(op_selector=fp16_selector) if keep_float else \
        ct.precision.FLOAT16
    failures = []
    for frontend, program in _torch_programs(ctx):
        try:
            with _torch_op_support():
                mlmodel = ct.convert(program, inputs=[_ct_input(ctx, input_transform(ctx))],
                                     outputs=[ct.TensorType(name=n, dtype=np.float32) for n in ctx.output_names],
                                     convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                                     compute_precision=precision, skip_model_load=platform.system() != "Darwin")
        except Exception as exc:
            failures.append(f"{frontend}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}")
            continue
        unknown = sorted(set(keep_float) - seen)
        if unknown:
            raise ConversionError(f"keep_float names no op of the Core ML program: {unknown[:3]}")
        mlmodel.user_defined_metadata[FRONTEND_KEY] = json.dumps({"frontend": frontend, "failed": failures})
        return mlmodel
    raise ConversionError(f"coremltools ct.convert (PyTorch -> ML Program) failed: {'; '.join(failures)}")


def cached_fp16(ctx: ExportContext) -> Any:
    """The fp16 ML Program of ``ctx`` (converted once, kept in ``ctx.workdir`` for ``coreml-w8``)."""
    import coremltools as ct

    cache = Path(ctx.workdir) / f"coreml-{_state_key(ctx)}" / MODEL_FILE
    if cache.is_dir():
        return ct.models.MLModel(str(cache), skip_model_load=True)
    mlmodel = convert_fp16(ctx)
    cache.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(cache))
    return mlmodel


def _tensor_specs(summary: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs read back from the saved package."""
    inputs = []
    for f in summary["inputs"]:
        if f["kind"] == "image":  # an 8-bit H x W x 3 image (RGB/BGR), normalised inside the model
            n, c, h, w = f["shape"]
            inputs.append(TensorSpec(f["name"], (n, h, w, c), "NHWC", "uint8"))
        else:
            inputs.append(TensorSpec(f["name"], tuple(f["shape"]), {4: "NCHW", 5: "NCTHW"}[len(f["shape"])],
                                     f["dtype"]))
    outputs = [TensorSpec(f["name"], tuple(f["shape"]), {2: "NC", 4: "NCHW", 5: "NCTHW"}[len(f["shape"])],
                          f["dtype"], role=CLASS_PROBS if len(f["shape"]) == 2 else SALIENCY)
               for f in summary["outputs"]]
    return inputs, outputs


def export_coreml(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.mlpackage`` (fp16 ML Program, or with 8-bit weights for ``w8``) into ``dest``."""
    import coremltools as ct

    if fmt.precision not in PRECISIONS:
        raise ConversionError(f"the Core ML exporter makes {', '.join(PRECISIONS)}, not {fmt.precision!r}")
    started = time.perf_counter()
    keep = tuple(keep_float)
    transform = input_transform(ctx)
    if fmt.precision == "fp16":
        mlmodel = convert_fp16(ctx, keep) if keep else cached_fp16(ctx)
    else:
        mlmodel = coreml_w8.quantize_weights(cached_fp16(ctx), keep)
    mlmodel.user_defined_metadata[INPUT_TRANSFORM_KEY] = json.dumps(transform, sort_keys=True)
    mlmodel.short_description = f"{ctx.card.name} ({ctx.card.task}), salsdk {fmt.key}"
    path = Path(dest) / MODEL_FILE
    try:
        mlmodel.save(str(path))
    except Exception as exc:
        raise ConversionError(f"saving the Core ML package {path} failed: {exc}") from exc
    summary = validate_mlpackage(path)
    record = coreml_w8.save_weight_record(ctx.workdir, fmt.key, path)
    inputs, outputs = _tensor_specs(summary)
    quantization: dict[str, Any] = {"compute": "float16 (float32 inputs/outputs cast at the edges)",
                                    "weights": "float16"}
    if fmt.precision == "w8":
        quantization = {**quantization, "tool": "coremltools.optimize.coreml.linear_quantize_weights",
                        "weights": "int8 linear symmetric, per output channel, dequantized to float16 at load",
                        "weight_threshold": WEIGHT_THRESHOLD, "quantized_tensors": summary["quantized_weights"],
                        "float16_weight_tensors": sum(1 for e in record if not e["quantized"]),
                        "calibration_method": "none (weights only; activations stay float16)"}
    if keep:
        quantization["kept_float"] = list(keep)
    input_note = (f"input: Core ML ImageType ({transform['color_layout']}, 8-bit pixels), normalised in the model "
                  f"as x = {transform['scale']:.6g} * pixel + {[round(b, 6) for b in transform['bias']]}"
                  if transform["kind"] == "image" else f"input: float32 TensorType ({transform['reason']})")
    return ExportResult(
        model_file=MODEL_FILE, inputs=inputs, outputs=outputs,
        tool_versions={"coremltools": ct.__version__, "torch": torch.__version__,
                       "minimum_deployment_target": "iOS16", "specification_version":
                       str(summary["specification_version"])},
        quantization=quantization,
        graph_notes=[f"ops: {summary['ops']}", input_note, _frontend_note(mlmodel),
                     f"converted in {time.perf_counter() - started:.1f}s"])


def _frontend_note(mlmodel: Any) -> str:
    info = json.loads(mlmodel.user_defined_metadata.get(FRONTEND_KEY, "{}") or "{}")
    note = f"PyTorch frontend: {info.get('frontend', 'unknown')}"
    return note + (f" (failed first: {'; '.join(info['failed'])})" if info.get("failed") else "")


# ---------------------------------------------------------------------------------- manifest, ranking, simulation
def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the package spec's ``user_defined_metadata`` (key :data:`EMBED_KEY`), atomically."""
    spec = load_package_spec(path)
    spec.description.metadata.userDefined[EMBED_KEY] = manifest_json
    save_package_spec(path, spec)


def recipe(ctx: ExportContext) -> Recipe:
    """What :mod:`salsdk.quantize.coreml_w8` needs to know about this conversion."""
    return Recipe(ctx.model, _example(ctx), input_transform(ctx), ctx.contract.preprocessing, Path(ctx.workdir))


def rank_w8(ctx: ExportContext, fmt: Format) -> list[str]:
    """The coreml-w8 fallback's ranking of weight tensors (:func:`salsdk.quantize.coreml_w8.rank_sensitivity`)."""
    return coreml_w8.rank_sensitivity(recipe(ctx), cached_fp16(ctx), ctx.calibration)


def simulate(ctx: ExportContext, fmt: Format, batch: np.ndarray) -> list[np.ndarray]:
    """What the package of ``fmt`` computes for ``batch``, reproduced in PyTorch (Core ML runs only on macOS)."""
    return coreml_w8.simulate(recipe(ctx), fmt.key, fmt.precision, batch)
