"""The stable public entry point of the Python API (it lives in ``core/app/api.py``).

from matanyone_engine.core.api import batch, convert_video, matte
"""

from .app.api import MatteFrame, batch, convert_video, matte

__all__ = ["MatteFrame", "batch", "convert_video", "matte"]
