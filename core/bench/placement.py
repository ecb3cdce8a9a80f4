"""Placement search: the fastest admissible configuration, and the fastest backend per module.

``bench --search`` measures every backend at every precision it offers that is admissible (its
golden-clip error within the official CPU mode's, core/engine/accuracy.py) and not emulated here.
From that report this module picks, per backend, its fastest precision (what ``--precision fast``
then takes for it), the fastest configuration overall (what ``--backend auto`` takes), and per
module the backend that serves it cheapest at its own fastest precision (a mixed placement, kept
only when a verification run confirms it beats the best single configuration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..app.loading import PROFILE_VERSION, resolve_backend
from ..engine.accuracy import admissible
from ..engine.errors import BackendError
from ..engine.precision import FAST, cpu_has_native_bf16
from ..engine.spec import MODULE_NAMES
from .configs import BenchConfig, backend_precisions, base_module, make_config

Log = Any


def search_configs(
    backends: Sequence[str], precisions: Sequence[str] | None = None, log: Log = None
) -> list[BenchConfig]:
    """Every backend x precision worth measuring: offered, admissible, and not emulated here.

    ``precisions`` (the command line's ``-p``) restricts the candidates. bf16 on a CPU backend
    without bfloat16 instructions is left out: it is emulated there, dozens of times slower than
    fp32 (it could never win, and would take hours to measure)."""
    configs = []
    for name in backends:
        backend = resolve_backend(name)
        for precision in backend_precisions(name):
            if precisions and precision not in precisions:
                continue
            ok, verdict = admissible(name, precision)
            if not ok:
                if log:
                    log(f"search: {name} {precision} left out: {verdict}")
                continue
            if precision == "bf16" and not getattr(backend, "accelerated", False) and not cpu_has_native_bf16():
                if log:
                    log(f"search: {name} bf16 left out: this CPU has no bfloat16 instructions (emulated)")
                continue
            configs.append(make_config(name, precision))
    if not configs:
        raise BackendError("no backend x precision can be measured here; see `matanyone backends`")
    return configs


def search_placement(report: Mapping[str, Any]) -> dict[str, Any]:
    """The profile: fastest precision per backend, fastest configuration, fastest backend per module.

    Only results without a placement and without an error compete; the profile records what each
    configuration measured so a reader can see the margins behind every choice.
    """
    candidates = [
        r
        for r in report["results"]
        if "error" not in r and not r.get("placement") and r.get("frame", {}).get("median_ms")
    ]
    if not candidates:
        raise BackendError("no backend could be measured, so no placement can be chosen")
    fastest: dict[str, Mapping[str, Any]] = {}
    for result in candidates:
        held = fastest.get(result["backend"])
        if held is None or result["frame"]["median_ms"] < held["frame"]["median_ms"]:
            fastest[result["backend"]] = result
    measured: dict[str, Any] = {}
    for backend, result in fastest.items():
        measured[backend] = {
            "precision": _concrete(result),
            "modules": result["modules"],
            "cost_ms": {name: _module_cost_ms(result, name) for name in MODULE_NAMES},
            "frame": result["frame"],
        }
    placement: dict[str, str] = {}
    for name in MODULE_NAMES:
        costs = [(m["cost_ms"][name], backend) for backend, m in measured.items() if m["cost_ms"][name] is not None]
        if costs:
            placement[name] = min(costs)[1]
    best = min(fastest.values(), key=lambda r: r["frame"]["median_ms"])
    return {
        "profile_version": PROFILE_VERSION,
        "placement": placement,
        "precisions": {backend: m["precision"] for backend, m in measured.items()},
        "choice": {
            "backend": best["backend"],
            "precision": _concrete(best),
            "frame_median_ms": best["frame"]["median_ms"],
        },
        "precision": _concrete(best),
        "best_single_backend": best["backend"],
        "candidates": [
            {
                "label": r["label"],
                "backend": r["backend"],
                "precision": _concrete(r),
                "frame_median_ms": r["frame"]["median_ms"],
                "accuracy": admissible(r["backend"], _concrete(r))[1],
            }
            for r in candidates
        ],
        "measured": measured,
        "settings": dict(report.get("settings", {})),
        "env": dict(report.get("env", {})),
        "method": (
            "every backend at every precision it offers that is admissible (golden-clip alpha error within "
            "the official CPU mode's, core/engine/accuracy.py) and not emulated here, measured in one run "
            "with passes interleaved. precisions: each backend's fastest, by median steady-state frame. "
            "choice: the fastest configuration. placement: per module, the backend with the lowest cost_ms "
            "at its own fastest precision (median ms per call times calls per steady-state frame, summed "
            "with the module's variants; read_first, which runs only on frame 0, by its median per call); a "
            "mix of backends is kept only when a verification run measured it faster than the choice"
        ),
    }


def keep_single(profile: dict[str, Any], why: str) -> None:
    """Replace a mixed placement by the best single configuration (every module on it)."""
    profile["placement"] = dict.fromkeys(MODULE_NAMES, profile["choice"]["backend"])
    profile["placement_note"] = why


def verification_configs(profile: Mapping[str, Any]) -> tuple[BenchConfig, BenchConfig] | None:
    """(best single, the mix) to measure side by side, or None when the mix cannot be run as one
    configuration (its backends' fastest precisions differ: one load runs one precision)."""
    mixed = set(profile["placement"].values())
    if len(mixed) < 2:
        return None
    precisions = {profile["precisions"][b] for b in mixed}
    if len(precisions) != 1:
        return None
    precision = precisions.pop()
    choice = profile["choice"]
    return make_config(choice["backend"], choice["precision"]), make_config(
        choice["backend"], precision, profile["placement"]
    )


def _concrete(result: Mapping[str, Any]) -> str:
    """The precision a result really ran at (``fast`` as it was resolved for its backend)."""
    precision = result["precision"]
    if precision == FAST:
        resolved = result.get("resolved_precision") or {}
        return str(resolved.get(result["backend"], precision))
    return str(precision)


def _module_cost_ms(result: Mapping[str, Any], base: str) -> float | None:
    """What ``base`` and its variants cost a configuration per steady-state frame, in ms.

    Per call would mislead where a backend offers a shallow variant: its mask_encoder then runs
    only on memory frames. read_first never runs in a steady-state frame, so it is compared per call.
    """
    members = [s for n, s in result["modules"].items() if base_module(n) == base and s.get("median_ms")]
    if not members:
        return None
    per_frame = sum((s.get("calls_per_frame") or 0.0) * s["median_ms"] for s in members)
    return round(per_frame, 3) if per_frame > 0 else min(s["median_ms"] for s in members)
