"""How much memory a run needs, estimated before any model loads, and the refusal when it does not fit.

The estimate is the module declaration (core/engine/spec.py) plus measured coefficients:

* held: what the state machine and the driver keep between module calls, from the declared
  shapes (the image encoder's outputs, working memory, sensory memory, the previous frame's
  features, mask and value), plus the frames waiting in the decode and encode queues;
* the largest module call: each module's working memory on top of what is held, measured per
  padded pixel (``benchmarks/memory_modules.py``), and for the memory read also a multiple of the
  largest read tile's similarity (core/engine/tiling.py), which does not grow with the frame;
* fixed: the runtime and the weights.

A backend may declare its own coefficients as ``memory_profile``, a dict with the fields of
MemoryProfile (plain data, so backends need nothing from this layer); one that declares none gets
the torch backend's, the larger, or none for the module calls when it runs on an accelerator
(their working memory is then on the device, not in this machine's RAM).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..engine.errors import MemoryLimitError
from ..engine.spec import ENCODER, READ, Dims
from ..engine.tiling import decoder_channel_groups, tile_similarity_bytes

MB = 2**20
GB = 2**30
#: Environment variable: the memory a run may use, e.g. "10G" or "800M" (default: what is available).
LIMIT_ENV = "MATANYONE_MEMORY_LIMIT"
#: Frames in flight besides the one being matted: the decode prefetch (4), the writer's queue (4),
#: the driver's float copy and the frame kept for the writer.
FRAMES_IN_FLIGHT = 10
#: The estimate is multiplied by this before it is compared with what the machine has.
SAFETY = 1.15


@dataclass(frozen=True)
class MemoryProfile:
    """Measured working memory of a backend's modules (see the module docstring)."""

    fixed_mb: float
    #: bytes per padded pixel each module call needs on top of what is held
    per_pixel: Mapping[str, float]
    #: multiples of the largest read tile's similarity bytes, per module (the read)
    per_tile: Mapping[str, float] = field(default_factory=dict)
    #: bytes per padded pixel where the decoder builds its full-size steps in channel groups
    #: (above 1080p, core/engine/tiling.py); modules absent here keep ``per_pixel``
    per_pixel_grouped: Mapping[str, float] = field(default_factory=dict)


#: torch on the CPU, measured at 1088x1920 and 2160x3840 (benchmarks/memory_modules.py, seeded weights);
#: the grouped decoder's figure is calibrated so that the estimate covers the measured peak of a whole
#: 4K run (8.45 GiB, `matanyone run`, 6 frames).
TORCH_CPU = MemoryProfile(
    fixed_mb=700,
    per_pixel={
        "encoder": 345,
        "mask_encoder": 150,
        "mask_value": 130,
        "read_first": 40,
        "read": 50,
        "decoder": 700,
    },
    per_tile={"read": 3.2},
    per_pixel_grouped={"decoder": 720},
)


def profile_of(backend: object) -> MemoryProfile | None:
    """The backend's declared profile; the torch one for an undeclared CPU backend; None for an
    undeclared accelerated one."""
    declared = getattr(backend, "memory_profile", None)
    if isinstance(declared, MemoryProfile):
        return declared
    if isinstance(declared, Mapping):
        return MemoryProfile(
            fixed_mb=float(declared.get("fixed_mb", TORCH_CPU.fixed_mb)),
            per_pixel=dict(declared.get("per_pixel", {})),
            per_tile=dict(declared.get("per_tile", {})),
            per_pixel_grouped=dict(declared.get("per_pixel_grouped", {})),
        )
    return None if getattr(backend, "accelerated", False) else TORCH_CPU


@dataclass(frozen=True)
class MemoryEstimate:
    height: int  # the network's (unpadded) size
    width: int
    needed_bytes: int  # including SAFETY
    held_bytes: int
    largest_module: str
    module_bytes: int
    fixed_bytes: int

    @property
    def needed_gb(self) -> float:
        return self.needed_bytes / GB


def held_bytes(dims: Dims, frame_pixels: int) -> int:
    """Bytes the state machine and driver hold between module calls (declared shapes, float32),
    plus the frames in flight (uint8 RGB and float32 alpha of ``frame_pixels`` each)."""
    encoded = sum(math.prod(t.resolve(dims)) for t in ENCODER.outputs)
    state = sum(
        math.prod(t.resolve(dims))
        for t in READ.inputs
        if t.name.startswith("mem_") or t.name.startswith("last_") or t.name in ("sensory", "obj_memory")
    )
    frames = FRAMES_IN_FLIGHT * frame_pixels * (3 + 4)
    return 4 * (encoded + state) + frames


