"""Subjects: the people (or things) one run mattes, each from its own first-frame mask.

A run follows one subject per mask, and the user brings them in one of three ways:

* one ordinary mask (white on black): one subject, written where a single-subject run always
  wrote (no subject in the output names);
* several masks, one image per subject (``--mask a.png --mask b.png``): subjects ``1``, ``2``, ...
  in the order given;
* one label image whose pixel values are subject ids: a palette PNG (the format of the official
  repository's and DAVIS's masks: each palette index is an object id, 0 the background) or a
  gray image. A palette PNG with two or more non-zero indices is read as labels by itself; a gray
  image is only read as labels when subjects are asked for (``--subjects 1,3`` or ``all``),
  because a gray image is also what an ordinary soft-edged mask is, and its edge values must not
  turn into hundreds of subjects.

``--subjects`` picks among them: label ids for a label image, 1-based positions for several masks.
Everything here runs before any model loads, so a wrong id or mismatched masks fail in a second.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..engine.errors import InputError, MatanyoneWarning

log = logging.getLogger(__name__)

#: Image modes whose pixel values can be read as subject ids.
LABEL_MODES = ("P", "L", "1", "I;16", "I")
#: What a subject name may hold: it becomes a folder and part of file names.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Reserved for the union of all subjects in the composite outputs.
UNION = "union"

MaskSource = str | Path | np.ndarray


@dataclass(frozen=True)
class SubjectMasks:
    """The masks of one run, by subject name, as loaded (HxW uint8; label subjects are 0/255).

    ``named`` says whether outputs carry the subject's name: true for several subjects and for
    any subject picked out of a label image, false for the one mask of a plain run.
    """

    masks: dict[str, np.ndarray]
    sources: dict[str, str]
    named: bool

    @property
    def names(self) -> list[str]:
        return list(self.masks)

    def where(self, name: str) -> str:
        """How a message names the subject: "subject 2 (b.png)", or "" for a plain run's mask."""
        return f"subject {name} ({self.sources[name]})" if self.named else ""


