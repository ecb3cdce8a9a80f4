"""First-frame mask providers: where the mask that starts a matting run comes from.

MatAnyone needs a mask of the target on the first frame. Painting one is the accurate way, but a
user often has only a box drawn around the subject, or a Mac that can segment people by itself.
Each source is a provider object registered through the ``register_mask_providers`` hook, so a
plugin can add its own (a SAM wrapper, a web service) without touching the CLI:

* ``file``   - a mask image on disk (options: ``path``), read exactly like ``--mask``;
* ``box``    - GrabCut started from a rectangle (options: ``box="x,y,w,h"``); classical colour
  models, no network weights, so it works offline on every platform;
* ``vision`` - Apple Vision person segmentation through PyObjC; macOS 12+ only.

A provider answers ``available() -> (ok, reason)`` without doing any work, and
``make_mask(first_frame_rgb_u8, **options)`` returns an HxW uint8 mask of the frame's size with
255 for foreground. Unknown options are refused rather than ignored: ``--mask-box`` given to a
provider that does not read it is almost always a mistake worth reporting.

This module is itself a plugin (listed in core.plugins.BUILTIN_PLUGINS). No torch here.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from ..engine.errors import InputError, MatanyoneWarning
from ..plugins.hookspecs import hookimpl

#: GrabCut iterations for the box provider; 5 is OpenCV's documented sweet spot, more rarely helps.
GRABCUT_ITERATIONS = 5
#: Vision's person mask is soft; pixels at or above this probability count as the person.
VISION_THRESHOLD = 0.5
#: Vision's mask hugs the body and loses hair and fingers; grow it so the matte can recover them.
VISION_DILATE_PX = 8
VISION_UNAVAILABLE = "Apple Vision person segmentation needs macOS 12+ with pyobjc-framework-Vision"


@runtime_checkable
class MaskProvider(Protocol):
    """What ``register_mask_providers`` registers (see docs/plugins.md)."""

    name: str
    description: str

    def available(self) -> tuple[bool, str]:
        """(True, "") when it can run here, else (False, one-line reason)."""
        ...

    def make_mask(self, first_frame_rgb_u8: np.ndarray, **options: Any) -> np.ndarray:
        """HxW uint8 mask of the frame's size, 255 = foreground."""
        ...


def _check_frame(frame: np.ndarray) -> tuple[int, int]:
    """Providers are handed decoded frames; anything else is a caller bug worth a clear message."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise InputError(f"a mask provider needs the first frame as HxWx3 uint8 RGB, got shape {shape} {dtype}")
    return int(frame.shape[0]), int(frame.shape[1])


def _reject_unknown(provider: str, options: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """Refuse options a provider does not read, naming the ones it does."""
    extra = sorted(k for k, v in options.items() if k not in known and v is not None)
    if extra:
        takes = ", ".join(known) if known else "no options"
        raise InputError(f"mask provider {provider!r} does not take {', '.join(extra)} (it takes {takes})")


# ------------------------------------------------------------------------------------------ file


class FileMaskProvider:
    """A mask image from disk, read and fitted to the frame the same way ``--mask`` is."""

    name = "file"
    description = "mask image file (white = foreground); option path"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def make_mask(self, first_frame_rgb_u8: np.ndarray, **options: Any) -> np.ndarray:
        _reject_unknown(self.name, options, ("path",))
        height, width = _check_frame(first_frame_rgb_u8)
        path = options.get("path")
        if path is None:
            raise InputError("mask provider 'file' needs a path: pass --mask FILE")
        from .masks import fit_mask_to_frame, load_mask

        mask, warning = fit_mask_to_frame(load_mask(Path(path)), height, width)
        if warning:
            warnings.warn(warning, MatanyoneWarning, stacklevel=2)
        return np.ascontiguousarray(mask, dtype=np.uint8)


# ------------------------------------------------------------------------------------------- box


def parse_box(box: str | tuple[int, int, int, int] | list[int], height: int, width: int) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels, top-left origin) -> ints, checked against the frame.

    GrabCut needs both a foreground region (inside the box) and a background sample (outside
    it), so boxes that are empty, too thin to hold its colour model, or that cover the whole
    frame are refused with the reason, as are boxes reaching outside the frame.
    """
    parts: list[str | int] = [p.strip() for p in box.split(",")] if isinstance(box, str) else list(box)
    if len(parts) != 4:
        raise InputError(f"bad mask box {box!r}: write x,y,w,h in pixels, e.g. --mask-box 120,40,200,300")
    try:
        x, y, w, h = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"bad mask box {box!r}: x,y,w,h must be whole numbers of pixels") from None
    if w < 2 or h < 2:
        raise InputError(f"mask box {x},{y},{w},{h} is degenerate (width and height must be at least 2 pixels)")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InputError(
            f"mask box {x},{y},{w},{h} lies outside the {width}x{height} (width x height) first frame: "
            f"keep 0 <= x, x+w <= {width}, 0 <= y, y+h <= {height}"
        )
    if w * h < 16:
        raise InputError(
            f"mask box {x},{y},{w},{h} is too small for GrabCut (fewer than 16 pixels); draw it around the target"
        )
    if w == width and h == height:
        raise InputError(
            f"mask box {x},{y},{w},{h} covers the whole frame: GrabCut needs background outside "
            "the box; draw it tighter"
        )
    return x, y, w, h


