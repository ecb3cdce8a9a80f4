"""Where the Core ML backends' frame geometry used to live; it is now core/engine/geometry.py.

The app layer applies the geometry to every fixed-size module set (Core ML packages and exported
model folders alike), so the code sits below both; this name stays importable for code written
against the old location.
"""

from matanyone_engine.core.engine.geometry import (
    DEFAULT_ASPECT_TOLERANCE,
    FrameGeometry,
    alpha_to_frame,
    frame_to_package,
    nchw_to_frame,
    nchw_to_package,
    plan_geometry,
    resize,
)

__all__ = [
    "DEFAULT_ASPECT_TOLERANCE",
    "FrameGeometry",
    "alpha_to_frame",
    "frame_to_package",
    "nchw_to_frame",
    "nchw_to_package",
    "plan_geometry",
    "resize",
]
