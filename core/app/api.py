"""The Python API: one call for a whole clip, and a generator for streaming.

from matanyone_engine.core.api import convert_video, matte
convert_video("clip.mp4", "mask.png", "out/", weights="seeded:v1-pm", outputs=["alpha", "rgba"])
for frame in matte("clip.mp4", "mask.png", weights="seeded:v1-pm"):
    frame.alpha  # (H, W) float32 in [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import InputError
from ..engine.protocol import Module
from ..engine.state import MemoryConfig
from ..media.subjects import MaskSource, SubjectMasks
from . import passes
from .loading import DEFAULT_BACKEND, load_modules, pipeline_pays

#: What ``mask`` may be: one mask, one per subject, {name: mask}, or subjects already resolved.
MaskInput = MaskSource | Sequence[MaskSource] | Mapping[str, MaskSource] | SubjectMasks


@dataclass
class MatteFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8, the frame the matte belongs to (after --max-size)
    alpha: np.ndarray  # (H, W) float32 in [0, 1]; with several subjects, their union (pixelwise max)
    #: every subject's alpha by subject name, in the order the subjects were given
    subjects: dict[str, np.ndarray] = field(default_factory=dict)


def matte(
    input: str | Path,
    mask: MaskInput,
    *,
    subjects: str | Sequence[int | str] | None = None,
    mask_frame: int | None = None,
    weights: str = "seeded:v1-pm",
    backend: str = DEFAULT_BACKEND,
    warmup: int = 10,
    erode: int = 10,
    dilate: int = 10,
    max_size: int = -1,
    start: int = 0,
    frames: int | None = None,
    mem_frames: int = 5,
    mem_every: int = 5,
    precision: str = "fp32",
    placement: str | Mapping[str, str] | None = None,
    threads: int | None = None,
    modules: Mapping[str, Module] | None = None,
    pipeline: bool | None = None,
    scratch_dir: str | Path | None = None,
) -> Iterator[MatteFrame]:
    """Stream one matte per input frame, in input order.

    ``mask`` is a path or a HxW uint8 array (255 = foreground); a list of them, one per subject
    (subjects 1, 2, ...); a {name: mask} mapping; or a label image whose values are subject ids
    (see media/subjects.py), with ``subjects`` choosing ids ("1,3", [1, 3] or "all").
    ``mask_frame`` is the input frame the masks belong to (default: the first one processed,
    ``start``); frames before it are matted backwards from it (see app/passes.py), using a
    scratch folder in ``scratch_dir`` (default: the system's temporary folder).

    Everything that can be checked is checked before the model loads, so bad input fails fast.
    ``precision="fast"`` lets each backend pick its quickest precision within the official
    demo's accuracy (see core/precision.py); ``pipeline`` (None: where it pays, see
    ``pipeline_pays``) overlaps the next frame's image encoder with the current frame.
    """
    from ..media import video
    from ..media.subjects import resolve_subjects

    info = video.probe(input)
    height, width = video.scaled_size(info.height, info.width, max_size)
    chosen = resolve_subjects(mask, subjects)
    prepared = {
        name: _prepared_mask(raw, info, height, width, erode, dilate, chosen.where(name))
        for name, raw in chosen.masks.items()
    }
    if warmup < 0:
        raise InputError(f"--warmup must be 0 or more, got {warmup}")
    anchor = _mask_frame(info, start, frames, mask_frame)

    from ..engine.driver import clip_dims

    dims, _ = clip_dims(height, width, mem_frames)
    if modules is None:
        modules = load_modules(backend, weights, dims, precision=precision, placement=placement, threads=threads)
        if pipeline is None:
            pipeline = pipeline_pays(backend, placement)

    from ..media.streaming import prefetch

    def read(first: int, count: int | None) -> Iterator[np.ndarray]:
        source = video.iter_frames(input, start=first, count=count)
        if (height, width) != (info.height, info.width):
            source = (video.resize_to_max_size(f, max_size) for f in source)
        return prefetch(source, depth=4)

    driver: dict[str, Any] = {
        "warmup": warmup,
        "mem_frames": mem_frames,
        "config": MemoryConfig(mem_every=mem_every),
        "pipeline": bool(pipeline),
    }
    if anchor == start:
        matted = passes.forward(modules, read(start, frames), prepared, **driver)
    else:
        matted = passes.both_ways(
            modules, read, prepared, first=start, anchor=anchor, count=frames, scratch_dir=scratch_dir, **driver
        )
    for item in matted:
        alphas = item.alphas
        alpha = next(iter(alphas.values())) if len(alphas) == 1 else np.maximum.reduce(list(alphas.values()))
        yield MatteFrame(item.position, item.rgb, alpha, alphas)


def _prepared_mask(
    raw_mask: np.ndarray, info, height: int, width: int, erode: int, dilate: int, where: str
) -> np.ndarray:
    """One subject's mask fitted to the frames, checked and softened like the demo's.

    ``where`` names the subject in messages ("subject 2 (b.png)"); empty for a plain run."""
    import warnings

    from ..media import masks

    try:
        raw_mask, warning = masks.fit_mask_to_frame(raw_mask, info.height, info.width)
        masks.check_mask(raw_mask)
    except InputError as exc:
        if not where:
            raise
        raise InputError(f"{where}: {exc}") from None
    if warning:
        warnings.warn(f"{where}: {warning}" if where else warning, stacklevel=3)
    prepared = masks.prepare_mask(raw_mask, erode=erode, dilate=dilate)
    if (height, width) != (info.height, info.width):
        import cv2

        prepared = cv2.resize(prepared, (width, height), interpolation=cv2.INTER_NEAREST)
    return prepared


def _mask_frame(info, start: int, frames: int | None, mask_frame: int | None) -> int:
    """The input frame the masks belong to, checked against the frames the run processes."""
    if mask_frame is None:
        return start
    if mask_frame < 0:
        raise InputError(f"--mask-frame must be 0 or more, got {mask_frame}")
    total = info.frame_count
    if mask_frame >= total:
        raise InputError(
            f"--mask-frame {mask_frame} is outside the clip: {info.path.name} has {total} frames (0..{total - 1})"
        )
    if mask_frame < start:
        raise InputError(
            f"--mask-frame {mask_frame} is before --start {start}: the mask's frame must be one the run "
            "processes; lower --start"
        )
    if frames is not None and mask_frame >= start + frames:
        raise InputError(
            f"--mask-frame {mask_frame} is after the last frame processed ({start + frames - 1}); "
            "raise --frames or leave it out"
        )
    return mask_frame


def convert_video(
    input: str | Path,
    mask: MaskInput,
    output_dir: str | Path,
    *,
    outputs: Sequence[str] = ("alpha",),
    alpha_format: str = "png16",
    background: str = "120,255,155",
    video_format: str = "prores",
    subjects: str | Sequence[int | str] | None = None,
    union: bool = False,
    progress=None,
    **options,
) -> list[Path]:
    """Matte a whole clip and write the chosen outputs; returns the written paths.

    With several subjects each gets its own outputs (OUTDIR/<input>/alpha/<subject>/...,
    OUTDIR/<input>_<subject>_foreground.mp4, ...); ``union`` also writes every output for the
    union of the subjects, as subject ``union``. Nothing is left half-written: writers build
    under temporary names and rename on success.
    """
    from ..media import video, writers
    from ..media.streaming import BackgroundSink
    from ..media.subjects import UNION, resolve_subjects

    info = video.probe(input)
    chosen = resolve_subjects(mask, subjects)
    if union and len(chosen.names) < 2:
        raise InputError("--union needs two or more subjects: pass several --mask files or a label image")
    writers.check_writable(Path(output_dir))
    options.setdefault("scratch_dir", Path(output_dir))  # beside the outputs: /tmp may be a RAM disk
    matte_iter = matte(input, chosen, **options)
    sinks = None
    encoder: BackgroundSink | None = None

    def write(frame: MatteFrame, group: writers.WriterGroup) -> None:
        if not chosen.named:
            group.write(frame.rgb, frame.alpha)
        else:
            group.write_subjects(frame.rgb, {**frame.subjects, UNION: frame.alpha})

    try:
        for frame in matte_iter:
            if sinks is None:
                sized = info if frame.rgb.shape[:2] == (info.height, info.width) else _resized_info(info, frame.rgb)
                sinks = writers.make_writers(
                    Path(output_dir),
                    sized,
                    list(outputs),
                    alpha_format=alpha_format,
                    background=background,
                    video_format=video_format,
                    start_frame=options.get("start", 0),
                    subjects=chosen.names if chosen.named else None,
                    union_outputs=list(outputs) if union else (),
                )
                encoder = BackgroundSink(lambda f, s=sinks: write(f, s))
            encoder.put(frame)
            if progress is not None:
                progress(frame.index)
        if encoder is not None:
            encoder.join()
    except BaseException:
        if encoder is not None:
            try:
                encoder.join()
            except BaseException:
                pass
        if sinks is not None:
            sinks.abort()
        raise
    if sinks is None:
        raise InputError(f"{input} produced no frames (check --start and --frames)")
    return list(sinks.close())


def _resized_info(info, rgb: np.ndarray):
    from dataclasses import replace

    return replace(info, height=rgb.shape[0], width=rgb.shape[1])
