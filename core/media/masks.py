"""First-frame mask: read it, fit it to the frames, soften its edges like the demo, and check what
the model will actually get.

MatAnyone is sensitive to the exact first-frame mask, so prepare_mask reproduces the official
demo's dilate-then-erode step operation for operation; any deviation shows up as a different
matte on every following frame.

Masks come in more shapes than white-on-black (docs/inputs.md):

* grey or colour images are read like the demo reads them, by luminance (PIL's ``convert("L")``);
* an image with an alpha channel that varies (a cut-out, white paint on a transparent layer)
  is read by its alpha; one whose alpha is flat is read by luminance;
* a label mask (a palette image with coloured entries, the DAVIS/YouTube-VOS format, or a grey
  image whose values are all small integers, at most LABEL_MAX) marks each subject with its own
  number; for one subject, the foreground is every non-zero label. ``read_labels`` returns the
  label image and the labels it holds, for callers that follow several subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..engine.errors import InputError

#: Relative difference in aspect ratio still treated as "the same frame, other resolution".
ASPECT_TOLERANCE = 0.01
#: A grey mask whose brightest value is at most this holds labels (0 = background, 1, 2, ... =
#: subjects), not shades: nobody paints a matte mask whose white is a quarter of full brightness.
LABEL_MAX = 63


@dataclass(frozen=True)
class LabelImage:
    """A label mask: one integer per pixel, 0 for background; ``values`` the non-zero labels present."""

    labels: np.ndarray  # (H, W) int32
    values: tuple[int, ...]


@dataclass(frozen=True)
class MaskReading:
    """A mask file as the pipeline reads it: ``mask`` (HxW uint8, 255 = foreground, the demo's
    scale), what it was read from (``source``) and, for label masks, the labels found."""

    mask: np.ndarray
    source: str
    labels: tuple[int, ...] = field(default=())

    def describe(self) -> str:
        if self.labels:
            found = ", ".join(str(v) for v in self.labels)
            return f"{self.source} (labels {found}; foreground = every non-zero label)"
        return self.source


def _open_mask(path: str | Path) -> tuple[Path, Image.Image]:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"mask not found: {path}; check the path")
    if path.is_dir():
        raise InputError(f"mask {path} is a folder: pass a PNG/JPG with white foreground")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask {path} is not an image ({exc}): pass a PNG/JPG with white foreground") from exc
    return path, image


def _label_values(labels: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unique(labels) if v != 0)


def _palette_is_grey(image: Image.Image, used: np.ndarray) -> bool:
    """Whether every palette entry the image uses is a grey: a black/white mask saved as a palette
    (GIMP's indexed mode) rather than a label mask, whose entries are distinct colours."""
    palette = np.asarray(image.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    entries = palette[used[used < len(palette)]]
    return bool(len(entries) == 0 or np.all((entries[:, 0] == entries[:, 1]) & (entries[:, 1] == entries[:, 2])))


def _grey_values(image: Image.Image) -> np.ndarray:
    """Grey levels at their own depth: uint8, or uint16 for 16-bit images (not PIL's clip to 255)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
    return np.asarray(image.convert("L"))


def labels_from_image(image: Image.Image) -> LabelImage | None:
    """The image as a label mask, or None when it is an ordinary white-on-black or soft mask.

    A palette image with coloured entries holds its labels as palette indices; a grey image
    (8 or 16 bits) holds them as values when none exceeds LABEL_MAX.
    """
    if image.mode == "P" and "transparency" not in image.info:
        indices = np.asarray(image).astype(np.int32)
        if not _palette_is_grey(image, np.unique(indices)):
            return LabelImage(indices, _label_values(indices))
        image = image.convert("L")
    if image.mode in ("L", "I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = _grey_values(image)
        top = int(grey.max()) if grey.size else 0
        if 0 < top <= LABEL_MAX:
            labels = grey.astype(np.int32)
            return LabelImage(labels, _label_values(labels))
    return None


def read_labels(path: str | Path) -> LabelImage | None:
    """The label image of a mask file and the labels it holds, or None if it is no label mask."""
    _, image = _open_mask(path)
    with image:
        return labels_from_image(image)


def _alpha_channel(image: Image.Image) -> np.ndarray | None:
    """The alpha channel when the image has one that varies, else None (a flat alpha says nothing)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return None
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return alpha if alpha.min() != alpha.max() else None


def read_mask(path: str | Path) -> MaskReading:
    """Read a mask file by the rules of the module docstring; see MaskReading."""
    _, image = _open_mask(path)
    with image:
        alpha = _alpha_channel(image)
        if alpha is not None:
            return MaskReading(np.ascontiguousarray(alpha), "alpha channel")
        label_image = labels_from_image(image)
        if label_image is not None:
            mask = np.where(label_image.labels != 0, 255, 0).astype(np.uint8)
            kind = "palette labels" if image.mode == "P" else "grey labels"
            return MaskReading(mask, kind, label_image.values)
        if image.mode.startswith("I"):
            return MaskReading((_grey_values(image) >> 8).astype(np.uint8), "16-bit grey levels (top 8 bits)")
        grey = image.mode in ("L", "1") or (image.mode == "P" and "transparency" not in image.info)
        # PIL's convert("L") is the demo's own reading, so colour masks weigh their channels alike.
        return MaskReading(np.array(image.convert("L")), "grey levels" if grey else "luminance (colour image)")


def load_mask(path: str | Path) -> np.ndarray:
    """HxW uint8 mask, 255 = foreground: ``read_mask(path).mask``. For a white-on-black image this
    is exactly the demo's reading (PIL's ``convert("L")``)."""
    return read_mask(path).mask


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """The demo's gen_dilate: everything not plainly background grows into an unknown band."""
    fg_and_unknown = np.not_equal(mask, 0).astype(np.float32)
    return (cv2.dilate(fg_and_unknown, _ellipse(size), iterations=1) * 255).astype(np.float32)


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    """The demo's gen_erosion: only pure-white pixels count as foreground, then shrink them."""
    fg = np.equal(mask, 255).astype(np.float32)
    return (cv2.erode(fg, _ellipse(size), iterations=1) * 255).astype(np.float32)


def prepare_mask(mask_u8: np.ndarray, erode: int = 10, dilate: int = 10) -> np.ndarray:
    """Float32 mask in 0..255 for the first frame; 0 disables a step.

    The order matters and is the demo's: dilate first, then erode the dilated result. With the
    default equal sizes this mostly smooths the outline rather than growing or shrinking it.
    """
    if mask_u8.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask_u8.shape}")
    if erode < 0 or dilate < 0:
        raise ValueError(f"erode and dilate must be >= 0, got erode={erode} dilate={dilate}")
    mask: np.ndarray = mask_u8
    if dilate > 0:
        mask = _dilate(mask, dilate)
    if erode > 0:
        mask = _erode(mask, erode)
    return mask.astype(np.float32)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour so a binary mask stays binary (the demo's mode="nearest")."""
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def _same_aspect(mask_h: int, mask_w: int, frame_h: int, frame_w: int) -> bool:
    return abs((mask_w / mask_h) / (frame_w / frame_h) - 1.0) <= ASPECT_TOLERANCE


def fit_mask_to_frame(
    mask: np.ndarray, frame_h: int, frame_w: int, *, turned: str = ""
) -> tuple[np.ndarray, str | None]:
    """Accept a mask drawn at another resolution of the same frame (e.g. 1080 vs a 1088-high
    decode), but refuse one of a different shape, which would be a mask of some other image.

    ``turned`` describes the video's display rotation ("rotated 90° clockwise"), so a mask drawn
    on the frame as stored rather than as shown gets a message that says so.
    """
    mask_h, mask_w = mask.shape[:2]
    if (mask_h, mask_w) == (frame_h, frame_w):
        return mask, None
    if mask_h > 0 and mask_w > 0 and _same_aspect(mask_h, mask_w, frame_h, frame_w):
        warning = (
            f"mask is {mask_h}x{mask_w} but frames are {frame_h}x{frame_w} (height x width); "
            "resized the mask to the frame size"
        )
        return resize_mask(mask, frame_h, frame_w), warning
    if turned and mask_h > 0 and mask_w > 0 and _same_aspect(mask_w, mask_h, frame_h, frame_w):
        raise InputError(
            f"mask is {mask_h}x{mask_w} but the video is shown {turned}, so its frames are "
            f"{frame_h}x{frame_w} (height x width) upright: draw the mask on the frame as a player shows it"
        )
    raise InputError(
        f"mask is {mask_h}x{mask_w} but frames are {frame_h}x{frame_w} (height x width): "
        "give a mask of the first frame's size"
    )


_EMPTY = "mask is empty (no white pixels): paint the target white on a black background"
_FULL = "mask covers the whole frame (no black background): paint only the target white"


def check_mask(mask: np.ndarray) -> None:
    """Refuse masks that select nothing or everything; the model has no target to follow then.

    Foreground means any non-zero pixel, the demo's own reading of a mask (its dilate step).
    ``check_prepared_mask`` is the check a run makes, on what the model will get.
    """
    if not np.any(mask):
        raise InputError(_EMPTY)
    if np.all(mask):
        raise InputError(_FULL)


def check_prepared_mask(raw: np.ndarray, prepared: np.ndarray, *, erode: int, dilate: int, scaled: bool) -> None:
    """Refuse a first-frame mask that reaches the model empty or with no background, saying which
    step made it so: the file itself, --erode/--dilate, or shrinking it for --max-size.

    ``raw`` is the mask as read (HxW uint8), ``prepared`` what the model gets (after prepare_mask
    and any resize; ``scaled`` says whether there was one).
    """
    check_mask(raw)
    if not np.any(prepared):
        if erode > 0 and not np.any(raw == 255):
            raise InputError(
                f"mask has no pure-white (255) pixels, and --erode {erode} keeps only those as foreground "
                "(the official demo's rule): paint the target 255 white, or pass --erode 0"
            )
        if erode > 0:
            raise InputError(
                f"mask is empty after --erode {erode}: the target is thinner than the kernel; lower --erode"
            )
        if scaled:
            raise InputError("mask vanishes when shrunk for --max-size: paint a larger target or raise --max-size")
        raise InputError(_EMPTY)
    if np.all(prepared > 0):
        raise InputError(
            f"mask covers the whole frame after --dilate {dilate} (its background is thinner than the kernel): "
            "lower --dilate, or leave more background in the mask"
        )


def mask_for_model(raw: np.ndarray, height: int, width: int, *, erode: int = 10, dilate: int = 10) -> np.ndarray:
    """The first-frame mask exactly as the model gets it: prepared at the frame's own size (the
    demo's order), shrunk to ``height`` x ``width`` (--max-size) by nearest neighbour, checked."""
    prepared = prepare_mask(raw, erode=erode, dilate=dilate)
    scaled = prepared.shape[:2] != (height, width)
    if scaled:
        prepared = resize_mask(prepared, height, width)
    check_prepared_mask(raw, prepared, erode=erode, dilate=dilate, scaled=scaled)
    return prepared
