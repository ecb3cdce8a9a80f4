"""Which backend serves each module at which precision, and loading them: the one place that decides.

``run``, ``convert_video``/``matte``, ``bench`` and ``batch`` all resolve ``--backend auto``,
``--placement``, ``--precision fast``, ``--models`` and fixed-size modules through these
functions, so what the benchmark measures is what a run would run.

The measured answer comes first: ``matanyone bench --search`` writes a placement profile (which
backend per module, and the fastest admissible precision per backend, measured on this machine).
Without one, ``auto`` follows a fixed rule (``auto_choice``) and ``fast`` each backend's own rule,
both checked against the accuracy record (core/engine/accuracy.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import plugins
from ..engine import precision as precision_rules
from ..engine.accuracy import admissible
from ..engine.errors import BackendError
from ..engine.files import atomic_write_json
from ..engine.padding import padded_size
from ..engine.precision import FAST
from ..engine.precision import resolve as resolve_precision
from ..engine.protocol import LoadRequest, Module
from ..engine.spec import MODULE_NAMES, VARIANT_OF, Dims
from .models import ModelFolder

DEFAULT_BACKEND = "auto"
#: Without a measured placement profile, `auto` takes the first of these that runs here.
AUTO_PREFERENCE = ("onnx-cuda", "torch-cuda", "coreml-all", "onnx-cpu", "torch")
#: Without a profile, ``--backend auto --precision fast`` on a CPU with bfloat16 instructions (and no
#: accelerator backend) takes this backend at bf16 where it is installed: measured 3x faster than the
#: float32 CPU backends on an AMX Xeon (issue 17), and within the official CPU mode's error.
BF16_CPU_CHOICE = ("openvino-cpu", "bf16")
PROFILE_NAME = "placement.json"
#: 2: adds ``precisions`` (fastest admissible precision per backend) and ``choice``; 1 is still read.
PROFILE_VERSION = 2


def parse_placement(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``encoder=onnx-cpu,read=torch`` (or a JSON profile path, or a dict) -> {module: backend}."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        table = dict(spec)
    elif spec.endswith(".json"):
        try:
            data = json.loads(Path(spec).read_text())
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"cannot read placement profile {spec}: {exc}; pass a profile written by `matanyone bench --search`"
            ) from None
        table = dict(data.get("placement", data))
    else:
        table = {}
        for item in spec.split(","):
            if "=" not in item:
                raise BackendError(
                    f"bad placement item {item!r}; write module=backend, e.g. encoder=onnx-cpu,read=torch"
                )
            module, backend = (s.strip() for s in item.split("=", 1))
            table[module] = backend
    unknown = sorted(set(table) - set(MODULE_NAMES))
    if unknown:
        raise BackendError(
            f"unknown module(s) in placement: {', '.join(unknown)}; modules are {', '.join(MODULE_NAMES)}"
        )
    return table


# ------------------------------------------------------------------------- placement profile


def default_profile_path() -> Path:
    """Where ``bench --search`` writes the placement profile and ``--backend auto`` reads it."""
    from ..artifacts.cache import cache_root

    return cache_root() / PROFILE_NAME


def write_profile(profile: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write the profile atomically (a concurrent ``run --backend auto`` never reads half a file)."""
    return atomic_write_json(Path(path) if path is not None else default_profile_path(), profile)


def load_profile(path: Path | None = None) -> dict[str, Any] | None:
    """The placement profile at ``path`` (default: the cache one), or None if there is none.

    An unreadable or malformed profile counts as none: ``auto`` then falls back to its fixed
    preference, and says so in its reason."""
    target = Path(path) if path is not None else default_profile_path()
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("placement"), dict) else None


# ---------------------------------------------------------------------------- backend choice


def runs_here(name: str) -> bool:
    """Whether the backend ``name`` is registered and can run on this machine."""
    backend = plugins.backends().get(name)
    if backend is None:
        return False
    try:
        return bool(backend.available()[0])
    except Exception:  # a plugin whose availability check raises cannot run here; it is listed as such
        return False


@dataclass(frozen=True)
class AutoChoice:
    """What ``--backend auto`` resolved to, and why (printed with ``--verbose`` and by bench).

    ``precision`` is the concrete precision ``backend`` runs at for the asked precision (``fast``
    resolved; anything else passed through)."""

    backend: str
    placement: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    precision: str = "fp32"


def measured_precisions(profile_path: Path | None = None) -> dict[str, str]:
    """{backend: fastest admissible precision} measured by ``bench --search`` here, or {}."""
    profile = load_profile(profile_path)
    table = profile.get("precisions") if profile is not None else None
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def _resolved(name: str, precision: str, profile_path: Path | None) -> str:
    return resolve_precision(resolve_backend(name), precision, measured_precisions(profile_path))[0]


