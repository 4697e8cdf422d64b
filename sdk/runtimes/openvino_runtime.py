"""OpenVINO adapter: an IR folder (``model.xml`` + ``model.bin``) compiled for the CPU plugin."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salsdk.artifact_metadata import OPENVINO_BIN, OPENVINO_XML

from .base import Runtime

#: the IR's ``rt_info`` entry naming the inference precision it was gated at (OpenVINO's convention for the
#: properties a model wants; its CPU plugin does not apply this one by itself, so the adapter passes it on)
PRECISION_HINT = ("runtime_options", "INFERENCE_PRECISION_HINT")


class OpenVINORuntime(Runtime):
    """Runs an OpenVINO IR folder on the CPU with latency settings; canonical layout (NCHW / NCTHW), float32."""

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import openvino as ov

        folder = Path(path)
        core = ov.Core()
        model = core.read_model(str(folder / OPENVINO_XML), str(folder / OPENVINO_BIN))
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if model.has_rt_info(list(PRECISION_HINT)):
            config["INFERENCE_PRECISION_HINT"] = model.get_rt_info(list(PRECISION_HINT)).astype(str)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.threads = threads
        shape = model.inputs[0].get_partial_shape()
        static = [d.get_length() if d.is_static else None for d in shape]
        self.input_hw = (static[-2], static[-1]) if None not in static[-2:] else None
        self.max_batch = static[0]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.max_batch or batch.shape[0]
        parts = []
        for i in range(0, batch.shape[0], step):
            result = self.request.infer({0: batch[i:i + step]})
            parts.append([np.array(result[o], dtype=np.float32) for o in self.compiled.outputs])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # what the CPU runs
        return {"runtime": self.name, "version": version("openvino"), "device": f"CPU, {precision}",
                "precision": precision, "threads": self.compiled.get_property("INFERENCE_NUM_THREADS")}
