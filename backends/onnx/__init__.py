"""ONNX Runtime backends (onnx-cpu, onnx-cuda, onnx-coreml, onnx-openvino) over exported modules."""

from .runtime import BACKENDS, OrtBackend, OrtModule, default_threads

__all__ = ["BACKENDS", "OrtBackend", "OrtModule", "default_threads"]