def module_bytes(profile: MemoryProfile, name: str, dims: Dims) -> int:
    pixels = dims.height * dims.width
    tile = tile_similarity_bytes(dims.tokens_per_frame, dims.symbols["N"])
    per_pixel = profile.per_pixel.get(name, 0.0)
    if name in profile.per_pixel_grouped and decoder_channel_groups(64, dims.height, dims.width) > 1:
        per_pixel = profile.per_pixel_grouped[name]
    return int(per_pixel * pixels + profile.per_tile.get(name, 0.0) * tile)


def estimate(
    height: int,
    width: int,
    profiles: Mapping[str, MemoryProfile | None],
    *,
    mem_frames: int = 5,
    output_pixels: int | None = None,
    output_bytes_per_pixel: float = 0.0,
) -> MemoryEstimate:
    """What a run of a ``height`` x ``width`` network needs; ``profiles`` maps each module to its
    backend's profile (None: no working memory in RAM; the same object for the modules of one
    backend, whose fixed part then counts once). ``output_pixels`` is the size frames are
    read and written at (default the network's), ``output_bytes_per_pixel`` what the output
    stage (guided upsampling) needs per output pixel."""
    from ..engine.padding import padded_size

    dims = Dims(*padded_size(height, width), mem_frames)
    frame_pixels = output_pixels or height * width
    per_module = {name: module_bytes(p, name, dims) if p is not None else 0 for name, p in profiles.items()}
    largest = max(per_module, key=lambda n: per_module[n])
    output_stage = int(output_bytes_per_pixel * frame_pixels)
    fixed = int(sum({id(p): p.fixed_mb for p in profiles.values() if p is not None}.values()) * MB)
    held = held_bytes(dims, frame_pixels)
    working = max(per_module[largest], output_stage)
    return MemoryEstimate(
        height=height,
        width=width,
        needed_bytes=int((held + working + fixed) * SAFETY),
        held_bytes=held,
        largest_module=largest if per_module[largest] >= output_stage else "output",
        module_bytes=working,
        fixed_bytes=fixed,
    )


def available_bytes() -> tuple[int, str]:
    """(bytes a run may use, where that number comes from): ``MATANYONE_MEMORY_LIMIT``, else the
    smaller of the kernel's MemAvailable and the cgroup's limit, else psutil's figure."""
    override = os.environ.get(LIMIT_ENV, "").strip()
    if override:
        return parse_bytes(override), f"{LIMIT_ENV}={override}"
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "available"))
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            text = fh.read().strip()
        if text.isdigit():
            with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
                found.append((int(text) - int(fh.read().strip()), "left under this cgroup's limit"))
    except OSError:
        pass
    if not found:  # no /proc (macOS, Windows): psutil's figure
        import psutil

        found.append((int(psutil.virtual_memory().available), "available"))
    return min(found)


def parse_bytes(text: str) -> int:
    """``"10G"``, ``"800M"``, ``"1.5GB"`` or a plain number of bytes."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        if cleaned and cleaned[-1] in units:
            return int(float(cleaned[:-1]) * units[cleaned[-1]])
        return int(float(cleaned))
    except ValueError:
        raise MemoryLimitError(f"bad {LIMIT_ENV} {text!r}; write e.g. 10G or 800M") from None


def largest_fitting_short_side(
    height: int, width: int, budget: int, needs: Mapping[str, MemoryProfile | None], **kwargs
) -> int | None:
    """The largest ``--max-size`` (shorter side) whose estimate fits ``budget``; None if none does."""
    from ..media.video import scaled_size

    def fits(short: int) -> bool:
        h, w = scaled_size(height, width, short)
        return estimate(h, w, needs, **kwargs).needed_bytes <= budget

    low, high = 16, min(height, width)
    if not fits(low):
        return None
    while low < high:  # largest short side that fits; the estimate grows with the size
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def check_fits(
    height: int,
    width: int,
    profiles: Mapping[str, MemoryProfile | None],
    *,
    input_size: tuple[int, int] | None = None,
    backend: str = "",
    **kwargs,
) -> MemoryEstimate:
    """Refuse (MemoryLimitError, one line) a run whose estimate exceeds what this machine has.

    ``input_size`` is the clip's own size, from which a fitting ``--max-size`` is worked out."""
    need = estimate(height, width, profiles, **kwargs)
    budget, source = available_bytes()
    if need.needed_bytes <= budget:
        return need
    src_h, src_w = input_size or (height, width)
    fitting = largest_fitting_short_side(src_h, src_w, budget, profiles, **kwargs)
    advice = f"pass --max-size {fitting} to fit" if fitting else "no --max-size fits; free memory first"
    on = f" with {backend}" if backend else ""
    raise MemoryLimitError(
        f"a {width}x{height} run{on} needs about {need.needed_gb:.1f} GB (largest step: {need.largest_module}), "
        f"this machine has {budget / GB:.1f} GB ({source}); {advice}"
    )
