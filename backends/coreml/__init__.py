"""Core ML backends (coreml-cpu / -gpu / -ane / -all, and coreml-sim: the packages through the
reference MIL executor of mil/) and per-module placement.

Nothing here imports torch or coremltools at import time. The packages are fixed-size: the
backends declare it (``fixed_size``) and the app fits every clip to them through
core/engine/geometry.py.
"""

from matanyone_engine.core.engine.geometry import FrameGeometry, alpha_to_frame, frame_to_package, plan_geometry

from .backend import (
    BACKENDS,
    COMPUTE_UNITS,
    DEFAULT_PACKAGE_SIZE,
    UNAVAILABLE_REASON,
    CoreMLBackend,
    CoreMLModule,
    coreml_status,
    resolve_placement,
)
from .compute_plan import ComputePlanReport, coreml_compute_plan_report
from .sim import SIM_BACKEND, CoreMLSimBackend

__all__ = [
    "BACKENDS",
    "COMPUTE_UNITS",
    "DEFAULT_PACKAGE_SIZE",
    "ComputePlanReport",
    "CoreMLBackend",
    "CoreMLModule",
    "CoreMLSimBackend",
    "FrameGeometry",
    "SIM_BACKEND",
    "UNAVAILABLE_REASON",
    "alpha_to_frame",
    "coreml_compute_plan_report",
    "coreml_status",
    "frame_to_package",
    "plan_geometry",
    "resolve_placement",
]
