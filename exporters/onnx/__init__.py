"""ONNX exporter: the five modules as ``.onnx`` files plus a manifest, validated against PyTorch.

Importing this package is cheap (no torch, onnx or onnxruntime); they load when exporting.
"""

from .exporter import DEFAULT_OPSET, EXPORTER_NAME, EXPORTER_VERSION, OnnxExporter, as_dims

__all__ = ["DEFAULT_OPSET", "EXPORTER_NAME", "EXPORTER_VERSION", "OnnxExporter", "as_dims"]
