"""The Python API: one call for a whole clip, and a generator for streaming.

from matanyone_engine.core.api import convert_video, matte
convert_video("clip.mp4", "mask.png", "out/", weights="seeded:v1-pm", outputs=["alpha", "rgba"])
convert_video("clip.mp4", "mask.png", "out/", models="exported/", backend="onnx-cpu")  # no torch needed
for frame in matte("clip.mp4", "mask.png", weights="seeded:v1-pm"):
    frame.alpha  # (H, W) float32 in [0, 1]
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..engine.driver import matte_frames
from ..engine.errors import InputError, MatanyoneWarning, OptionError
from ..engine.fixed_size import matte_fixed_size
from ..engine.padding import padded_size
from ..engine.protocol import Module
from ..engine.spec import Dims
from ..engine.state import MemoryConfig
from .loading import DEFAULT_BACKEND, backend_for, fixed_module_size, load_modules, pipeline_pays
from .models import open_model_folder, settle_request
from .options import check_run_options, parse_size

log = logging.getLogger(__name__)

#: What ``weights``, ``precision`` and ``mem_frames`` mean when left out and no model folder decides.
DEFAULT_WEIGHTS = "seeded:v1-pm"
DEFAULT_PRECISION = "fp32"
DEFAULT_MEM_FRAMES = 5
#: ``output_size`` values: the input's own resolution (default), or the network's (after --max-size).
OUTPUT_SIZES = ("input", "network")


@dataclass
class MatteFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8, the upright frame the matte belongs to (input size, or the network's)
    alpha: np.ndarray  # (H, W) float32 in [0, 1], the same size as rgb
    time: Fraction | None = None  # seconds from the start of the input's video stream
    duration: Fraction | None = None  # how long the input shows it, when the container says


def matte(
    input: str | Path,
    mask: str | Path | np.ndarray,
    *,
    weights: str | None = None,
    backend: str = DEFAULT_BACKEND,
    warmup: int = 10,
    erode: int = 10,
    dilate: int = 10,
    max_size: int = -1,
    start: int = 0,
    frames: int | None = None,
    mem_frames: int | None = None,
    mem_every: int = 5,
    precision: str | None = None,
    placement: str | Mapping[str, str] | None = None,
    threads: int | None = None,
    modules: Mapping[str, Module] | None = None,
    pipeline: bool | None = None,
    models: str | Path | None = None,
    package_size: str | tuple[int, int] | None = None,
    output_size: str = "input",
    upsample: str = "guided",
) -> Iterator[MatteFrame]:
    """Stream one matte per input frame. ``mask`` is a path or a HxW uint8 array (255 = foreground).

    Option values are checked at the call (OptionError); the input, the mask and the rest are
    checked when iteration starts, before the model loads, so bad input fails fast.
    ``precision="fast"`` lets each backend pick its quickest precision within the official
    demo's accuracy (see core/precision.py); ``pipeline`` (None: where it pays, see
    ``pipeline_pays``) overlaps the next frame's image encoder with the current frame.
    Frames are upright (a phone clip's display rotation applied) and carry their timestamps.

    With ``max_size`` the network runs on frames with that shorter side; ``output_size="input"``
    (the default) then returns each alpha at the input's own resolution, upsampled with the
    full-resolution frame as guide (``upsample``: guided or bilinear, core/media/upsample.py), and
    ``"network"`` keeps the network's size, as the official demo does. A size whose estimated
    memory this machine does not have is refused before the model loads (core/app/memory.py).

    ``models`` is a folder written by ``matanyone export``: its manifest decides the size, memory
    frames, precision and weights (options left out take them; contradicting ones are refused),
    and no checkpoint or torch is needed. ``weights``, ``precision`` and ``mem_frames`` otherwise
    default to seeded:v1-pm, fp32 and 5.

    Fixed-size modules (a model folder, ``package_size`` "HxW" or (H, W), or a backend that
    declares ``fixed_size``: Core ML, 432x768) are loaded once at that size; each clip is fitted to
    it (portrait rotated to landscape, other aspect ratios letter-boxed) and its alpha comes back
    at the clip's own size (after ``max_size``).
    """
    check_run_options(
        warmup=warmup,
        erode=erode,
        dilate=dilate,
        max_size=max_size,
        start=start,
        frames=frames,
        mem_frames=DEFAULT_MEM_FRAMES if mem_frames is None else mem_frames,
        mem_every=mem_every,
        precision=DEFAULT_PRECISION if precision is None else precision,
        threads=threads,
    )
    if output_size not in OUTPUT_SIZES:
        raise OptionError(f"unknown --output-size {output_size!r}; choose one of {', '.join(OUTPUT_SIZES)}")
    from ..media.upsample import check_method

    check_method(upsample)
    return _matte(
        input,
        mask,
        weights=weights,
        backend=backend,
        warmup=warmup,
        erode=erode,
        dilate=dilate,
        max_size=max_size,
        start=start,
        frames=frames,
        mem_frames=mem_frames,
        mem_every=mem_every,
        precision=precision,
        placement=placement,
        threads=threads,
        modules=modules,
        pipeline=pipeline,
        models=models,
        package_size=package_size,
        output_size=output_size,
        upsample=upsample,
    )


def _first_frame_mask(mask: str | Path | np.ndarray, info, erode: int, dilate: int, size: tuple[int, int]):
    """The mask as the model gets it (read, fitted, prepared, shrunk, checked)."""
    from ..media import masks

    if isinstance(mask, np.ndarray):
        raw = mask
    else:
        reading = masks.read_mask(mask)
        log.info("mask %s: foreground read from its %s", Path(mask).name, reading.describe())
        if len(reading.labels) > 1:
            found = ", ".join(str(v) for v in reading.labels)
            warnings.warn(
                f"mask {Path(mask).name} is a label mask with labels {found}: they are matted together as one subject",
                MatanyoneWarning,
                stacklevel=3,
            )
        raw = reading.mask
    raw, warning = masks.fit_mask_to_frame(raw, info.height, info.width, turned=info.orientation.describe())
    if warning:
        warnings.warn(warning, MatanyoneWarning, stacklevel=3)
    return masks.mask_for_model(raw, *size, erode=erode, dilate=dilate)


def _describe_input(info) -> None:
    if info.is_folder:
        shown = ", ".join(info.frame_names[:3]) + (
            f", ..., {info.frame_names[-1]}" if len(info.frame_names) > 3 else ""
        )
        log.info("input %s: %d frames in natural order: %s", info.name, info.frame_count, shown)
        if info.skipped_names:
            log.info("input %s: skipped hidden files %s", info.name, ", ".join(info.skipped_names))
        return
    turned = info.orientation.describe()
    log.info(
        "input %s: %dx%d (width x height as a player shows it%s), %.3f fps on average; each frame keeps its timestamp",
        info.name,
        info.width,
        info.height,
        f"; the stored frames are shown {turned}" if turned else "",
        info.fps,
    )


def _matte(
    input: str | Path,
    mask: str | Path | np.ndarray,
    *,
    weights: str | None,
    backend: str,
    warmup: int,
    erode: int,
    dilate: int,
    max_size: int,
    start: int,
    frames: int | None,
    mem_frames: int | None,
    mem_every: int,
    precision: str | None,
    placement: str | Mapping[str, str] | None,
    threads: int | None,
    modules: Mapping[str, Module] | None,
    pipeline: bool | None,
    models: str | Path | None,
    package_size: str | tuple[int, int] | None,
    output_size: str,
    upsample: str,
) -> Iterator[MatteFrame]:
    from ..media import video

    info = video.probe(input)
    _describe_input(info)
    height, width = video.scaled_size(info.height, info.width, max_size)
    prepared = _first_frame_mask(mask, info, erode, dilate, (height, width))
    resized = (height, width) != (info.height, info.width)
    full_output = resized and output_size == "input"

    asked_size = parse_size(package_size, "package_size") if isinstance(package_size, str) else package_size
    folder = open_model_folder(models) if models is not None else None
    if folder is not None:
        weights, precision, mem_frames = settle_request(
            folder, weights=weights, precision=precision, mem_frames=mem_frames, size=asked_size
        )
        backend = backend_for(backend, folder)
    weights = DEFAULT_WEIGHTS if weights is None else weights
    precision = DEFAULT_PRECISION if precision is None else precision
    mem_frames = DEFAULT_MEM_FRAMES if mem_frames is None else mem_frames

    from ..engine.driver import clip_dims

    if modules is None:
        fixed = fixed_module_size(backend, placement, folder=folder, package_size=asked_size)
    else:  # the caller's own modules: fixed-size only when the call says so
        fixed = folder.size if folder is not None else (padded_size(*asked_size) if asked_size else None)
    dims = Dims(*fixed, mem_frames) if fixed is not None else clip_dims(height, width, mem_frames)[0]
    if modules is None:
        from ..media.upsample import BYTES_PER_OUTPUT_PIXEL
        from .loading import module_memory_profiles
        from .memory import check_fits

        check_fits(
            dims.height,
            dims.width,
            module_memory_profiles(backend, placement, models=folder),
            input_size=(info.height, info.width),
            backend=backend,
            mem_frames=mem_frames,
            output_pixels=info.height * info.width if full_output else None,
            output_bytes_per_pixel=BYTES_PER_OUTPUT_PIXEL if full_output and upsample == "guided" else 0.0,
        )
        modules = load_modules(
            backend, weights, dims, precision=precision, placement=placement, threads=threads, models=folder
        )
        if pipeline is None:
            pipeline = pipeline_pays(backend, placement)

    from ..media.streaming import prefetch
    from ..media.upsample import upsample_alpha

    # (frame the output belongs to, frame the network sees): the same array unless --max-size
    # shrinks it; with full_output the full-resolution frame is kept for the upsampling and writers
    source = video.iter_timed_frames(input, start=start, count=frames)
    pairs = ((f, video.resize_to_max_size(f.rgb, max_size) if resized else f.rgb) for f in source)
    timed = prefetch(pairs, depth=4)
    kept: list[video.TimedFrame] = []

    def remember(frames_in):
        for full, small in frames_in:
            kept.append(full if full_output else video.TimedFrame(small, full.time, full.duration))
            yield small

    config = MemoryConfig(mem_every=mem_every)
    if fixed is None:
        results = matte_frames(
            modules,
            remember(timed),
            prepared,
            warmup=warmup,
            mem_frames=mem_frames,
            config=config,
            pipeline=bool(pipeline),
        )
    else:
        results = matte_fixed_size(
            modules,
            remember(timed),
            prepared,
            fixed,
            warmup=warmup,
            mem_frames=mem_frames,
            config=config,
            pipeline=bool(pipeline),
        )
    try:
        for result in results:
            frame = kept.pop(0)
            alpha = upsample_alpha(result.alpha, frame.rgb, upsample) if full_output else result.alpha
            yield MatteFrame(result.index, frame.rgb, alpha, frame.time, frame.duration)
    finally:
        _close(results)
        _close(timed)


def _close(iterator: object) -> None:
    """Stop a generator now (its decode thread, its open file) rather than at garbage collection."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


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

    Nothing is left half-written: writers build under temporary names and rename on success,
    and OUTDIR is created only once the first matte is ready. Warnings (a resized mask, audio
    that could not be carried) are issued as MatanyoneWarning.
    """
    from ..media import video, writers
    from ..media.streaming import BackgroundSink

    check_run_options(
        outputs=list(outputs), alpha_format=alpha_format, video_format=video_format, background=background, **options
    )
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
                    start_time=frame.time,
                )
                encoder = BackgroundSink(lambda f, s=sinks: s.write(f.rgb, f.alpha, f.time, f.duration))
            encoder.put(frame)
            if progress is not None:
                progress(frame.index)
        if encoder is not None:
            encoder.join()
    except BaseException:
        # The run is being abandoned: stop the writer thread without finishing its queue (the
        # outputs are discarded by abort()), then close the matte generator so the decode thread
        # and the video file close now. The original exception is what the caller sees.
        if encoder is not None:
            encoder.cancel()
        _close(matte_iter)
        if sinks is not None:
            sinks.abort()
        raise
    if sinks is None:
        raise InputError(f"{input} produced no frames (check --start and --frames)")
    written = list(sinks.close())
    for message in sinks.warnings:
        warnings.warn(message, MatanyoneWarning, stacklevel=2)
    return written


def _resized_info(info, rgb: np.ndarray):
    from dataclasses import replace

    return replace(info, height=rgb.shape[0], width=rgb.shape[1])


def batch(source: str | Path, output_dir: str | Path, **kwargs):
    """Matte every clip of a folder or manifest into ``output_dir``, resumably; returns the
    BatchReport (also written to ``output_dir/batch-report.json``). See docs/batch.md and
    ``app.batch.runner.run_batch`` for the keywords (executor, jobs, address, cpus_per_clip,
    gpus_per_clip, force, observer, and any per-clip option of ``convert_video``)."""
    from .batch import run_batch

    return run_batch(source, output_dir, **kwargs)