def auto_choice(profile_path: Path | None = None, precision: str = "fp32") -> AutoChoice:
    """The one rule behind ``--backend auto`` (for the asked ``precision``).

    With a placement profile (``bench --search``): its modules on backends that run here keep
    their backend; the default backend is the one serving most of them, and the placement lists
    the modules on any other. Modules the profile placed on a backend that cannot run here (a
    profile copied from another machine) go to the default. Without a usable profile: an
    accelerator backend of AUTO_PREFERENCE if one runs here; else, for ``fast`` on a CPU with
    bfloat16 instructions, BF16_CPU_CHOICE where it is installed and admissible; else the first
    backend of AUTO_PREFERENCE that runs here.
    """
    profile_file = Path(profile_path) if profile_path is not None else default_profile_path()
    profile = load_profile(profile_file)
    if profile is not None:
        placed = {m: b for m, b in profile["placement"].items() if m in MODULE_NAMES}
        runnable = {m: b for m, b in placed.items() if runs_here(b)}
        if runnable:
            votes = [runnable[m] for m in MODULE_NAMES if m in runnable]
            default = max(dict.fromkeys(votes), key=votes.count)
            dropped = sorted(set(placed.values()) - set(runnable.values()))
            reason = f"placement profile {profile_file}"
            if dropped:
                reason += f" (its modules on {', '.join(dropped)}, which cannot run here, use {default})"
            concrete = _resolved(default, precision, profile_file)
            return AutoChoice(default, {m: b for m, b in runnable.items() if b != default}, reason, concrete)
    runnable_order = [name for name in AUTO_PREFERENCE if runs_here(name)]
    accelerated = [n for n in runnable_order if getattr(plugins.backends()[n], "accelerated", False)]
    if precision == FAST and not accelerated:
        chosen = _bf16_cpu_rule()
        if chosen is not None:
            return chosen
    if not runnable_order:
        raise BackendError("no backend can run here; install torch==2.13.0 or onnxruntime (see `matanyone backends`)")
    preferred = runnable_order[0]
    reason = f"no placement profile; first of {', '.join(AUTO_PREFERENCE)} that runs here"
    return AutoChoice(preferred, {}, reason, _resolved(preferred, precision, profile_file))


def _bf16_cpu_rule() -> AutoChoice | None:
    """BF16_CPU_CHOICE with its reason where the CPU and the installed plugins allow it."""
    backend, precision = BF16_CPU_CHOICE
    features = precision_rules.cpu_bf16_features()
    if not features or not runs_here(backend):
        return None
    ok, verdict = admissible(backend, precision)
    if not ok:
        return None
    reason = (
        f"no placement profile; this CPU has bfloat16 instructions ({', '.join(features)}) and {backend} "
        f"is installed, so fast runs {backend} {precision} ({verdict})"
    )
    return AutoChoice(backend, {}, reason, precision)


def resolve_backend(name: str) -> Any:
    """The registered backend ``name``, checked to be runnable here."""
    try:
        backend = plugins.get_backend(name)
    except KeyError as exc:
        raise BackendError(str(exc.args[0])) from None
    ok, reason = backend.available()
    if not ok:
        raise BackendError(f"backend {name} is unavailable here: {reason}")
    return backend


# ------------------------------------------------------------------------------ model folders


def folder_backends(folder: ModelFolder) -> list[str]:
    """Backends that run ``folder``'s format here, in ``auto``'s order of preference."""
    table = plugins.backends()
    order = [n for n in AUTO_PREFERENCE if n in table] + sorted(set(table) - set(AUTO_PREFERENCE))
    return [n for n in order if getattr(table[n], "artifact_format", None) == folder.format and runs_here(n)]


def backend_for(backend: str, folder: ModelFolder | None) -> str:
    """``backend`` with ``auto`` resolved for a model folder: the first backend (in ``auto``'s order)
    that runs the folder's format here. Without a folder, or for a named backend, unchanged."""
    if backend != "auto" or folder is None:
        return backend
    runnable = folder_backends(folder)
    if not runnable:
        install = {"onnx": "pip install 'matanyone-engine[onnx]'", "coreml": "macOS 13+ with coremltools"}
        raise BackendError(
            f"no backend that runs {folder.format} models is available here (needs "
            f"{install.get(folder.format, 'its plugin')}; see `matanyone backends`)"
        )
    return runnable[0]


def check_runs_folder(name: str, backend: Any, folder: ModelFolder) -> None:
    """Refuse a backend that cannot run ``folder`` (it runs another format, or no folders at all)."""
    runs = getattr(backend, "artifact_format", None)
    if runs == folder.format:
        return
    fitting = ", ".join(folder_backends(folder)) or "none available here; see `matanyone backends`"
    if runs is None:
        raise BackendError(
            f"backend {name} builds its modules from --weights and does not run exported folders; for "
            f"--models {folder.directory} ({folder.format}) use --backend {fitting}"
        )
    raise BackendError(
        f"--models {folder.directory} holds {folder.format} models but backend {name} runs {runs}; use "
        f"--backend {fitting}, or export for it: {folder.export_command(format=runs)}"
    )


