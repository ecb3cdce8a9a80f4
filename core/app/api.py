"""The Python API: one call for a whole clip, and a generator for streaming.

from matanyone_engine.core.api import convert_video, matte
convert_video("clip.mp4", "mask.png", "out/", weights="seeded:v1-pm", outputs=["alpha", "rgba"])
for frame in matte("clip.mp4", "mask.png", weights="seeded:v1-pm"):
    frame.alpha  # (H, W) float32 in [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.driver import matte_frames
from ..engine.errors import InputError
from ..engine.protocol import Module
from ..engine.state import MemoryConfig
from .loading import DEFAULT_BACKEND, load_modules, pipeline_pays


@dataclass
class MatteFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8, the frame the matte belongs to (after --max-size)
    alpha: np.ndarray  # (H, W) float32 in [0, 1]


def matte(
    input: str | Path,
    mask: str | Path | np.ndarray,
    *,
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
) -> Iterator[MatteFrame]:
    """Stream one matte per input frame. ``mask`` is a path or a HxW uint8 array (255 = foreground).

    Everything that can be checked is checked before the model loads, so bad input fails fast.
    ``precision="fast"`` lets each backend pick its quickest precision within the official
    demo's accuracy (see core/precision.py); ``pipeline`` (None: where it pays, see
    ``pipeline_pays``) overlaps the next frame's image encoder with the current frame.
    """
    from ..media import masks, video

    info = video.probe(input)
    height, width = video.scaled_size(info.height, info.width, max_size)
    raw_mask = masks.load_mask(mask) if not isinstance(mask, np.ndarray) else mask
    raw_mask, warning = masks.fit_mask_to_frame(raw_mask, info.height, info.width)
    if warning:
        import warnings

        warnings.warn(warning, stacklevel=2)
    masks.check_mask(raw_mask)
    prepared = masks.prepare_mask(raw_mask, erode=erode, dilate=dilate)
    if (height, width) != (info.height, info.width):
        import cv2

        prepared = cv2.resize(prepared, (width, height), interpolation=cv2.INTER_NEAREST)
    if warmup < 0:
        raise InputError(f"--warmup must be 0 or more, got {warmup}")

    from ..engine.driver import clip_dims

    dims, _ = clip_dims(height, width, mem_frames)
    if modules is None:
        modules = load_modules(backend, weights, dims, precision=precision, placement=placement, threads=threads)
        if pipeline is None:
            pipeline = pipeline_pays(backend, placement, precision)

    from ..media.streaming import prefetch

    source = video.iter_frames(input, start=start, count=frames)
    if (height, width) != (info.height, info.width):
        source = (video.resize_to_max_size(f, max_size) for f in source)
    source = prefetch(source, depth=4)
    kept: list[np.ndarray] = []

    def remember(frames_in):
        for frame in frames_in:
            kept.append(frame)
            yield frame

    results = matte_frames(
        modules,
        remember(source),
        prepared,
        warmup=warmup,
        mem_frames=mem_frames,
        config=MemoryConfig(mem_every=mem_every),
        pipeline=bool(pipeline),
    )
    for result in results:
        rgb = kept.pop(0)
        yield MatteFrame(result.index, rgb, result.alpha)


def convert_video(
    input: str | Path,
    mask: str | Path | np.ndarray,
    output_dir: str | Path,
    *,
    outputs: Sequence[str] = ("alpha",),
    alpha_format: str = "png16",
    background: str = "120,255,155",
    video_format: str = "prores",
    progress=None,
    **options,
) -> list[Path]:
    """Matte a whole clip and write the chosen outputs; returns the written paths.

    Nothing is left half-written: writers build under temporary names and rename on success.
    """
    from ..media import video, writers
    from ..media.streaming import BackgroundSink

    info = video.probe(input)
    writers.check_writable(Path(output_dir))
    matte_iter = matte(input, mask, **options)
    sinks = None
    encoder: BackgroundSink | None = None
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
                )
                encoder = BackgroundSink(lambda f, s=sinks: s.write(f.rgb, f.alpha))
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
