"""One clip, start to finish: what ``matanyone run`` does, as a plain function.

``run``, ``demo`` and every clip of ``batch`` (in this process, a worker process or a Ray task)
call ``run_clip``, so a clip matted in a batch gets exactly the outputs ``run`` writes for it; the
CLI around it only parses options and prints. The result carries what a report needs: frames,
seconds, written paths, and the backend and precision the options resolved to on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .api import convert_video
from .loading import DEFAULT_BACKEND, backend_for, module_backends, precision_plan
from .models import open_model_folder

#: What a precision plan is: {backend name: (concrete precision, why)}.
PrecisionPlan = dict[str, tuple[str, str]]


@dataclass
class ClipResult:
    """What one matted clip produced, and with what."""

    input: Path
    frames: int
    seconds: float
    outputs: list[Path]
    backend: str
    precision: str
    plan: PrecisionPlan = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def describe_backends(backend: str, placement: str | Mapping[str, str] | None, precision: str = "fp32") -> str:
    """``torch``, or ``onnx-cpu (read=torch)`` when a placement (or ``auto``'s profile) splits the
    modules: the backend most modules run on, then the exceptions."""
    table = module_backends(backend, placement, precision)
    names = list(table.values())
    main = max(dict.fromkeys(names), key=names.count)
    others = ",".join(f"{m}={b}" for m, b in table.items() if b != main)
    return f"{main} ({others})" if others else main


def describe_precision(plan: PrecisionPlan) -> str:
    """``fp32``, or ``onnx-cpu=fp32,torch=bf16`` when the backends of one run differ."""
    chosen = {name: concrete for name, (concrete, _) in plan.items()}
    if len(set(chosen.values())) == 1:
        return next(iter(chosen.values()))
    return ",".join(f"{name}={concrete}" for name, concrete in chosen.items())


def resolve_masks(
    input: str | Path,
    mask: str | Path | np.ndarray | Sequence[str | Path] | None,
    mask_box: str | None,
    mask_provider: str | None,
    mask_frame: int | None,
    start: int,
) -> Any:
    """What ``convert_video`` gets as ``mask``: the ``--mask`` files as given (several: one per
    subject), an array as given, or the one mask a box or a provider makes on the mask's frame
    (``mask_frame``, else ``start``)."""
    from ..engine.errors import InputError
    from ..media.mask_providers import first_frame_mask

    if isinstance(mask, np.ndarray) and mask_box is None and mask_provider is None:
        return mask
    files = [mask] if isinstance(mask, (str, Path)) else list(mask or [])
    if len(files) > 1:
        if mask_box is not None or mask_provider is not None:
            raise InputError(
                "--mask-box and --mask-provider make one subject's mask: pass one --mask per subject instead"
            )
        return files
    return first_frame_mask(
        input,
        mask=files[0] if files else None,
        mask_box=mask_box,
        mask_provider=mask_provider,
        start=mask_frame if mask_frame is not None else start,
    )


def run_clip(
    input: str | Path,
    output: str | Path,
    *,
    mask: str | Path | np.ndarray | Sequence[str | Path] | None = None,
    mask_box: str | None = None,
    mask_provider: str | None = None,
    progress: Callable[[int], None] | None = None,
    announce: Callable[[PrecisionPlan], None] | None = None,
    **options: Any,
) -> ClipResult:
    """Resolve the first-frame mask, matte ``input`` into ``output`` with ``convert_video``, and
    say what ran. ``options`` are ``convert_video``/``matte`` keywords; ``announce`` hears the
    precision plan of ``--precision fast`` before the model loads (``run`` prints it)."""
    started = time.perf_counter()
    backend = options.get("backend", DEFAULT_BACKEND)
    placement = options.get("placement")
    precision = options.get("precision")
    if options.get("models") is not None:  # the folder's manifest decides what `auto` and a left-out precision mean
        folder = open_model_folder(options["models"])
        backend = backend_for(backend, folder)
        precision = precision or folder.manifest.precision
    precision = precision or "fp32"
    first_mask = resolve_masks(input, mask, mask_box, mask_provider, options.get("mask_frame"), options.get("start", 0))
    plan: PrecisionPlan | None = None
    if announce is not None and precision == "fast":
        # only `fast` has something to say; any other precision is resolved after the run, so a bad
        # input is still reported before a backend problem, as convert_video orders its checks
        plan = precision_plan(backend, "fast", placement)
        announce(plan)
    count = 0

    def counted(index: int) -> None:
        nonlocal count
        count = index + 1
        if progress is not None:
            progress(index)

    written = convert_video(input, first_mask, output, progress=counted, **options)
    if plan is None:
        plan = precision_plan(backend, precision, placement)
    return ClipResult(
        input=Path(input),
        frames=count,
        seconds=time.perf_counter() - started,
        outputs=list(written),
        backend=describe_backends(backend, placement, precision),
        precision=describe_precision(plan),
        plan=plan,
    )
