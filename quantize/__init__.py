"""Quantization: calibration from real images, toolchain quantizers, and the fidelity gate with fallback."""
