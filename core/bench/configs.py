"""What a benchmark measures: configurations (backend x precision [x placement] [+ pipeline]),
and turning a ``bench`` command line into the list of them."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .. import plugins
from ..app.loading import auto_choice, parse_placement, resolve_backend, runs_here
from ..engine.errors import BackendError
from ..engine.spec import MODULE_NAMES, VARIANT_OF


@dataclass(frozen=True)
class BenchConfig:
    """One thing to measure: a backend at a precision, optionally with modules placed elsewhere."""

    backend: str
    precision: str = "fp32"
    placement: tuple[tuple[str, str], ...] = ()
    pipeline: bool = False  # the next frame's image encoder overlapped with the current frame
    subjects: int = 1  # subjects matted per run: one state machine each, one image-encoder run per frame

    @property
    def label(self) -> str:
        """Unique, human-readable key used in tables, ratios and JSON."""
        base = f"{self.backend}/{self.precision}"
        if self.placement:
            base += " [" + ",".join(f"{m}={b}" for m, b in self.placement) + "]"
        base += " +pipeline" if self.pipeline else ""
        return base + (f" x{self.subjects} subjects" if self.subjects > 1 else "")

    def module_backends(self) -> dict[str, str]:
        """Which backend serves each of the five modules under this configuration."""
        table = dict(self.placement)
        return {m: table.get(m, self.backend) for m in MODULE_NAMES}

    def backend_of(self, module: str) -> str:
        """The backend serving ``module``, variants included (they follow their base module)."""
        return self.module_backends()[base_module(module)]


def module_order(names: Iterable[str]) -> list[str]:
    """The five modules in pipeline order, then any optional variants (e.g. the shallow
    ``mask_value``) a backend provided, so tables and JSON list modules the same way every time."""
    present = set(names)
    return [m for m in MODULE_NAMES if m in present] + sorted(present - set(MODULE_NAMES))


def base_module(name: str) -> str:
    """The module a variant stands in for (``mask_value`` -> ``mask_encoder``); itself otherwise.
    A variant always comes from its base module's backend (core.api.load_modules)."""
    return VARIANT_OF.get(name, name)


def make_config(
    backend: str, precision: str = "fp32", placement: Mapping[str, str] | None = None, pipeline: bool = False
) -> BenchConfig:
    """A BenchConfig with the placement in module order, so equal placements compare equal."""
    table = dict(placement or {})
    return BenchConfig(backend, precision, tuple((m, table[m]) for m in MODULE_NAMES if m in table), pipeline)


def available_backends() -> list[str]:
    """Names of registered backends that can run here; ``torch`` first (the usual reference).

    Simulations (``simulated = True``, e.g. coreml-sim) are left out: they check what a program
    computes, their speed says nothing; name them explicitly to time them anyway."""
    table = plugins.backends()
    names = [name for name in table if runs_here(name) and not getattr(table[name], "simulated", False)]
    return sorted(names, key=lambda n: (n != "torch", n))


def backend_precisions(name: str) -> tuple[str, ...]:
    """Precisions a backend offers: what it declares (see declared_precisions), else only fp32
    (the one every backend must support)."""
    return declared_precisions(name) or ("fp32",)


def declared_precisions(name: str) -> tuple[str, ...] | None:
    """The backend's ``precisions`` attribute, else its plugin module's ``PRECISIONS`` constant,
    else None (undeclared: the backend may still accept others, so callers must not assume)."""
    backend = plugins.get_backend(name)
    offered = getattr(backend, "precisions", None)
    if offered is None:
        offered = getattr(sys.modules.get(type(backend).__module__), "PRECISIONS", None)
    return tuple(offered) if offered else None


def plan_configs(
    backends: Sequence[str] | None,
    precisions: Sequence[str] | None,
    placement: str | None,
    pipeline: bool = False,
    subjects: int = 1,
) -> list[BenchConfig]:
    """The configurations a ``bench`` command line asks for.

    Backends default to every available one; each runs in the asked precisions it offers.
    ``auto`` means the placement of the newest search profile. With ``--placement``, each listed
    backend (default: torch and the backends the placement names) runs on its own and the placed
    mix runs next to them (default backend for unplaced modules: the first listed), so the ratios
    show what the placement gains. ``pipeline`` adds each configuration once more with the image
    encoder pipelined, run interleaved with the plain one, so the ratio is the overlap's gain.
    ``subjects`` K > 1 adds each configuration with 2 .. K subjects per run, interleaved with the
    one-subject run it is compared with (``stats.compute_ratios``: K subjects against K runs).
    """
    if subjects < 1:
        raise BackendError(f"--subjects must be 1 or more, got {subjects}")
    precisions = list(dict.fromkeys(precisions or ["fp32"]))
    table = parse_placement(placement) if placement else {}
    names = list(dict.fromkeys(backends or []))
    if not names:
        names = list(dict.fromkeys(["torch", *table.values()])) if table else available_backends()
    if not names:
        raise BackendError("no backend is available here; see `matanyone backends`")
    configs: list[BenchConfig] = []
    for name in names:
        if name == "auto":
            for p in precisions:
                choice = auto_choice(precision=p)
                configs.append(make_config(choice.backend, p, choice.placement))
            continue
        resolve_backend(name)  # unknown or unavailable: a one-line error before anything loads
        configs += [make_config(name, p) for p in _offered(name, precisions)]
    for name in set(table.values()):
        resolve_backend(name)
    if table:
        default = next((n for n in names if n != "auto"), "torch")
        configs += [make_config(default, p, table) for p in precisions]
    if pipeline:
        configs += [replace(c, pipeline=True) for c in configs]
    configs += [replace(c, subjects=k) for c in list(configs) for k in range(2, subjects + 1)]
    return list(dict.fromkeys(configs))


def _offered(name: str, precisions: Sequence[str]) -> list[str]:
    """The asked precisions this backend offers, so ``-b torch -b onnx-cpu -p fp32 -p bf16``
    measures torch in both and onnx-cpu in fp32 instead of failing on onnx-cpu/bf16. Asking a
    backend only for precisions it declares it lacks is an error; undeclared backends are tried."""
    declared = declared_precisions(name)
    if declared is None:
        return list(precisions)
    kept = [p for p in precisions if p in declared or p == "fast"]  # every backend resolves fast
    if not kept:
        raise BackendError(
            f"backend {name} does not offer precision {', '.join(precisions)}; it offers {', '.join(declared)}"
        )
    return kept
