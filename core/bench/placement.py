"""Placement search: the fastest backend per module, from a report of single-backend runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..app.loading import PROFILE_VERSION
from ..engine.errors import BackendError, InputError
from ..engine.spec import MODULE_NAMES
from .configs import base_module


def search_placement(report: Mapping[str, Any]) -> dict[str, Any]:
    """The fastest backend per module from a report of single-backend configurations.

    Only results without a placement and without an error compete; the profile records what each
    backend measured so a reader can see the margins behind every choice.
    """
    candidates = [r for r in report["results"] if "error" not in r and not r.get("placement")]
    if not candidates:
        raise BackendError("no backend could be measured, so no placement can be chosen")
    precisions = {r["precision"] for r in candidates}
    if len(precisions) != 1:
        raise InputError(f"a placement search compares backends at one precision, got {sorted(precisions)}")
    measured: dict[str, Any] = {}
    for result in candidates:
        measured[result["backend"]] = {
            "modules": result["modules"],
            "cost_ms": {name: _module_cost_ms(result, name) for name in MODULE_NAMES},
            "frame": result["frame"],
        }
    placement: dict[str, str] = {}
    for name in MODULE_NAMES:
        costs = [(m["cost_ms"][name], backend) for backend, m in measured.items() if m["cost_ms"][name] is not None]
        if costs:
            placement[name] = min(costs)[1]
    best_single = min(
        (r for r in candidates if r["frame"]["median_ms"]), key=lambda r: r["frame"]["median_ms"], default=None
    )
    return {
        "profile_version": PROFILE_VERSION,
        "placement": placement,
        "precision": precisions.pop(),
        "best_single_backend": best_single["backend"] if best_single else None,
        "measured": measured,
        "settings": dict(report.get("settings", {})),
        "env": dict(report.get("env", {})),
        "method": (
            "per module, the backend with the lowest cost_ms: median ms per call times calls per "
            "steady-state frame, summed with the module's variants (mask_value stands in for "
            "mask_encoder on non-memory frames); read_first, which runs only on frame 0, by its "
            "median per call. Every backend ran the state machine on the same clip; a module's time "
            "includes its numpy inputs and outputs (the protocol's boundary), so a mixed placement "
            "adds no transfer beyond what was timed"
        ),
    }


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
