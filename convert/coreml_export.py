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

Core ML cannot execute off macOS, so :func:`simulate_coreml` reproduces the artifact's arithmetic in PyTorch for
the fidelity report (see its docstring).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import platform
import shutil
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from salsdk.errors import ConversionError
from salsdk.runtimes.coreml_runtime import (INPUT_TRANSFORM_KEY, MANIFEST_KEY, load_package_spec, package_paths,
                                            save_package_spec, validate_mlpackage)

from .context import INPUT_NAME, ExportContext, ExportResult, TensorSpec
from .formats import Format

MODEL_FILE = "model.mlpackage"
FRONTEND_KEY = "salsdk_frontend"
WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors (biases, first conv, BN) keep float16 weights
WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")
QUANTIZED_OPS = ("constexpr_affine_dequantize",)
WEIGHTED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                    nn.Linear)
PRECISIONS = ("fp16", "w8")


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


def quantize_weights(mlmodel: Any, keep_float: Sequence[str] = ()) -> Any:
    """8-bit linear symmetric per-channel weights; weight consts named in ``keep_float`` stay fp16."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    spec_names = _const_names(mlmodel.get_spec())
    unknown = sorted(set(keep_float) - spec_names)
    if unknown:
        raise ConversionError(f"keep_float names no weight constant of the Core ML program: {unknown[:3]}")
    config = OptimizationConfig(
        global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                              weight_threshold=WEIGHT_THRESHOLD),
        op_name_configs={name: None for name in keep_float})
    try:
        return linear_quantize_weights(mlmodel, config)
    except Exception as exc:
        raise ConversionError(f"coremltools linear_quantize_weights (8-bit weights) failed: {exc}") from exc


def _const_names(spec: Any) -> set[str]:
    """Names of the weight constants of an ML Program (what ``op_name_configs`` of the compressors takes)."""
    names = set()
    for block in spec.mlProgram.functions["main"].block_specializations.values():
        for op in block.operations:
            if op.type == "const":
                names.update(o.name for o in op.outputs)
    return names


def _tensor_specs(summary: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs read back from the saved package."""
    inputs = []
    for f in summary["inputs"]:
        if f["kind"] == "image":  # an 8-bit H x W x 3 image (RGB/BGR), normalised inside the model
            n, c, h, w = f["shape"]
            inputs.append(TensorSpec(f["name"], [n, h, w, c], "NHWC", "uint8"))
        else:
            inputs.append(TensorSpec(f["name"], f["shape"], {4: "NCHW", 5: "NCTHW"}[len(f["shape"])], f["dtype"]))
    outputs = [TensorSpec(f["name"], f["shape"], {2: "NC", 4: "NCHW", 5: "NCTHW"}[len(f["shape"])], f["dtype"])
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
        mlmodel = quantize_weights(cached_fp16(ctx), keep)
    mlmodel.user_defined_metadata[INPUT_TRANSFORM_KEY] = json.dumps(transform, sort_keys=True)
    mlmodel.short_description = f"{ctx.card.name} ({ctx.card.task}), salsdk {fmt.key}"
    path = Path(dest) / MODEL_FILE
    try:
        mlmodel.save(str(path))
    except Exception as exc:
        raise ConversionError(f"saving the Core ML package {path} failed: {exc}") from exc
    summary = validate_mlpackage(path)
    record = save_weight_record(ctx, fmt, path)
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


# ------------------------------------------------------------------------------------------------- manifest
def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the package spec's ``user_defined_metadata['salsdk_manifest']`` (atomic rewrite)."""
    spec = load_package_spec(path)
    spec.description.metadata.userDefined[MANIFEST_KEY] = manifest_json
    save_package_spec(path, spec)


def read_embedded_manifest(path: Path) -> str | None:
    """The manifest embedded by :func:`embed_manifest`, or None."""
    return dict(load_package_spec(path).description.metadata.userDefined).get(MANIFEST_KEY)


# ------------------------------------------------------------------------------------- weights of the package
def package_weights(path: Path) -> list[dict[str, Any]]:
    """Every weight of a conv/linear/matmul op of the package, in program order, with its int8 data if quantized.

    Read with coremltools' MIL loader (spec + ``weight.bin``): entries are ``{"op", "shape", "quantized"}`` plus
    ``q`` (int8), ``scale``, ``zero_point`` and ``axis`` for ``constexpr_affine_dequantize`` weights.
    """
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    spec = load_package_spec(path)
    _, weights_dir = package_paths(path)
    program = load_program(spec, spec.specificationVersion, str(weights_dir or ""))
    entries = []
    for op in program.functions["main"].operations:
        if op.op_type not in WEIGHT_OPS:
            continue
        weight = op.inputs.get("weight", op.inputs.get("y"))
        producer = weight.op if weight is not None else None
        if producer is None or producer.op_type not in ("const", *QUANTIZED_OPS):
            continue
        entry: dict[str, Any] = {"op": op.op_type, "shape": list(weight.shape),
                                 "quantized": producer.op_type in QUANTIZED_OPS}
        if entry["quantized"]:
            entry.update(q=np.asarray(producer.quantized_data.val), scale=np.asarray(producer.scale.val),
                         zero_point=np.asarray(producer.zero_point.val), axis=int(producer.axis.val))
        entries.append(entry)
    return entries


def _record_path(ctx: ExportContext, fmt: Format) -> Path:
    return Path(ctx.workdir) / f"coreml-{fmt.key}-weights.npz"


def save_weight_record(ctx: ExportContext, fmt: Format, path: Path) -> list[dict[str, Any]]:
    """Keep the package's weight layout (and int8 data) in ``ctx.workdir`` for :func:`simulate_coreml`."""
    entries = package_weights(path)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, e in enumerate(entries):
        meta.append({k: e[k] for k in ("op", "shape", "quantized")} | ({"axis": e["axis"]} if e["quantized"] else {}))
        if e["quantized"]:
            arrays.update({f"q{i}": e["q"], f"scale{i}": e["scale"], f"zp{i}": e["zero_point"]})
    np.savez(_record_path(ctx, fmt), meta=np.array(json.dumps(meta)), **arrays)
    return meta


def load_weight_record(ctx: ExportContext, fmt: Format) -> list[dict[str, Any]] | None:
    """The record written at export, or None when this format was not exported with ``ctx``."""
    path = _record_path(ctx, fmt)
    if not path.is_file():
        return None
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        for i, e in enumerate(meta):
            if e["quantized"]:
                e.update(q=data[f"q{i}"], scale=data[f"scale{i}"], zero_point=data[f"zp{i}"])
    return meta


# ------------------------------------------------------------------------------------------------ sensitivity
def weight_constants(mlmodel: Any) -> list[tuple[str, list[int]]]:
    """(name, shape) of the constant holding the weight of every conv/linear/matmul op, in program order."""
    shapes: dict[str, list[int]] = {}
    weights: list[str] = []
    for block in mlmodel.get_spec().mlProgram.functions["main"].block_specializations.values():
        for op in block.operations:
            if op.type == "const":
                for out in op.outputs:
                    shapes[out.name] = [int(d.constant.size) for d in out.type.tensorType.dimensions]
            elif op.type in WEIGHT_OPS:
                argument = op.inputs.get("weight") or op.inputs.get("y")
                if argument is not None and argument.arguments and argument.arguments[0].name:
                    weights.append(argument.arguments[0].name)
    return [(name, shapes[name]) for name in weights if name in shapes]


def rank_coreml_sensitivity(ctx: ExportContext, fmt: Format) -> list[str]:
    """Weight constants that ``coreml-w8`` quantizes, most sensitive first, for its fidelity fallback.

    Each weight is quantized alone with coremltools' formula (int8 symmetric per channel) in the fp32 PyTorch model
    and scored by the lowest map CC against the unquantized model on up to two calibration inputs (never the
    held-out ones). Constants are paired with PyTorch modules by program order and shape, as the simulation does.
    """
    from salsdk.metrics import cc

    model = copy.deepcopy(ctx.model).eval()
    constants = [(name, shape) for name, shape in weight_constants(cached_fp16(ctx))
                 if int(np.prod(shape)) > WEIGHT_THRESHOLD]
    modules, pairs, start = _weighted_modules_in_call_order(model, _example(ctx)), [], 0
    for name, shape in constants:
        match = next((i for i in range(start, len(modules)) if list(modules[i].weight.shape) == shape), None)
        if match is None:
            raise ConversionError(f"cannot pair the Core ML weight {name} {shape} with a module of {ctx.card.name}")
        pairs.append((name, modules[match]))
        start = match + 1
    sample = torch.from_numpy(np.ascontiguousarray(ctx.calibration[:2], dtype=np.float32))

    def maps() -> np.ndarray:
        with torch.no_grad():
            out = model(sample)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.numpy().reshape(-1, *out.shape[-2:])

    reference = maps()
    scores = []
    for name, module in pairs:
        original = module.weight.data
        axis = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
        module.weight.data = torch.from_numpy(_w8_weight(original.numpy(), None, axis)[0])
        scores.append((min(cc(a, b) for a, b in zip(maps(), reference)), name))
        module.weight.data = original
    return [name for _, name in sorted(scores)]


# ------------------------------------------------------------------------------------------------- simulation
def _fp16(t: torch.Tensor) -> torch.Tensor:
    """Round a float tensor to float16 precision (kept in float32 for fast CPU kernels)."""
    return t.to(torch.float16).to(t.dtype) if t.is_floating_point() else t


def _round_all(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _fp16(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_round_all(v) for v in value)
    return value


def _weighted_modules_in_call_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv/linear modules in the order the forward pass first calls them (the program's op order)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _: order.append(mod) if mod not in order else None)
             for m in model.modules() if isinstance(m, WEIGHTED_MODULES)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _symmetric_scale(weight: np.ndarray, axis: int) -> np.ndarray:
    """coremltools' linear-symmetric int8 scale per slice along ``axis``: max|w| / 127."""
    other = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.abs(weight).max(axis=other, keepdims=True) / 127.0
    return np.where(scale == 0, 1.0, scale).astype(np.float32)


def _w8_weight(weight: np.ndarray, entry: dict[str, Any] | None, output_axis: int = 0
               ) -> tuple[np.ndarray, float | None]:
    """Dequantized 8-bit weight as the package holds it, mapped onto the PyTorch (un-fused) weight.

    Core ML fuses BatchNorm into the conv before quantizing, which multiplies each output channel by a constant
    ``k``; symmetric per-channel quantization commutes with that scaling, so the package's int8 codes ``q`` are
    those of the PyTorch weight (up to sign of ``k``) and ``sign * q * max|w| / 127`` is the dequantized weight
    in PyTorch's parameterisation. Returns it and the fraction of codes that agree with quantizing the PyTorch
    weight directly (a check that the pairing is right). Without a package entry, the weight is quantized
    directly with coremltools' formula along ``output_axis`` (0; 1 for transposed convolutions).
    """
    if entry is None:
        scale = _symmetric_scale(weight, output_axis)
        return np.clip(np.round(weight / scale), -127, 127) * scale, None
    axis, q = entry["axis"], entry["q"].astype(np.float32)
    scale = _symmetric_scale(weight, axis)
    own = np.clip(np.round(weight / scale), -127, 127)
    other = tuple(i for i in range(weight.ndim) if i != axis)
    sign = np.sign((q * own).sum(axis=other, keepdims=True))
    sign = np.where(sign == 0, 1.0, sign)
    agreement = float(np.mean(np.abs(q) == np.abs(own)))
    return (sign * q * scale).astype(np.float32), agreement


@dataclass
class Simulator:
    """A PyTorch copy of the model whose arithmetic follows the Core ML package (see :func:`simulate_coreml`)."""

    model: nn.Module
    transform: dict[str, Any]
    contract_pre: Any
    notes: list[str] = field(default_factory=list)

    def prepare_input(self, batch: np.ndarray) -> torch.Tensor:
        """The model input as Core ML computes it: 8-bit pixels normalised in fp16, or the input cast to fp16."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.transform["kind"] != "image":
            return _fp16(x)
        pre = self.contract_pre
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(pre.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(pre.std, dtype=torch.float32).view(shape)
        pixels = ((x * std + mean) / pre.scale).round().clamp(0, 255)
        bias = torch.tensor(self.transform["bias"], dtype=torch.float32).view(shape)
        return _fp16(_fp16(pixels * self.transform["scale"]) + bias)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = self.model(self.prepare_input(batch))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [_fp16(o).float().numpy() for o in outputs]


def build_simulator(ctx: ExportContext, fmt: Format) -> Simulator:
    """A PyTorch model computing what the ``fmt`` package computes (fp16 everywhere; 8-bit weights for w8)."""
    model = copy.deepcopy(ctx.model).eval().float()
    notes = ["fp16 emulated in float32: weights, buffers, the input and every module's inputs/outputs rounded to "
             "float16 (forward hooks); accumulation inside each op stays float32"]
    if fmt.precision == "w8":
        notes.append(_apply_w8(ctx, fmt, model))
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data = _fp16(tensor.data)
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_pre_hook(lambda mod, args: _round_all(args))
            module.register_forward_hook(lambda mod, args, out: _round_all(out))
    return Simulator(model, input_transform(ctx), ctx.contract.preprocessing, notes)


def _apply_w8(ctx: ExportContext, fmt: Format, model: nn.Module) -> str:
    """Replace the weights the package quantizes by their dequantized 8-bit values; returns a note."""
    record = load_weight_record(ctx, fmt)
    modules = _weighted_modules_in_call_order(model, _example(ctx))
    pairs = _pair(modules, record) if record is not None else None
    if pairs is None:
        chosen = [m for m in modules if m.weight.numel() > WEIGHT_THRESHOLD]
        for m in chosen:
            axis = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
            m.weight.data = torch.from_numpy(_w8_weight(m.weight.detach().numpy(), None, axis)[0])
        why = "no package was exported with this context" if record is None else "package/model pairing failed"
        return (f"8-bit weights: {len(chosen)} tensors quantized with coremltools' formula ({why}); "
                "not read from the package")
    agreements = []
    for module, entry in pairs:
        value, agreement = _w8_weight(module.weight.detach().numpy(), entry)
        module.weight.data = torch.from_numpy(value)
        agreements.append(agreement)
    return (f"8-bit weights read from the package: {len(pairs)} tensors (int8 codes, per-channel axis); "
            f"codes equal to quantizing the PyTorch weights directly: {100 * np.mean(agreements):.2f}% "
            "(the others sit at a rounding boundary that Core ML's BatchNorm folding in fp16 moved)")


def _pair(modules: list[nn.Module], record: list[dict[str, Any]]) -> list[tuple[nn.Module, dict]] | None:
    """Match the package's quantized weights to PyTorch modules: same order, same shape; None if impossible."""
    pairs, start = [], 0
    for entry in record:
        match = next((i for i in range(start, len(modules))
                      if list(modules[i].weight.shape) == entry["shape"]), None)
        if match is None:
            if entry["quantized"]:
                return None
            continue
        if entry["quantized"]:
            pairs.append((modules[match], entry))
        start = match + 1
    return pairs


_SIMULATORS: "weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[float, Simulator]]]" = \
    weakref.WeakKeyDictionary()


def simulate_coreml(ctx: ExportContext, fmt: Format, batch: np.ndarray) -> list[np.ndarray]:
    """Outputs the ``fmt`` package would give for ``batch`` (canonical float32), computed in PyTorch.

    * fp16: the model with weights, buffers, input and every module's input and output rounded to float16
      (emulated with forward hooks in float32, because PyTorch's CPU float16 convolutions are ~100x slower);
      an ``ImageType`` input is first rounded to 8-bit pixels and normalised in float16, as Core ML does.
    * w8: additionally, each weight the package stores as int8 is replaced by its dequantized value, read from
      the saved ``.mlpackage`` (int8 codes and quantization axis, via coremltools' MIL loader, recorded in
      ``ctx.workdir`` at export) and mapped back through the BatchNorm folding (see :func:`_w8_weight`). If the
      format was not exported with this context, coremltools' formula is applied to the PyTorch weights instead.

    Returns the outputs in canonical layout, float32. Simulators are cached per model and format.
    """
    if fmt.precision not in PRECISIONS:
        raise ConversionError(f"no Core ML simulation for precision {fmt.precision!r}")
    record = _record_path(ctx, fmt)
    stamp = record.stat().st_mtime_ns if record.is_file() else 0.0
    per_model = _SIMULATORS.setdefault(ctx.model, {})
    cached = per_model.get(fmt.key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, build_simulator(ctx, fmt))
        per_model[fmt.key] = cached
    return cached[1].run(batch)


def simulation_notes(ctx: ExportContext, fmt: Format) -> list[str]:
    """How :func:`simulate_coreml` reproduced ``fmt`` for ``ctx`` (for the fidelity report)."""
    cached = _SIMULATORS.get(ctx.model, {}).get(fmt.key)
    return list(cached[1].notes) if cached else []


def clear_cache(ctx: ExportContext) -> None:
    """Forget the cached fp16 program and simulators of ``ctx`` (frees disk space in ``ctx.workdir``)."""
    _SIMULATORS.pop(ctx.model, None)
    for folder in Path(ctx.workdir).glob("coreml-*"):
        shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink(missing_ok=True)