def parse_subject_ids(spec: str | Sequence[int | str] | None) -> tuple[int, ...] | str | None:
    """``"1,3"`` -> (1, 3); ``"all"`` -> "all"; None -> None (no choice made)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() == "all":
            return "all"
        parts: list[int | str] = [p.strip() for p in text.split(",") if p.strip()]
    else:
        parts = list(spec)
    ids: list[int] = []
    for part in parts:
        try:
            value = int(part)
        except (TypeError, ValueError):
            raise InputError(
                f"bad --subjects {spec!r}: give subject ids as whole numbers, e.g. --subjects 1,3 (or all)"
            ) from None
        if value < 1:
            raise InputError(f"bad --subjects {spec!r}: subject ids start at 1 (0 is the background)")
        if value not in ids:
            ids.append(value)
    if not ids:
        raise InputError("--subjects is empty: give ids such as --subjects 1,3, or all")
    return tuple(ids)


def split_labels(labels: np.ndarray) -> dict[int, np.ndarray]:
    """{id: HxW uint8 mask, 255 where the label image holds that id} for every non-zero id."""
    if labels.ndim != 2:
        raise InputError(f"a label image must be one channel of subject ids, got shape {labels.shape}")
    values = labels.astype(np.int64, copy=False)
    return {int(v): np.where(values == v, 255, 0).astype(np.uint8) for v in np.unique(values) if v != 0}


def read_label_image(path: str | Path) -> dict[int, np.ndarray]:
    """The subjects of a label image file: {id: binary 0/255 mask}, ids ascending.

    Palette PNGs are read by index (the palette's colours do not matter), gray images by value.
    """
    path = Path(path).expanduser()
    with _open_image(path) as image:
        if image.mode not in LABEL_MODES:
            raise InputError(
                f"label image {path.name} is {image.mode}: save it as a palette PNG or gray image whose values "
                "are subject ids, or pass one --mask per subject"
            )
        labels = np.array(image)
    subjects = split_labels(labels)
    if not subjects:
        raise InputError(f"label image {path.name} holds no subject (every pixel is 0): paint each subject its id")
    return subjects


def is_label_image(path: str | Path) -> bool:
    """True for a palette PNG with two or more non-zero indices: a label image by its format.

    A palette image with one non-zero index is the official repository's way of saving a plain
    white-on-black mask, and stays one subject.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                return False
            values = np.unique(np.array(image))
    except (UnidentifiedImageError, OSError):
        return False
    return int(np.count_nonzero(values)) >= 2


def resolve_subjects(
    mask: MaskSource | Sequence[MaskSource] | Mapping[str, MaskSource] | SubjectMasks,
    subjects: str | Sequence[int | str] | None = None,
) -> SubjectMasks:
    """The run's subjects from what the user passed as mask(s) and ``--subjects``.

    ``mask`` is one mask (path or HxW uint8 array), a list of them (one per subject), a mapping
    {name: mask} (names chosen by the caller), or an already resolved SubjectMasks.
    """
    from .masks import load_mask

    if isinstance(mask, SubjectMasks):
        if subjects is not None:
            raise InputError("pass --subjects with the mask files, not with already chosen subjects")
        return mask
    chosen = parse_subject_ids(subjects)
    if isinstance(mask, Mapping):
        if chosen is not None:
            raise InputError("subjects given by name need no --subjects: leave out the ones you do not want")
        if not mask:
            raise InputError("no subject masks given: pass at least one mask")
        for name in mask:
            _check_name(str(name))
        loaded = {str(n): _load(m, load_mask) for n, m in mask.items()}
        sources = {str(n): _describe(m) for n, m in mask.items()}
        return _same_size(SubjectMasks(loaded, sources, named=True))
    items: list[MaskSource] = [mask] if isinstance(mask, (str, Path, np.ndarray)) else list(mask)
    if not items:
        raise InputError("no first-frame mask: pass --mask FILE (once per subject)")
    if len(items) > 1:
        names = [str(i) for i in range(1, len(items) + 1)]
        picked = names if not isinstance(chosen, tuple) else [str(i) for i in chosen]
        missing = [p for p in picked if p not in names]
        if missing:
            raise InputError(
                f"subject {missing[0]} does not exist: {len(items)} masks were given (subjects "
                f"{', '.join(names)}, in --mask order); pick among those with --subjects"
            )
        loaded = {n: _load(items[int(n) - 1], load_mask) for n in picked}
        sources = {n: _describe(items[int(n) - 1]) for n in picked}
        return _same_size(SubjectMasks(loaded, sources, named=True))
    only = items[0]
    if chosen is None and not (isinstance(only, (str, Path)) and is_label_image(only)):
        return SubjectMasks({"1": _read_plain(only)}, {"1": _describe(only)}, named=False)
    return _from_labels(only, chosen)


def _from_labels(source: MaskSource, chosen: tuple[int, ...] | str | None) -> SubjectMasks:
    label = _describe(source)
    table = split_labels(np.asarray(source)) if isinstance(source, np.ndarray) else read_label_image(source)
    if not table:
        raise InputError(f"label image {label} holds no subject (every pixel is 0): paint each subject its id")
    ids: list[int] = list(table) if not isinstance(chosen, tuple) else list(chosen)
    absent = [i for i in ids if i not in table]
    if absent:
        held = ", ".join(str(i) for i in table)
        raise InputError(
            f"subject {absent[0]} is not in label image {label} (its ids are {held}); pick among those with --subjects"
        )
    return SubjectMasks({str(i): table[i] for i in ids}, {str(i): f"id {i} of {label}" for i in ids}, named=True)


def _same_size(chosen: SubjectMasks) -> SubjectMasks:
    """Every subject's mask must be of the same frame, so of one size."""
    shapes = {name: m.shape[:2] for name, m in chosen.masks.items()}
    first = next(iter(shapes))
    for name, shape in shapes.items():
        if shape != shapes[first]:
            a, b = shapes[first], shape
            raise InputError(
                f"masks differ in size: {chosen.sources[first]} is {a[0]}x{a[1]} but {chosen.sources[name]} is "
                f"{b[0]}x{b[1]} (height x width); draw every subject's mask on the same frame"
            )
    return chosen


def _check_name(name: str) -> None:
    if not _SAFE_NAME.match(name) or name == UNION:
        raise InputError(
            f"subject name {name!r} cannot name an output folder: use letters, digits, '_', '-' or '.' "
            f"(not {UNION!r}, which names the union)"
        )


def _read_plain(source: MaskSource) -> np.ndarray:
    """The one mask of a plain run, saying how it was read (``--verbose``); a grey label mask's
    labels are matted together, with a warning saying how to matte them apart."""
    if isinstance(source, np.ndarray):
        return source
    from .masks import read_mask

    reading = read_mask(source)
    name = Path(source).name
    log.info("mask %s: foreground read from its %s", name, reading.describe())
    if len(reading.labels) > 1:
        found = ", ".join(str(v) for v in reading.labels)
        warnings.warn(
            f"mask {name} is a label mask with labels {found}: they are matted together as one subject "
            "(pass --subjects all, or some ids, to matte each on its own)",
            MatanyoneWarning,
            stacklevel=5,
        )
    return reading.mask


def _load(source: MaskSource, load_mask) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    return load_mask(source)


def _describe(source: MaskSource) -> str:
    if isinstance(source, np.ndarray):
        return "the given array"
    return Path(source).name


def _open_image(path: Path) -> Image.Image:
    if not path.exists():
        raise InputError(f"mask not found: {path}; check the path")
    if path.is_dir():
        raise InputError(f"mask {path} is a folder: pass a PNG with one value per subject")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask {path} is not an image ({exc}): pass a palette or gray PNG of subject ids") from exc
