"""Core ML 8-bit weights, their sensitivity ranking, and a PyTorch simulation of a package's numerics.

``coreml-w8`` is the fp16 ML Program with ``ct.optimize.coreml.linear_quantize_weights`` (int8, linear symmetric,
per output channel; tensors of at most :data:`WEIGHT_THRESHOLD` elements stay float16). Its fidelity fallback
keeps the weight tensors :func:`rank_sensitivity` finds most sensitive in float16.

Core ML cannot execute off macOS, so :func:`simulate` reproduces a package's arithmetic (fp16 compute, 8-bit
weights read back from the package) in PyTorch for the fidelity gate; reports say the result is simulated.
"""
from __future__ import annotations

import copy
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from salsdk.cards import Preprocessing
from salsdk.errors import ConversionError

WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller tensors (biases, first conv, BN) keep float16 weights
WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")
QUANTIZED_OPS = ("constexpr_affine_dequantize",)
WEIGHTED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                    nn.Linear)
PRECISIONS = ("fp16", "w8")


@dataclass(frozen=True)
class Recipe:
    """What a Core ML conversion started from, as the ranking and the simulation need it."""

    model: nn.Module  # the fp32 PyTorch model that was converted
    example: torch.Tensor  # a real input (gives the modules' call order)
    transform: dict[str, Any]  # the package's input transform (ImageType scale/bias, or a float tensor)
    preprocessing: Preprocessing
    workdir: Path  # where the exporter recorded the packages' weights


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


# ------------------------------------------------------------------------------------- weights of the package
def package_weights(path: Path) -> list[dict[str, Any]]:
    """Every weight of a conv/linear/matmul op of the package, in program order, with its int8 data if quantized.

    Read with coremltools' MIL loader (spec + ``weight.bin``): entries are ``{"op", "shape", "quantized"}`` plus
    ``q`` (int8), ``scale``, ``zero_point`` and ``axis`` for ``constexpr_affine_dequantize`` weights.
    """
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    from salsdk.runtimes.coreml_runtime import load_package_spec, package_paths

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


def _record_path(workdir: Path, key: str) -> Path:
    return Path(workdir) / f"coreml-{key}-weights.npz"


def save_weight_record(workdir: Path, key: str, path: Path) -> list[dict[str, Any]]:
    """Keep the package's weight layout (and int8 data) in ``workdir`` for :func:`simulate`."""
    entries = package_weights(path)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, e in enumerate(entries):
        meta.append({k: e[k] for k in ("op", "shape", "quantized")} | ({"axis": e["axis"]} if e["quantized"] else {}))
        if e["quantized"]:
            arrays.update({f"q{i}": e["q"], f"scale{i}": e["scale"], f"zp{i}": e["zero_point"]})
    np.savez(_record_path(workdir, key), meta=np.array(json.dumps(meta)), **arrays)
    return meta


def load_weight_record(workdir: Path, key: str) -> list[dict[str, Any]] | None:
    """The record written at export, or None when this format was not exported into ``workdir``."""
    path = _record_path(workdir, key)
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


def rank_sensitivity(recipe: Recipe, fp16_program: Any, calibration: np.ndarray) -> list[str]:
    """Weight constants that ``coreml-w8`` quantizes, most sensitive first, for its fidelity fallback.

    Each weight is quantized alone with coremltools' formula (int8 symmetric per channel) in the fp32 PyTorch model
    and scored by the lowest map CC against the unquantized model on up to two calibration inputs (never the
    held-out ones). Constants are paired with PyTorch modules by program order and shape, as the simulation does.
    """
    from salsdk.metrics import cc

    model = copy.deepcopy(recipe.model).eval()
    constants = [(name, shape) for name, shape in weight_constants(fp16_program)
                 if int(np.prod(shape)) > WEIGHT_THRESHOLD]
    modules, pairs, start = _weighted_modules_in_call_order(model, recipe.example), [], 0
    for name, shape in constants:
        match = next((i for i in range(start, len(modules)) if list(modules[i].weight.shape) == shape), None)
        if match is None:
            raise ConversionError(f"cannot pair the Core ML weight {name} {shape} with a module of the model")
        pairs.append((name, modules[match]))
        start = match + 1
    sample = torch.from_numpy(np.ascontiguousarray(calibration[:2], dtype=np.float32))

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


def build_simulator(recipe: Recipe, key: str, precision: str) -> Simulator:
    """A PyTorch model computing what the package ``key`` computes (fp16 everywhere; 8-bit weights for w8)."""
    model = copy.deepcopy(recipe.model).eval().float()
    notes = ["fp16 emulated in float32: weights, buffers, the input and every module's inputs/outputs rounded to "
             "float16 (forward hooks); accumulation inside each op stays float32"]
    if precision == "w8":
        notes.append(_apply_w8(recipe, key, model))
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data = _fp16(tensor.data)
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_pre_hook(lambda mod, args: _round_all(args))
            module.register_forward_hook(lambda mod, args, out: _round_all(out))
    return Simulator(model, recipe.transform, recipe.preprocessing, notes)


def _apply_w8(recipe: Recipe, key: str, model: nn.Module) -> str:
    """Replace the weights the package quantizes by their dequantized 8-bit values; returns a note."""
    record = load_weight_record(recipe.workdir, key)
    modules = _weighted_modules_in_call_order(model, recipe.example)
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


def simulate(recipe: Recipe, key: str, precision: str, batch: np.ndarray) -> list[np.ndarray]:
    """Outputs the Core ML package ``key`` (precision fp16 or w8) would give for ``batch`` (canonical float32),
    computed in PyTorch.

    * fp16: the model with weights, buffers, input and every module's input and output rounded to float16
      (emulated with forward hooks in float32, because PyTorch's CPU float16 convolutions are ~100x slower);
      an ``ImageType`` input is first rounded to 8-bit pixels and normalised in float16, as Core ML does.
    * w8: additionally, each weight the package stores as int8 is replaced by its dequantized value, read from
      the saved ``.mlpackage`` (int8 codes and quantization axis, via coremltools' MIL loader, recorded in the
      work folder at export) and mapped back through the BatchNorm folding (see :func:`_w8_weight`). If the
      package was not exported into this work folder, coremltools' formula is applied to the PyTorch weights.

    Returns the outputs in canonical layout, float32. Simulators are cached per model and package.
    """
    if precision not in PRECISIONS:
        raise ConversionError(f"no Core ML simulation for precision {precision!r}")
    record = _record_path(recipe.workdir, key)
    stamp = record.stat().st_mtime_ns if record.is_file() else 0.0
    per_model = _SIMULATORS.setdefault(recipe.model, {})
    cached = per_model.get(key)
    if cached is None or cached[0] != stamp:
        cached = (stamp, build_simulator(recipe, key, precision))
        per_model[key] = cached
    return cached[1].run(batch)


def simulation_notes(model: nn.Module, key: str) -> list[str]:
    """How :func:`simulate` reproduced package ``key`` of ``model`` (for the fidelity report)."""
    cached = _SIMULATORS.get(model, {}).get(key)
    return list(cached[1].notes) if cached else []
