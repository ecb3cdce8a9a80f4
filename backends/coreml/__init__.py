"""Core ML backends (coreml-cpu / -gpu / -ane / -all, and coreml-sim: the packages through the
reference MIL executor of mil/), per-module placement, and frame geometry.

Nothing here imports torch or coremltools at import time; geometry.py is pure numpy.
"""

from .backend import (
    BACKENDS,
    COMPUTE_UNITS,
    UNAVAILABLE_REASON,
    CoreMLBackend,
    CoreMLModule,
    coreml_status,
    resolve_placement,
)
from .clip import FittedFrame, matte_fitted
from .compute_plan import ComputePlanReport, coreml_compute_plan_report
from .geometry import FrameGeometry, alpha_to_frame, frame_to_package, plan_geometry
from .sim import SIM_BACKEND, CoreMLSimBackend

__all__ = [
    "BACKENDS",
    "COMPUTE_UNITS",
    "ComputePlanReport",
    "CoreMLBackend",
    "CoreMLModule",
    "CoreMLSimBackend",
    "FittedFrame",
    "FrameGeometry",
    "SIM_BACKEND",
    "UNAVAILABLE_REASON",
    "alpha_to_frame",
    "coreml_compute_plan_report",
    "coreml_status",
    "frame_to_package",
    "matte_fitted",
    "plan_geometry",
    "resolve_placement",
]
