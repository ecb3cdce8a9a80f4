"""The Python API: one call for a whole clip, and a generator for streaming.

from matanyone_engine.core.api import convert_video, matte
convert_video("clip.mp4", "mask.png", "out/", weights="seeded:v1-pm", outputs=["alpha", "rgba"])
convert_video("clip.mp4", "mask.png", "out/", models="exported/", backend="onnx-cpu")  # no torch needed
for frame in matte("clip.mp4", "mask.png", weights="seeded:v1-pm"):
    frame.alpha  # (H, W) float32 in [0, 1]
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.driver import matte_subjects
from ..engine.errors import InputError, MatanyoneWarning, OptionError
from ..engine.fixed_size import matte_subjects_fixed_size
from ..engine.padding import padded_size
from ..engine.protocol import Module
from ..engine.spec import Dims
from ..engine.state import MemoryConfig
from ..media.subjects import MaskSource, SubjectMasks
from . import passes
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
#: What ``mask`` may be: one mask, one per subject, {name: mask}, or subjects already resolved.
MaskInput = MaskSource | Sequence[MaskSource] | Mapping[str, MaskSource] | SubjectMasks


@dataclass
class MatteFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8, the upright frame the matte belongs to (input size, or the network's)
    alpha: np.ndarray  # (H, W) float32 in [0, 1], the same size as rgb; several subjects: their union (max)
    time: Fraction | None = None  # seconds from the start of the input's video stream
    duration: Fraction | None = None  # how long the input shows it, when the container says
    #: every subject's alpha by subject name, in the order the subjects were given
    subjects: dict[str, np.ndarray] = field(default_factory=dict)


def matte(
    input: str | Path,
    mask: MaskInput,
    *,
    subjects: str | Sequence[int | str] | None = None,
    mask_frame: int | None = None,
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
    scratch_dir: str | Path | None = None,
) -> Iterator[MatteFrame]:
    """Stream one matte per input frame, in input order.

    ``mask`` is a path or a HxW uint8 array (255 = foreground); a list of them, one per subject
    (subjects 1, 2, ...); a {name: mask} mapping; or a label image whose values are subject ids
    (see media/subjects.py), with ``subjects`` choosing ids ("1,3", [1, 3] or "all"). Each
    subject has its own state machine; the image encoder runs once per frame for all of them.
    ``mask_frame`` is the input frame the masks belong to (default: the first one processed,
    ``start``); frames before it are matted backwards from it (see app/passes.py), using a
    scratch folder in ``scratch_dir`` (default: the system's temporary folder).

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
        subjects=subjects,
        mask_frame=mask_frame,
        scratch_dir=scratch_dir,
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


def _subject_mask(raw: np.ndarray, info, erode: int, dilate: int, size: tuple[int, int], where: str) -> np.ndarray:
    """One subject's mask as the model gets it (fitted to the frame, prepared, shrunk, checked).

    ``where`` names the subject in messages ("subject 2 (b.png)"); empty for a plain run."""
    from ..media import masks

    try:
        raw, warning = masks.fit_mask_to_frame(raw, info.height, info.width, turned=info.orientation.describe())
        prepared = masks.mask_for_model(raw, *size, erode=erode, dilate=dilate)
    except InputError as exc:
        if not where:
            raise
        raise InputError(f"{where}: {exc}") from None
    if warning:
        warnings.warn(f"{where}: {warning}" if where else warning, MatanyoneWarning, stacklevel=4)
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
    mask: MaskInput,
    *,
    subjects: str | Sequence[int | str] | None,
    mask_frame: int | None,
    scratch_dir: str | Path | None,
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
    from ..media.subjects import resolve_subjects

    info = video.probe(input)
    _describe_input(info)
    height, width = video.scaled_size(info.height, info.width, max_size)
    chosen = resolve_subjects(mask, subjects)
    prepared = {
        name: _subject_mask(raw, info, erode, dilate, (height, width), chosen.where(name))
        for name, raw in chosen.masks.items()
    }
    anchor = _mask_frame(info, start, frames, mask_frame)
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
        fixed = fixed_module_size(backend, placement, folder=folder, package_size=asked_size, precision=precision)
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
            module_memory_profiles(backend, placement, models=folder, precision=precision),
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
            pipeline = pipeline_pays(backend, placement, precision)

    from ..media.streaming import prefetch
    from ..media.upsample import upsample_alpha

    def read(first: int, count: int | None) -> Iterator[video.TimedFrame]:
        return prefetch(video.iter_timed_frames(input, start=first, count=count), depth=4)

    def view(frame: video.TimedFrame) -> np.ndarray:  # what the network runs on (after --max-size)
        return video.resize_to_max_size(frame.rgb, max_size) if resized else frame.rgb

    driver: dict[str, Any] = {
        "warmup": warmup,
        "mem_frames": mem_frames,
        "config": MemoryConfig(mem_every=mem_every),
        "pipeline": bool(pipeline),
        "view": view,
        "drive": matte_subjects if fixed is None else _fixed(fixed),
    }
    if anchor == start:
        matted = passes.forward(modules, read(start, frames), prepared, **driver)
    else:
        matted = passes.both_ways(
            modules, read, prepared, first=start, anchor=anchor, count=frames, scratch_dir=scratch_dir, **driver
        )
    try:
        for item in matted:
            frame = item.frame
            assert isinstance(frame, video.TimedFrame)  # read() yields timed frames
            rgb = frame.rgb if full_output else view(frame)
            alphas = item.alphas
            if full_output:  # the network's alpha brought to the input's resolution, guided by its frame
                alphas = {name: upsample_alpha(a, rgb, upsample) for name, a in alphas.items()}
            alpha = next(iter(alphas.values())) if len(alphas) == 1 else np.maximum.reduce(list(alphas.values()))
            yield MatteFrame(item.position, rgb, alpha, frame.time, frame.duration, alphas if chosen.named else {})
    finally:
        _close(matted)


def _fixed(module_hw: tuple[int, int]) -> passes.Drive:
    """The clip loop for modules built for ``module_hw`` (frames fitted to it, alpha mapped back)."""

    def drive(modules: Mapping[str, Module], frames, masks, **options: Any):
        return matte_subjects_fixed_size(modules, frames, masks, module_hw, **options)

    return drive


def _close(iterator: object) -> None:
    """Stop a generator now (its decode thread, its open file) rather than at garbage collection."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


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
    under temporary names and rename on success, and OUTDIR is created only once the first matte
    is ready. Warnings (a resized mask, audio that could not be carried) are MatanyoneWarning.
    """
    from ..media import video, writers
    from ..media.streaming import BackgroundSink
    from ..media.subjects import UNION, resolve_subjects

    check_run_options(
        outputs=list(outputs), alpha_format=alpha_format, video_format=video_format, background=background, **options
    )
    chosen = resolve_subjects(mask, subjects)
    if union and len(chosen.names) < 2:
        raise InputError("--union needs two or more subjects: pass several --mask files or a label image")
    info = video.probe(input)
    writers.check_writable(Path(output_dir))
    # scratch frames of a backward pass go beside the outputs (/tmp may be a small RAM disk), in
    # the nearest folder that exists: OUTDIR itself is made only when the first matte is ready
    out = Path(output_dir).expanduser().absolute()
    options.setdefault("scratch_dir", next(p for p in (out, *out.parents) if p.is_dir()))
    matte_iter = matte(input, chosen, **options)
    sinks = None
    encoder: BackgroundSink[MatteFrame] | None = None

    def write(frame: MatteFrame, group: writers.WriterGroup) -> None:
        if not chosen.named:
            group.write(frame.rgb, frame.alpha, frame.time, frame.duration)
        else:
            group.write_subjects(frame.rgb, {**frame.subjects, UNION: frame.alpha}, frame.time, frame.duration)

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
                    subjects=chosen.names if chosen.named else None,
                    union_outputs=list(outputs) if union else (),
                )
                encoder = BackgroundSink(functools.partial(write, group=sinks))
            assert encoder is not None  # made with the sinks, on the first frame
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