def fixed_module_size(
    backend: str,
    placement: str | Mapping[str, str] | None = None,
    *,
    folder: ModelFolder | None = None,
    package_size: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> tuple[int, int] | None:
    """(H, W) the modules are built for when they are fixed-size; None when built for each clip.

    A model folder has its export size; ``package_size`` asks for one (rounded up to multiples of
    16); otherwise a backend that declares ``fixed_size`` (Core ML: its packages) fixes it for
    every module. Clips are then fitted to that size (core/engine/fixed_size.py).
    """
    if folder is not None:
        return folder.size
    if package_size is not None:
        return padded_size(*package_size)
    for name in dict.fromkeys(module_backends(backend, placement, precision).values()):
        declared = getattr(resolve_backend(name), "fixed_size", None)
        if declared:
            return padded_size(int(declared[0]), int(declared[1]))
    return None


def module_backends(
    backend: str, placement: str | Mapping[str, str] | None = None, precision: str = "fp32"
) -> dict[str, str]:
    """{module: backend name} for a backend (``auto`` resolved for ``precision``) and a placement."""
    table = parse_placement(placement)
    if backend == "auto":
        choice = auto_choice(precision=precision)
        backend, table = choice.backend, {**choice.placement, **table}
    return {m: table.get(m, backend) for m in MODULE_NAMES}


def precision_plan(
    backend: str, precision: str, placement: str | Mapping[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """{backend name: (concrete precision, why)} for every backend the modules will come from:
    what ``--precision fast`` turns into here, for the CLI and the benchmark to report."""
    names = dict.fromkeys(module_backends(backend, placement, precision).values())
    measured = measured_precisions()
    return {name: resolve_precision(resolve_backend(name), precision, measured) for name in names}


def module_memory_profiles(
    backend: str,
    placement: str | Mapping[str, str] | None = None,
    models: ModelFolder | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """{module: MemoryProfile or None} for the up-front memory estimate (core/app/memory.py); the
    optional variants count with the module they stand in for. With a model folder, a backend that
    cannot run its format is refused first (that says what would run it)."""
    from .memory import profile_of

    wanted = module_backends(backend, placement, precision)
    if models is not None:
        for name in dict.fromkeys(wanted.values()):
            if name in plugins.backends():
                check_runs_folder(name, plugins.backends()[name], models)
    per_backend = {b: profile_of(resolve_backend(b)) for b in dict.fromkeys(wanted.values())}  # one object each
    profiles = {m: per_backend[b] for m, b in wanted.items()}
    for variant, base in VARIANT_OF.items():
        profiles[variant] = profiles[base]
    return profiles


def pipeline_pays(backend: str, placement: str | Mapping[str, str] | None = None, precision: str = "fp32") -> bool:
    """Whether overlapping the next frame's image encoder with the current frame helps.

    Only when the encoder runs on an accelerator: then the CPU thread that waits on it is free.
    On a CPU backend every module already uses all cores, and running two at once measured
    slower on the benchmark machine (see the README's performance notes).
    """
    encoder_backend = module_backends(backend, placement, precision)["encoder"]
    return bool(getattr(resolve_backend(encoder_backend), "accelerated", False))


def load_modules(
    backend: str,
    weights: str,
    dims: Dims,
    *,
    precision: str = "fp32",
    placement: str | Mapping[str, str] | None = None,
    threads: int | None = None,
    options: Mapping[str, Any] | None = None,
    models: ModelFolder | None = None,
) -> dict[str, Module]:
    """The five modules, each from its placed backend (``backend`` for the rest).

    With ``models`` every backend must run the folder's format and loads from it; the folder's
    weights and precision are then the request's (``matte`` settles them with ``settle_request``).
    """
    wanted = module_backends(backend_for(backend, models), placement, precision)
    measured = measured_precisions()
    loaded: dict[str, Mapping[str, Module]] = {}
    for name in dict.fromkeys(wanted.values()):
        if models is not None and name in plugins.backends():  # the format first: it says what would run
            check_runs_folder(name, plugins.backends()[name], models)
        chosen_backend = resolve_backend(name)
        given = dict(options or {})
        if models is not None:
            weights, concrete = models.manifest.weights, models.manifest.precision
            given["artifacts"] = str(models.directory)
        else:
            concrete, _ = resolve_precision(chosen_backend, precision, measured)
        request = LoadRequest(weights=weights, dims=dims, precision=concrete, threads=threads, options=given)
        loaded[name] = chosen_backend.load(request)
    chosen = {m: loaded[b][m] for m, b in wanted.items()}
    # an optional variant comes from the backend of the module it stands in for
    for variant, base in VARIANT_OF.items():
        if variant in loaded[wanted[base]]:
            chosen[variant] = loaded[wanted[base]][variant]
    return chosen