class BoxMaskProvider:
    """GrabCut from a rectangle: the box is 'probably foreground', everything outside is background."""

    name = "box"
    description = f"GrabCut ({GRABCUT_ITERATIONS} iterations) initialised from a rectangle; option box=x,y,w,h"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def make_mask(self, first_frame_rgb_u8: np.ndarray, **options: Any) -> np.ndarray:
        _reject_unknown(self.name, options, ("box",))
        height, width = _check_frame(first_frame_rgb_u8)
        if options.get("box") is None:
            raise InputError("mask provider 'box' needs a rectangle: pass --mask-box x,y,w,h")
        rect = parse_box(options["box"], height, width)
        labels = np.zeros((height, width), np.uint8)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        # GrabCut's colour models do not care about channel order, but OpenCV documents BGR.
        image = np.ascontiguousarray(first_frame_rgb_u8[:, :, ::-1])
        try:
            cv2.grabCut(image, labels, rect, bgd_model, fgd_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
        except cv2.error as exc:
            raise InputError(
                f"GrabCut failed on mask box {options['box']}: {exc.err or exc}; draw the box differently"
            ) from None
        mask = np.where((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
        if not mask.any():
            raise InputError(
                f"GrabCut found no foreground in mask box {options['box']}; draw the box tighter around the "
                "target or pass a painted mask with --mask"
            )
        return mask


# ---------------------------------------------------------------------------------------- vision


def _macos_version() -> tuple[int, ...]:
    release = platform.mac_ver()[0]
    try:
        return tuple(int(p) for p in release.split(".") if p)
    except ValueError:
        return ()


def binarise_and_dilate(probability: np.ndarray, height: int, width: int) -> np.ndarray:
    """Vision's soft mask (any size, values in [0, 1]) -> HxW uint8 0/255, thresholded and grown.

    Resizing happens on the soft mask, before the threshold, so the outline is interpolated
    rather than blocky; the dilation then covers hair and fingers Vision tends to cut off.
    """
    soft: np.ndarray = np.asarray(probability, dtype=np.float32)
    if soft.shape != (height, width):
        soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    binary = (soft >= VISION_THRESHOLD).astype(np.uint8) * 255
    size = 2 * VISION_DILATE_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(binary, kernel, iterations=1)


class VisionMaskProvider:
    """Apple Vision's person segmentation (VNGeneratePersonSegmentationRequest, accurate quality)."""

    name = "vision"
    description = "Apple Vision person segmentation (macOS 12+), binarised at 0.5 and dilated 8 px"

    def available(self) -> tuple[bool, str]:
        if sys.platform != "darwin" or _macos_version()[:1] < (12,):
            return False, VISION_UNAVAILABLE
        if importlib.util.find_spec("Vision") is None or importlib.util.find_spec("Quartz") is None:
            return False, VISION_UNAVAILABLE
        return True, ""

    def make_mask(self, first_frame_rgb_u8: np.ndarray, **options: Any) -> np.ndarray:
        ok, reason = self.available()
        if not ok:
            raise InputError(reason)
        _reject_unknown(self.name, options, ())
        height, width = _check_frame(first_frame_rgb_u8)
        probability = _vision_person_probability(np.ascontiguousarray(first_frame_rgb_u8))
        mask = binarise_and_dilate(probability, height, width)
        if not mask.any():
            raise InputError("Apple Vision found no person in the first frame; pass --mask or --mask-box instead")
        return mask


def _vision_person_probability(rgb: np.ndarray) -> np.ndarray:  # pragma: no cover - macOS only
    """Run VNGeneratePersonSegmentationRequest on an RGB frame; the mask in [0, 1] at Vision's size."""
    import Quartz
    import Vision
    from Foundation import NSData

    height, width = rgb.shape[:2]
    data = NSData.dataWithBytes_length_(rgb.tobytes(), rgb.nbytes)
    provider = Quartz.CGDataProviderCreateWithCFData(data)
    image = Quartz.CGImageCreate(
        width,
        height,
        8,
        24,
        width * 3,
        Quartz.CGColorSpaceCreateDeviceRGB(),
        Quartz.kCGBitmapByteOrderDefault | Quartz.kCGImageAlphaNone,
        provider,
        None,
        False,
        Quartz.kCGRenderingIntentDefault,
    )
    request = Vision.VNGeneratePersonSegmentationRequest.alloc().init()
    request.setQualityLevel_(Vision.VNGeneratePersonSegmentationRequestQualityLevelAccurate)
    request.setOutputPixelFormat_(Quartz.kCVPixelFormatType_OneComponent8)
    handler = Vision.VNImageRequestHandler.alloc().initWithCGImage_options_(image, {})
    ok, error = handler.performRequests_error_([request], None)
    if not ok:
        raise InputError(f"Apple Vision person segmentation failed: {error}")
    results = request.results() or []
    if not results:
        raise InputError("Apple Vision returned no segmentation for the first frame; pass --mask or --mask-box")
    buffer = results[0].pixelBuffer()
    Quartz.CVPixelBufferLockBaseAddress(buffer, Quartz.kCVPixelBufferLock_ReadOnly)
    try:
        rows = Quartz.CVPixelBufferGetHeight(buffer)
        cols = Quartz.CVPixelBufferGetWidth(buffer)
        stride = Quartz.CVPixelBufferGetBytesPerRow(buffer)
        base = Quartz.CVPixelBufferGetBaseAddress(buffer)
        raw = np.frombuffer(base.as_buffer(stride * rows), dtype=np.uint8).reshape(rows, stride)[:, :cols]
        probability = raw.astype(np.float32) / 255.0
    finally:
        Quartz.CVPixelBufferUnlockBaseAddress(buffer, Quartz.kCVPixelBufferLock_ReadOnly)
    return probability


# ----------------------------------------------------------------------------- plugin + CLI helper

PROVIDERS = (FileMaskProvider(), BoxMaskProvider(), VisionMaskProvider())


@hookimpl
def register_mask_providers(register: Callable[[Any], None]) -> None:
    """Register the three built-in providers, available or not (``available()`` says why)."""
    for provider in PROVIDERS:
        register(provider)


def first_frame_mask(
    input: str | Path,
    *,
    mask: str | Path | None = None,
    mask_box: str | None = None,
    mask_provider: str | None = None,
    start: int = 0,
) -> Path | np.ndarray:
    """The ``--mask`` / ``--mask-box`` / ``--mask-provider`` trio of ``matanyone run``, resolved.

    Returns the mask path unchanged when only ``--mask`` is given (the pipeline reads it as it
    always did), else the provider's mask for frame ``start`` of ``input`` at the input's own
    resolution, which core.api.matte accepts like a loaded mask file.
    """
    if mask_provider is None:
        if mask is not None and mask_box is not None:
            raise InputError("give either --mask or --mask-box, not both (or name --mask-provider)")
        if mask_box is not None:
            mask_provider = "box"
        elif mask is not None:
            return Path(mask)
        else:
            raise InputError("no first-frame mask: pass --mask FILE, --mask-box x,y,w,h or --mask-provider NAME")
    from .. import plugins
    from . import video

    table = plugins.mask_providers()
    if mask_provider not in table:
        known = ", ".join(sorted(table)) or "none"
        raise InputError(f"unknown mask provider {mask_provider!r}; known providers: {known}")
    provider = table[mask_provider]
    ok, reason = provider.available()
    if not ok:
        raise InputError(f"mask provider {mask_provider} is unavailable here: {reason}")
    try:
        frame = next(video.iter_frames(input, start=start, count=1))
    except StopIteration:
        raise InputError(f"{input} has no frame {start} to make the first-frame mask from") from None
    options = {k: v for k, v in (("path", mask), ("box", mask_box)) if v is not None}
    return provider.make_mask(frame, **options)
