"""From timings to numbers: medians and percentiles, FLOPs per module, per-configuration
summaries, and paired ratios against the reference configuration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import plugins
from ..app.loading import runs_here
from ..engine.spec import Dims
from .configs import BenchConfig, module_order

#: Counts FLOPs for backends that cannot (the network is the same whatever runs it).
REFERENCE_BACKEND = "torch"


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, 10th and 90th percentile and mean in milliseconds, and the count."""
    if not len(seconds):
        return {"median_ms": None, "p10_ms": None, "p90_ms": None, "mean_ms": None, "count": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p10, median, p90 = np.percentile(ms, [10, 50, 90])
    return {
        "median_ms": round(float(median), 3),
        "p10_ms": round(float(p10), 3),
        "p90_ms": round(float(p90), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "count": int(ms.size),
    }


def resolve_flops(
    config: BenchConfig,
    names: Iterable[str],
    dims: Dims,
    weights: str,
    declared: Mapping[str, int],
    cache: dict[str, tuple[dict[str, int] | None, str]] | None = None,
) -> tuple[dict[str, int], dict[str, str]]:
    """FLOPs per module of ``names`` (those that could be counted) and where each came from.

    Order of preference per module: the exported artifacts' manifest (measured at export time),
    the module's backend's ``module_flops(dims, weights)``, then the reference ``torch`` backend's
    count. FLOPs belong to the network, not the runtime, so the torch count is valid for every
    backend; the source says which was used.
    """
    cache = {} if cache is None else cache
    flops: dict[str, int] = {}
    sources: dict[str, str] = {}
    for module in names:
        if module in declared:
            flops[module], sources[module] = int(declared[module]), "manifest"
            continue
        backend_name = config.backend_of(module)
        for counting in dict.fromkeys((backend_name, REFERENCE_BACKEND)):
            if counting not in cache:
                cache[counting] = _backend_flops(counting, dims, weights)
            table, source = cache[counting]
            if table and module in table:
                flops[module], sources[module] = int(table[module]), source
                break
    return flops, sources


def _backend_flops(backend_name: str, dims: Dims, weights: str) -> tuple[dict[str, int] | None, str]:
    try:
        counter = getattr(plugins.get_backend(backend_name), "module_flops", None)
        if counter is None:
            return None, ""
        if backend_name == REFERENCE_BACKEND and not runs_here(backend_name):
            return None, ""
        return dict(counter(dims, weights)), f"{backend_name}.module_flops"
    except Exception:  # FLOPs are a nicety: a failing counter must not lose the timings (the report says "no count")
        return None, ""


def summarize_config(
    passes: list[dict[str, Any]],
    info: dict[str, Any],
    first_pass_s: float | None,
    flops: dict[str, int],
    flops_sources: dict[str, str],
    isolate: bool,
) -> dict[str, Any]:
    names = module_order(n for p in passes for n in p["modules"])
    frame_calls = [c for p in passes for c in p["frame_calls"]]
    modules: dict[str, Any] = {}
    for name in names:
        stats = summarize([s for p in passes for s in p["modules"].get(name, [])])
        stats["calls_per_frame"] = (
            round(float(np.mean([c.get(name, 0) for c in frame_calls])), 3) if frame_calls else None
        )
        if name in flops:
            stats["gflops"] = round(flops[name] / 1e9, 3)
            stats["achieved_gflops_per_s"] = (
                round(flops[name] / 1e9 / (stats["median_ms"] / 1000.0), 2) if stats["median_ms"] else None
            )
        modules[name] = stats
    frame = summarize([s for p in passes for s in p["frames"]])
    if frame["median_ms"]:
        frame["fps"] = round(1000.0 / frame["median_ms"], 3)
    gflops_frame = _gflops_per_frame(frame_calls, flops)
    finish = info.get("finish", {})
    return {
        "modules": modules,
        "frame": frame,
        "first_frame": summarize([p["first_frame"] for p in passes]),
        "rounds": [
            {
                "frame_median_ms": summarize(p["frames"])["median_ms"],
                "modules_median_ms": {n: summarize(p["modules"].get(n, []))["median_ms"] for n in names},
            }
            for p in passes
        ],
        "load_s": round(info["load_s"], 3),
        "first_pass_s": round(first_pass_s, 3) if first_pass_s is not None else None,
        "peak_rss_mb": round_or_none(finish.get("peak_rss_mb"), 1),
        "baseline_rss_mb": round_or_none(info.get("baseline_rss_mb"), 1),
        "peak_rss_scope": "this configuration's worker process"
        if isolate
        else "whole process, shared by every configuration measured so far (not attributable)",
        "gflops_per_frame": round_or_none(gflops_frame, 3),
        "achieved_gflops_per_s": (
            round(gflops_frame / (frame["median_ms"] / 1000.0), 2) if gflops_frame and frame["median_ms"] else None
        ),
        "flops_source": flops_sources,
        "threads": finish.get("threads") or info.get("threads") or {},
    }


def _gflops_per_frame(frame_calls: Sequence[Mapping[str, int]], flops: Mapping[str, int]) -> float | None:
    """Mean work of a steady-state frame, from the modules that really ran in each frame (memory
    frames run the full mask encoder, others may run a shallow variant). None if a module that
    ran has no FLOP count."""
    if not frame_calls:
        return None
    ran = {n for calls in frame_calls for n, k in calls.items() if k}
    if not ran <= set(flops):
        return None
    return float(np.mean([sum(k * flops[n] for n, k in calls.items() if k) for calls in frame_calls])) / 1e9


def round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def compute_ratios(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each configuration's latency divided by the first successful one's (the reference).

    ``frame`` and ``modules`` are paired ratios: per measured round, this configuration's median
    over the reference's median in the same round, then the median over rounds; rounds ran back
    to back, so drift between rounds cancels. ``frame_of_medians`` is the plain ratio of overall
    medians, for comparison.
    """
    ok = [r for r in results if "error" not in r and r.get("frame", {}).get("median_ms")]
    if not ok:
        return {}
    ref = ok[0]
    out: dict[str, Any] = {"reference": ref["label"], "frame": {}, "frame_of_medians": {}, "modules": {}}
    for result in ok:
        pairs = list(zip(result["rounds"], ref["rounds"], strict=False))
        out["frame"][result["label"]] = _paired([(a["frame_median_ms"], b["frame_median_ms"]) for a, b in pairs])
        out["frame_of_medians"][result["label"]] = round(result["frame"]["median_ms"] / ref["frame"]["median_ms"], 4)
        shared = module_order(set(result["modules"]) & set(ref["modules"]))
        out["modules"][result["label"]] = {
            name: _paired([(a["modules_median_ms"].get(name), b["modules_median_ms"].get(name)) for a, b in pairs])
            for name in shared
        }
    subjects = _subject_ratios(ok)
    if subjects:
        out["subjects"] = subjects
    return out


def _subject_ratios(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """K subjects in one run against K separate one-subject runs of the same configuration.

    Per measured round, the K-subject frame median over K times the one-subject run's median in
    the same round, then the median over rounds: below 1 is what sharing the image encoder saves.
    """
    solo = {_without_subjects(r): r for r in results if r.get("subjects", 1) == 1}
    out: dict[str, Any] = {}
    for result in results:
        count = int(result.get("subjects", 1))
        alone = solo.get(_without_subjects(result))
        if count < 2 or alone is None:
            continue
        pairs = zip(result["rounds"], alone["rounds"], strict=False)
        ratio = _paired(
            [
                (a["frame_median_ms"], None if b["frame_median_ms"] is None else count * b["frame_median_ms"])
                for a, b in pairs
            ]
        )
        out[result["label"]] = {"subjects": count, "one_subject": alone["label"], "vs_separate_runs": ratio}
    return out


def _without_subjects(result: Mapping[str, Any]) -> tuple:
    placement = tuple(sorted((result.get("placement") or {}).items()))
    return (result.get("backend"), result.get("precision"), placement, bool(result.get("pipeline")))


def _paired(pairs: Sequence[tuple[float | None, float | None]]) -> float | None:
    values = [a / b for a, b in pairs if a is not None and b]
    return round(float(np.median(values)), 4) if values else None
