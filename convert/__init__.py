"""Conversion of zoo models into verified artifact bundles (ONNX, TFLite, CoreML).

``salsdk convert --model NAME ...`` / ``python -m salsdk convert``. The table of formats is
:data:`salsdk.convert.formats.FORMATS`; each format is one small exporter module; :mod:`salsdk.convert.pipeline`
runs them, checks each artifact against the fp32 PyTorch model on held-out real images, and writes bundles.
"""
