"""The Python API: one call for a whole clip, and a generator for streaming.

    from matanyone_engine.core.api import convert_video, matte
    convert_video("clip.mp4", "mask.png", "out/", weights="seeded:v1-pm", outputs=["alpha", "rgba"])
    for frame in matte("clip.mp4", "mask.png", weights="seeded:v1-pm"):
        frame.alpha  # (H, W) float32 in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from . import plugins
from .errors import BackendError, InputError
from .precision import resolve as resolve_precision
from .protocol import LoadRequest, Module
from .spec import MODULE_NAMES, VARIANT_OF, Dims
from .state import MemoryConfig, matte_frames

DEFAULT_BACKEND = "auto"
#: Without a measured placement profile, `auto` takes the first of these that runs here.
AUTO_PREFERENCE = ("onnx-cuda", "torch-cuda", "coreml-all", "onnx-cpu", "torch")


@dataclass
class MatteFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8, the frame the matte belongs to (after --max-size)
    alpha: np.ndarray  # (H, W) float32 in [0, 1]


def parse_placement(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``encoder=onnx-cpu,read=torch`` (or a JSON profile path, or a dict) -> {module: backend}."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        table = dict(spec)
    elif spec.endswith(".json"):
        import json

        try:
            data = json.loads(Path(spec).read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read placement profile {spec}: {exc}; pass a profile written by `matanyone bench --search`") from None
        table = dict(data.get("placement", data))
    else:
        table = {}
        for item in spec.split(","):
            if "=" not in item:
                raise BackendError(f"bad placement item {item!r}; write module=backend, e.g. encoder=onnx-cpu,read=torch")
            module, backend = (s.strip() for s in item.split("=", 1))
            table[module] = backend
    unknown = sorted(set(table) - set(MODULE_NAMES))
    if unknown:
        raise BackendError(f"unknown module(s) in placement: {', '.join(unknown)}; modules are {', '.join(MODULE_NAMES)}")
    return table


def auto_choice() -> tuple[str, dict[str, str]]:
    """(backend, placement) for ``--backend auto``: the profile written by ``matanyone bench
    --search`` when there is one, else the first backend of AUTO_PREFERENCE that runs here."""
    from .bench import default_profile_path

    profile = default_profile_path()
    if profile.exists():
        table = parse_placement(str(profile))
        if table and all(plugins.backends().get(b) and plugins.backends()[b].available()[0] for b in table.values()):
            first = next(iter(table.values()))
            return first, table
    for name in AUTO_PREFERENCE:
        backend = plugins.backends().get(name)
        if backend is not None and backend.available()[0]:
            return name, {}
    raise BackendError("no backend can run here; install torch==2.13.0 or onnxruntime (see `matanyone backends`)")


def resolve_backend(name: str):
    """The registered backend ``name``, checked to be runnable here."""
    try:
        backend = plugins.get_backend(name)
    except KeyError as exc:
        raise BackendError(str(exc.args[0])) from None
    ok, reason = backend.available()
    if not ok:
        raise BackendError(f"backend {name} is unavailable here: {reason}")
    return backend


def module_backends(backend: str, placement: str | Mapping[str, str] | None = None) -> dict[str, str]:
    """{module: backend name} for a backend (``auto`` resolved) and an optional placement."""
    table = parse_placement(placement)
    if backend == "auto":
        backend, measured = auto_choice()
        table = {**measured, **table}
    return {m: table.get(m, backend) for m in MODULE_NAMES}


def precision_plan(backend: str, precision: str, placement: str | Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """{backend name: (concrete precision, why)} for every backend the modules will come from:
    what ``--precision fast`` turns into here, for the CLI and the benchmark to report."""
    return {name: resolve_precision(resolve_backend(name), precision) for name in dict.fromkeys(module_backends(backend, placement).values())}


def pipeline_pays(backend: str, placement: str | Mapping[str, str] | None = None) -> bool:
    """Whether overlapping the next frame's image encoder with the current frame helps.

    Only when the encoder runs on an accelerator: then the CPU thread that waits on it is free.
    On a CPU backend every module already uses all cores, and running two at once measured
    slower on the benchmark machine (see the README's performance notes).
    """
    encoder_backend = module_backends(backend, placement)["encoder"]
    return bool(getattr(resolve_backend(encoder_backend), "accelerated", False))


def load_modules(
    backend: str,
    weights: str,
    dims: Dims,
    *,
    precision: str = "fp32",
    placement: str | Mapping[str, str] | None = None,
    threads: int | None = None,
    options: Mapping | None = None,
) -> dict[str, Module]:
    """The five modules, each from its placed backend (``backend`` for the rest)."""
    wanted = module_backends(backend, placement)
    loaded: dict[str, Mapping[str, Module]] = {}
    for name in dict.fromkeys(wanted.values()):
        chosen_backend = resolve_backend(name)
        concrete, _ = resolve_precision(chosen_backend, precision)
        request = LoadRequest(weights=weights, dims=dims, precision=concrete, threads=threads, options=dict(options or {}))
        loaded[name] = chosen_backend.load(request)
    chosen = {m: loaded[b][m] for m, b in wanted.items()}
    # an optional variant comes from the backend of the module it stands in for
    for variant, base in VARIANT_OF.items():
        if variant in loaded[wanted[base]]:
            chosen[variant] = loaded[wanted[base]][variant]
    return chosen


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
    from . import masks, video

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

    from .state import clip_dims

    dims, _ = clip_dims(height, width, mem_frames)
    if modules is None:
        modules = load_modules(backend, weights, dims, precision=precision, placement=placement, threads=threads)
        if pipeline is None:
            pipeline = pipeline_pays(backend, placement)

    from .pipeline import prefetch

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
    from . import video, writers

    from .pipeline import BackgroundSink

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
                    Path(output_dir), sized, list(outputs), alpha_format=alpha_format,
                    background=background, video_format=video_format, start_frame=options.get("start", 0),
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
