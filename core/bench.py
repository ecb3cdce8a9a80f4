"""Benchmarks: latency per module x backend x precision, and automatic per-module placement.

What is measured, and why this way:

* **The real state machine on a real clip.** Module latencies depend on the data only through
  shapes, but the state machine decides how often each module runs (read_first only on first-frame
  predictions, the deep mask encoder on memory frames) and adds its own numpy work, so a frame's
  cost is only honest when measured through ``core.state.matte_frames``. The clip is the MatAnyone
  sample (``../shared/data/test-sample1.mp4`` beside the checkout) resized with ``INTER_AREA`` to
  the requested size, else a generated clip of moving shapes.
* **A timing proxy around every module call.** ``time.perf_counter`` around ``module(**inputs)``.
  The Module protocol is numpy in, numpy out, so the time includes each backend's conversions and
  transfers (host to device and back for a GPU backend): exactly what a module costs the state
  machine. A frame's time is the wall time between two mattes of ``matte_frames``, so it also holds
  the state machine's own numpy work.
* **One worker process per configuration (backend x precision [x placement]).** Each worker loads
  its modules once and reports the high-water mark of its own resident memory (``VmHWM`` on Linux,
  ``ru_maxrss`` elsewhere), so the peak memory of one backend is not mixed with another's. With
  ``isolate=False`` (``--in-process``) everything runs in this process and the peak is the whole
  process's, reported with that scope.
* **Interleaved clip by clip, in rotated order.** Round r runs one full pass of the clip on every
  configuration, starting with configuration ``r mod k``: A B C, B C A, C A B, ... A pass is what a
  user runs (caches warm within a clip, as in real use), a few seconds long, so slow machine drift
  (turbo, thermal, other load) hits every configuration alike; rotating the order cancels any
  systematic "runs right after X" effect. Frame-by-frame interleaving was rejected: switching
  process every frame would evict each backend's caches mid-clip and charge the switch to the
  first module of every frame. Ratios are the median over rounds of the per-round ratio of
  medians (paired), which cancels drift between rounds as well.
* **Warm-up passes** (``warmup_runs``) run in the same interleaved way and are discarded; the first
  one's wall time is reported as ``first_pass_s`` (JIT, allocator and runtime warm-up show there).
* **FLOPs** per module come from the exporter's manifest when the loaded modules carry one, else
  from the backend's ``module_flops(dims, weights)``, else from counting the torch modules
  (``backends/torch/flops.py``; same network, so the same FLOPs). Achieved GFLOP/s is FLOPs over
  median latency; a frame's FLOPs are those of the modules that really ran in it (encoder, read,
  decoder, and the mask encoder or its shallow variant on non-memory frames), averaged.

Placement search (``--search``) measures every module on every available backend with the same
machinery and picks the fastest backend per module (per steady-state frame, so a backend whose
shallow ``mask_value`` variant replaces most mask-encoder calls is credited for it). Because every module call already pays its
own numpy boundary (inputs in, outputs out), a mixed placement costs the sum of its modules' times
and nothing more: there is no hidden transfer between backends to account for. The chosen mix is
then measured once against the best single backend to confirm, and written as a profile that
``run --placement PROFILE.json`` (``core.api.parse_placement``) and ``--backend auto``
(``auto_placement``) read.

No torch is imported here at module import; the torch FLOP count is imported lazily.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import typer

from . import plugins
from .errors import BackendError, InputError, MatanyoneError
from .protocol import Module
from .spec import MODULE_NAMES, Dims
from . import spec as _spec
from .state import clip_dims, matte_frames
from .synthetic import moving_shapes as synthetic_clip

Log = Callable[[str], None]

DEFAULT_SIZE = "432x768"
DEFAULT_WEIGHTS = "seeded:v1-pm"
SAMPLE_CLIP, SAMPLE_MASK = "test-sample1.mp4", "test-sample1.png"
PROFILE_NAME = "placement.json"
PROFILE_VERSION = 1
#: Seconds to wait for a worker to exit after it was told to finish.
WORKER_JOIN_S = 30.0


# ----------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class BenchConfig:
    """One thing to measure: a backend at a precision, optionally with modules placed elsewhere."""

    backend: str
    precision: str = "fp32"
    placement: tuple[tuple[str, str], ...] = ()
    pipeline: bool = False  # the next frame's image encoder overlapped with the current frame

    @property
    def label(self) -> str:
        """Unique, human-readable key used in tables, ratios and JSON."""
        base = f"{self.backend}/{self.precision}"
        if self.placement:
            base += " [" + ",".join(f"{m}={b}" for m, b in self.placement) + "]"
        return base + (" +pipeline" if self.pipeline else "")

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
    return dict(getattr(_spec, "VARIANT_OF", {})).get(name, name)


def make_config(
    backend: str, precision: str = "fp32", placement: Mapping[str, str] | None = None, pipeline: bool = False
) -> BenchConfig:
    """A BenchConfig with the placement in module order, so equal placements compare equal."""
    table = dict(placement or {})
    return BenchConfig(backend, precision, tuple((m, table[m]) for m in MODULE_NAMES if m in table), pipeline)


def available_backends() -> list[str]:
    """Names of registered backends that can run here; ``torch`` first (the usual reference)."""
    names = [name for name, backend in plugins.backends().items() if _is_available(backend)]
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


def _is_available(backend: Any) -> bool:
    try:
        return bool(backend.available()[0])
    except Exception:  # a broken availability check means "not here", not a crash of the bench
        return False


# -------------------------------------------------------------------------------------- clips


@dataclass
class ClipData:
    """What every configuration is fed: the same frames and the same prepared first-frame mask."""

    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) float32 in 0..255, prepared like the demo (dilate then erode)
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def parse_size(size: str) -> tuple[int, int]:
    """``"432x768"`` -> (432, 768): height first, like the official demo's sizes."""
    try:
        height, width = (int(v) for v in size.lower().replace(" ", "").split("x"))
    except ValueError:
        raise InputError(f"bad size {size!r}; write HxW, e.g. 432x768") from None
    if height < 16 or width < 16:
        raise InputError(f"size {size!r} is too small; use at least 16x16")
    return height, width


def source_root() -> Path:
    """The checkout (or installed package) directory that holds core/."""
    return Path(__file__).resolve().parents[1]


def find_sample_clip() -> tuple[Path, Path] | None:
    """The sample clip and mask in ``../shared/data`` relative to the cwd or the source root."""
    for base in (Path.cwd(), source_root()):
        folder = base.parent / "shared" / "data"
        clip, mask = folder / SAMPLE_CLIP, folder / SAMPLE_MASK
        if clip.is_file() and mask.is_file():
            return clip, mask
    return None


def load_clip(
    size: tuple[int, int],
    frames: int,
    clip: Path | None = None,
    mask: Path | None = None,
    synthetic: bool = False,
) -> ClipData:
    """The benchmark clip at ``size`` (H, W): ``clip`` if given, else the sample, else generated.

    The mask is prepared the way ``matanyone run`` does (demo dilate/erode 10 at the source size,
    then nearest-neighbour resize), so the state machine sees what it sees in real use. A clip
    shorter than ``frames`` is played forward then backward until long enough (timing depends on
    shapes, not on content, and a benchmark should not fail on a short clip).
    """
    import cv2

    from . import masks, video

    if frames < 2:
        raise InputError(f"--frames must be at least 2 (frame 0 is the seed, the rest are timed), got {frames}")
    height, width = size
    if clip is None and not synthetic:
        found = find_sample_clip()
        if found is not None:
            clip, mask = found
    if clip is None:
        rgb, raw = synthetic_clip(height, width, frames)
        return ClipData(rgb, masks.prepare_mask(raw).astype(np.float32), f"synthetic moving shapes {height}x{width}")

    clip = Path(clip)
    mask = Path(mask) if mask is not None else clip.with_suffix(".png")
    if not mask.is_file():
        raise InputError(f"no mask for {clip}: expected {mask}; pass --mask")
    info = video.probe(clip)
    decoded = list(video.iter_frames(clip, count=frames))
    if not decoded:
        raise InputError(f"{clip} has no frames")
    while len(decoded) < frames:
        decoded += decoded[::-1][1:] or decoded
    rgb = np.stack([_resize(f, height, width, cv2.INTER_AREA) for f in decoded[:frames]])
    raw, _ = masks.fit_mask_to_frame(masks.load_mask(mask), info.height, info.width)
    prepared = masks.prepare_mask(raw)
    return ClipData(rgb, _resize(prepared, height, width, cv2.INTER_NEAREST).astype(np.float32), str(clip))


def _resize(image: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=interpolation)


# ------------------------------------------------------------------------------- measurement


class TimedModule:
    """A Module that records the wall time of each call into ``sink`` (seconds).

    The proxy keeps ``spec`` so the state machine cannot tell it from the module it wraps.
    Outputs are numpy by protocol, so a backend that computes asynchronously has finished by
    the time the call returns: the time is the full cost.
    """

    def __init__(self, module: Module, sink: list[float]):
        self.module = module
        self.spec = module.spec
        self.sink = sink

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = self.module(**inputs)
        self.sink.append(time.perf_counter() - start)
        return outputs


def time_clip_pass(
    modules: Mapping[str, Module], clip: ClipData, state_warmup: int = 1, mem_frames: int = 5, pipeline: bool = False
) -> dict[str, Any]:
    """One pass of the state machine over the clip with every module timed.

    Every module the backend handed over is wrapped, optional variants included, so the state
    machine takes the same path it takes in real use. Returns seconds: ``modules`` (every call of
    each module), ``frames`` (steady-state frames 1..n-1, between consecutive mattes),
    ``first_frame`` (frame 0: seed plus 1 + state_warmup first-frame predictions), ``wall`` (the
    whole pass), and ``frame_calls``: how often each module ran in each steady-state frame (the
    mix differs between memory and other frames, and FLOPs per frame follow from it). With
    ``pipeline`` the encoder of frame t+1 overlaps frame t, so module times include contention and
    only the frame times say what the overlap gains.
    """
    calls: dict[str, list[float]] = {name: [] for name in modules}
    timed = {name: TimedModule(module, calls[name]) for name, module in modules.items()}
    gc.collect()  # start every pass with the same garbage, so a collection lands in no pass by habit
    stamps = [time.perf_counter()]
    counts = [{name: 0 for name in calls}]
    for _ in matte_frames(timed, iter(clip.frames), clip.mask, warmup=state_warmup, mem_frames=mem_frames, pipeline=pipeline):
        stamps.append(time.perf_counter())
        counts.append({name: len(c) for name, c in calls.items()})
    gaps = np.diff(stamps).tolist()
    frame_calls = [{n: after[n] - before[n] for n in calls} for before, after in zip(counts[1:], counts[2:])]
    return {"modules": calls, "first_frame": gaps[0], "frames": gaps[1:], "wall": stamps[-1] - stamps[0],
            "frame_calls": frame_calls}


def _peak_rss_mb() -> float | None:
    """This process's resident-memory high-water mark in MiB.

    On Linux ``VmHWM`` (the high-water mark of this process's own address space). ``ru_maxrss``
    is not used there because Linux carries it across ``execve``: a worker started by vfork+exec
    would report its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0
    except ImportError:  # Windows
        try:
            import psutil

            return psutil.Process().memory_info().peak_wset / 2**20
        except Exception:
            return None


def _current_rss_mb() -> float | None:
    """Resident memory now in MiB (the baseline before a backend loads)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return None


def _declared_flops(name: str, module: Any) -> int | None:
    """FLOPs an exported module carries: ``module.manifest.flops[name]`` (Manifest or dict) or
    ``module.flops``. None when the module records none (the torch backend)."""
    manifest = getattr(module, "manifest", None)
    table = manifest.get("flops") if isinstance(manifest, Mapping) else getattr(manifest, "flops", None)
    if isinstance(table, Mapping) and isinstance(table.get(name), (int, float)) and table[name] > 0:
        return int(table[name])
    value = getattr(module, "flops", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def _runtime_threads(modules: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Intra-op thread counts of the runtimes in use (what really ran, not what was asked):
    torch's global setting when torch is loaded, and ONNX Runtime's from a module's session."""
    out: dict[str, int] = {}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        out["torch"] = int(torch.get_num_threads())
    for module in (modules or {}).values():
        session = getattr(module, "session", None)
        try:
            threads = session.get_session_options().intra_op_num_threads  # type: ignore[union-attr]
        except Exception:  # not an onnxruntime session
            continue
        if isinstance(threads, int) and threads > 0:
            out["onnxruntime"] = threads
    return out


class _LocalRunner:
    """Loads one configuration's modules in this process and times clip passes on request."""

    def __init__(self, config: BenchConfig, clip: ClipData, weights: str, threads: int | None, state_warmup: int, mem_frames: int):
        self.config = config
        self.clip = clip
        self.weights = weights
        self.threads = threads
        self.state_warmup = state_warmup
        self.mem_frames = mem_frames
        self.modules: dict[str, Module] | None = None

    def start(self) -> dict[str, Any]:
        from .api import load_modules, precision_plan

        dims, _ = clip_dims(*self.clip.size, self.mem_frames)
        baseline = _current_rss_mb()
        started = time.perf_counter()
        self.modules = load_modules(
            self.config.backend,
            self.weights,
            dims,
            precision=self.config.precision,
            placement=dict(self.config.placement),
            threads=self.threads,
        )
        load_s = time.perf_counter() - started
        declared = {n: f for n, m in self.modules.items() if (f := _declared_flops(n, m)) is not None}
        plan = precision_plan(self.config.backend, self.config.precision, dict(self.config.placement))
        return {"load_s": load_s, "baseline_rss_mb": baseline, "declared_flops": declared,
                "threads": _runtime_threads(self.modules),
                "resolved_precision": {name: chosen for name, (chosen, _) in plan.items()}}

    def run_pass(self) -> dict[str, Any]:
        assert self.modules is not None, "start() first"
        return time_clip_pass(self.modules, self.clip, self.state_warmup, self.mem_frames, self.config.pipeline)

    def finish(self) -> dict[str, Any]:
        threads = _runtime_threads(self.modules)
        self.modules = None
        gc.collect()
        return {"peak_rss_mb": _peak_rss_mb(), "threads": threads}

    def close(self) -> None:
        self.modules = None


class _RunnerError(MatanyoneError):
    """A configuration that failed to load or run; the others go on."""


def _exit_with_parent() -> None:
    """Make this worker die when the benchmarking process does.

    A worker only reads its pipe between passes, so a parent killed mid-pass (SIGTERM, a closed
    terminal) would otherwise leave it computing for minutes, skewing whatever runs next.
    """
    import multiprocessing
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker_main(conn: Any, args: tuple) -> None:
    """Entry point of a worker process: a _LocalRunner driven over a pipe."""
    _exit_with_parent()
    try:
        runner = _LocalRunner(*args)
        conn.send(("ok", runner.start()))
        while True:
            command = conn.recv()
            if command == "pass":
                conn.send(("ok", runner.run_pass()))
            elif command == "finish":
                conn.send(("ok", runner.finish()))
                return
            else:
                raise ValueError(f"unknown worker command {command!r}")
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        try:
            conn.send(("error", _error_text(exc), traceback.format_exc()))
        except (OSError, EOFError):
            pass
    finally:
        conn.close()


class _ProcessRunner:
    """A _LocalRunner in a spawned worker process (its own memory high-water mark, no shared state).

    ``spawn`` rather than ``fork``: a forked child would inherit the parent's threads and memory
    (torch's thread pool, the parent's RSS) and make both the timing and the peak dishonest.
    """

    def __init__(self, config: BenchConfig, clip: ClipData, weights: str, threads: int | None, state_warmup: int, mem_frames: int):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, (config, clip, weights, threads, state_warmup, mem_frames)),
            name=f"matanyone-bench {config.label}",
        )
        self._child = child

    def _reply(self) -> dict[str, Any]:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise _RunnerError(f"worker exited unexpectedly (exit code {self.process.exitcode})") from None
        if message[0] == "error":
            raise _RunnerError(message[1])
        return message[1]

    def start(self) -> dict[str, Any]:
        self.process.start()
        self._child.close()  # so a dead worker shows up as EOF here instead of a hang
        return self._reply()

    def run_pass(self) -> dict[str, Any]:
        self.conn.send("pass")
        return self._reply()

    def finish(self) -> dict[str, Any]:
        self.conn.send("finish")
        reply = self._reply()
        self.process.join(WORKER_JOIN_S)
        return reply

    def close(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()


def run_bench(
    configs: Sequence[BenchConfig],
    clip: ClipData,
    *,
    weights: str = DEFAULT_WEIGHTS,
    runs: int = 3,
    warmup_runs: int = 2,
    state_warmup: int = 1,
    threads: int | None = None,
    isolate: bool = True,
    prepare: bool = True,
    mem_frames: int = 5,
    log: Log | None = None,
) -> dict[str, Any]:
    """Measure every configuration on ``clip``, interleaved clip by clip; return the JSON report.

    With ``prepare`` (and ``isolate``) each configuration is first loaded once in a throwaway
    worker: an export or compilation on a cold artifact cache happens there (its time is reported
    as ``prepare_s``), so ``load_s`` and the peak memory of the measured worker describe a normal
    start with a warm cache rather than a one-time export that pulled in torch.

    A configuration that fails to load or run gets a result with an ``error`` and no numbers; the
    others are still measured. See the module docstring for the method.
    """
    if runs < 1:
        raise InputError(f"--runs must be at least 1, got {runs}")
    if warmup_runs < 0 or state_warmup < 0:
        raise InputError("--warmup-runs and --state-warmup must be 0 or more")
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        raise InputError(f"the same configuration is listed twice: {labels}")
    say = log or (lambda _m: None)
    env = environment(threads)
    dims, _ = clip_dims(*clip.size, mem_frames)

    def make_runner(config: BenchConfig, isolated: bool) -> Any:
        runner_cls = _ProcessRunner if isolated else _LocalRunner
        return runner_cls(config, clip, weights, threads, state_warmup, mem_frames)

    errors: dict[str, str] = {}
    prepared = _prepare(configs, make_runner, errors, say) if prepare and isolate else {}
    runners: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    try:
        for config in configs:  # one at a time: loads (and exports) must not compete for the CPU
            if config.label in errors:
                continue
            runner = make_runner(config, isolate)
            say(f"loading {config.label}")
            try:
                info[config.label] = runner.start()
                runners[config.label] = runner
                say(f"loaded {config.label} in {info[config.label]['load_s']:.1f} s")
            except Exception as exc:  # noqa: BLE001 - one configuration failing must not stop the rest
                errors[config.label] = _error_text(exc)
                say(f"{config.label} failed to load: {errors[config.label]}")
                runner.close()
        passes, first_pass = _interleave([c.label for c in configs], runners, warmup_runs, runs, errors, say)
        for label, runner in list(runners.items()):
            try:
                info[label].update(finish=runner.finish())
            except Exception as exc:  # noqa: BLE001
                errors[label] = _error_text(exc)
    finally:
        for runner in runners.values():
            runner.close()

    env["load_average_end"] = _load_average()
    results = []
    flops_cache: dict[str, tuple[dict[str, int] | None, str]] = {}
    for config in configs:
        base = {"backend": config.backend, "precision": config.precision,
                "resolved_precision": info.get(config.label, {}).get("resolved_precision"),
                "pipeline": config.pipeline, "label": config.label, "placement": dict(config.placement) or None}
        if config.label in errors:
            results.append({**base, "error": errors[config.label]})
            continue
        timed_names = module_order(n for p in passes[config.label] for n in p["modules"])
        flops, sources = resolve_flops(config, timed_names, dims, weights, info[config.label]["declared_flops"],
                                       flops_cache)
        summary = _summarize_config(passes[config.label], info[config.label], first_pass.get(config.label),
                                    flops, sources, isolate)
        summary["prepare_s"] = _round(prepared.get(config.label), 3)
        results.append({**base, **summary})
    settings = {
        "size": list(clip.size),
        "padded": [dims.height, dims.width],
        "mem_frames": mem_frames,
        "frames": int(clip.frames.shape[0]),
        "runs": runs,
        "warmup_runs": warmup_runs,
        "state_warmup": state_warmup,
        "weights": weights,
        "clip": clip.source,
        "threads": threads,
        "isolation": "one worker process per configuration" if isolate else "all configurations in one process",
        "prepared": bool(prepare and isolate),
        "interleave": "clip by clip, order rotated each round (A B C, B C A, ...)",
        "frame_definition": "wall time between consecutive mattes of matte_frames, frames 1..n-1 "
                            "(frame 0 = seed + first-frame predictions is reported as first_frame)",
        "load_definition": "wall time of load_modules, including any export or compilation the backend "
                           "did (long when its artifact cache was cold)",
    }
    return {"env": env, "settings": settings, "results": results, "ratios": compute_ratios(results)}


def _error_text(exc: BaseException) -> str:
    """Our errors carry a user-facing message; anything else is named by its type."""
    return str(exc) if isinstance(exc, MatanyoneError) else f"{type(exc).__name__}: {exc}"


def _prepare(
    configs: Sequence[BenchConfig], make_runner: Callable[[BenchConfig, bool], Any], errors: dict[str, str], say: Log
) -> dict[str, float]:
    """Load each configuration once in a throwaway worker; return the seconds each first load took.

    A configuration that cannot load is entered in ``errors`` here, before anything is measured.
    """
    prepared: dict[str, float] = {}
    for config in configs:
        say(f"preparing {config.label} (first load: exports or compiles if its cache is cold)")
        scout = make_runner(config, True)
        try:
            prepared[config.label] = scout.start()["load_s"]
            scout.finish()
        except Exception as exc:  # noqa: BLE001
            errors[config.label] = _error_text(exc)
            say(f"{config.label} failed to load: {errors[config.label]}")
        finally:
            scout.close()
    return prepared


def _interleave(
    labels: Sequence[str],
    runners: dict[str, Any],
    warmup_runs: int,
    runs: int,
    errors: dict[str, str],
    say: Log,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Round r runs one pass of every live configuration, starting at position r mod k.

    Returns the measured passes per label and the wall time of each label's first pass. A
    configuration that fails is closed, entered in ``errors`` and left out of later rounds.
    """
    passes: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    first_pass: dict[str, float] = {}
    total = warmup_runs + runs
    for round_index in range(total):
        active = [label for label in labels if label in runners]
        shift = round_index % max(1, len(active))
        for label in active[shift:] + active[:shift]:
            try:
                result = runners[label].run_pass()
            except Exception as exc:  # noqa: BLE001
                errors[label] = _error_text(exc)
                say(f"{label} failed: {errors[label]}")
                runners.pop(label).close()
                continue
            kind = "warm-up" if round_index < warmup_runs else "measured"
            say(f"round {round_index + 1}/{total} ({kind}) {label}: {result['wall']:.2f} s")
            first_pass.setdefault(label, result["wall"])
            if round_index >= warmup_runs:
                passes[label].append(result)
    return passes, first_pass


# ---------------------------------------------------------------------------------- summaries


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Median, 10th and 90th percentile and mean in milliseconds, and the count."""
    if not len(seconds):
        return {"median_ms": None, "p10_ms": None, "p90_ms": None, "mean_ms": None, "count": 0}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p10, median, p90 = np.percentile(ms, [10, 50, 90])
    return {"median_ms": round(float(median), 3), "p10_ms": round(float(p10), 3), "p90_ms": round(float(p90), 3),
            "mean_ms": round(float(ms.mean()), 3), "count": int(ms.size)}


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
    the module's backend's ``module_flops(dims, weights)``, then a count of the torch modules
    (``backends.torch.flops``). FLOPs belong to the network, not the runtime, so the torch count
    is valid for every backend; the source says which was used.
    """
    cache = {} if cache is None else cache
    flops: dict[str, int] = {}
    sources: dict[str, str] = {}
    for module in names:
        if module in declared:
            flops[module], sources[module] = int(declared[module]), "manifest"
            continue
        backend_name = config.backend_of(module)
        for key, counter in ((backend_name, _backend_flops), ("torch-count", _torch_flops)):
            if key not in cache:
                cache[key] = counter(backend_name, dims, weights)
            table, source = cache[key]
            if table and module in table:
                flops[module], sources[module] = int(table[module]), source
                break
    return flops, sources


def _backend_flops(backend_name: str, dims: Dims, weights: str) -> tuple[dict[str, int] | None, str]:
    try:
        counter = getattr(plugins.get_backend(backend_name), "module_flops", None)
        if counter is None:
            return None, ""
        return dict(counter(dims, weights)), f"{backend_name}.module_flops"
    except Exception:  # FLOPs are a nicety; a failing counter must not lose the timings
        return None, ""


def _torch_flops(_backend_name: str, dims: Dims, _weights: str) -> tuple[dict[str, int] | None, str]:
    try:
        from matanyone_engine.backends.torch.flops import count_module_flops
    except ImportError:
        return None, ""
    try:
        return count_module_flops(dims), "torch FlopCounterMode (same network)"
    except Exception:
        return None, ""


def _summarize_config(
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
        stats["calls_per_frame"] = round(float(np.mean([c.get(name, 0) for c in frame_calls])), 3) if frame_calls else None
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
            {"frame_median_ms": summarize(p["frames"])["median_ms"],
             "modules_median_ms": {n: summarize(p["modules"].get(n, []))["median_ms"] for n in names}}
            for p in passes
        ],
        "load_s": round(info["load_s"], 3),
        "first_pass_s": round(first_pass_s, 3) if first_pass_s is not None else None,
        "peak_rss_mb": _round(finish.get("peak_rss_mb"), 1),
        "baseline_rss_mb": _round(info.get("baseline_rss_mb"), 1),
        "peak_rss_scope": "this configuration's worker process" if isolate
        else "whole process, shared by every configuration measured so far (not attributable)",
        "gflops_per_frame": _round(gflops_frame, 3),
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


def _round(value: float | None, digits: int) -> float | None:
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
        pairs = list(zip(result["rounds"], ref["rounds"]))
        out["frame"][result["label"]] = _paired([(a["frame_median_ms"], b["frame_median_ms"]) for a, b in pairs])
        out["frame_of_medians"][result["label"]] = round(result["frame"]["median_ms"] / ref["frame"]["median_ms"], 4)
        shared = module_order(set(result["modules"]) & set(ref["modules"]))
        out["modules"][result["label"]] = {
            name: _paired([(a["modules_median_ms"].get(name), b["modules_median_ms"].get(name)) for a, b in pairs])
            for name in shared
        }
    return out


def _paired(pairs: Sequence[tuple[float | None, float | None]]) -> float | None:
    values = [a / b for a, b in pairs if a is not None and b]
    return round(float(np.median(values)), 4) if values else None


# -------------------------------------------------------------------------------- environment


def environment(threads: int | None = None) -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, memory, library versions, date, commit, load."""
    from importlib import metadata

    libraries: dict[str, str] = {}
    for dist in ("matanyone-engine", "numpy", "torch", "onnxruntime", "onnx", "coremltools",
                 "opencv-python-headless", "av"):
        try:
            libraries[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    commit, dirty = _git_state()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": _physical_cores(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads_requested": threads,
        "memory_total_gb": _memory_total_gb(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": libraries,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_start": _load_average(),
    }


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo, sysctl on macOS), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def _memory_total_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _load_average() -> list[float] | None:
    """1/5/15-minute load: a busy machine explains noisy numbers, so it goes in the report."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout."""
    root = source_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


# ---------------------------------------------------------------------------------- placement


def default_profile_path() -> Path:
    """Where ``--search`` writes the placement profile and ``--backend auto`` reads it."""
    try:
        from .cache import cache_root

        return cache_root() / PROFILE_NAME
    except ImportError:
        import platformdirs

        return Path(platformdirs.user_cache_dir("matanyone-engine")) / PROFILE_NAME


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
    best_single = min((r for r in candidates if r["frame"]["median_ms"]), key=lambda r: r["frame"]["median_ms"], default=None)
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


def write_profile(profile: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write the profile atomically (a concurrent ``run --backend auto`` never reads half a file)."""
    target = Path(path) if path is not None else default_profile_path()
    write_json(profile, target)
    return target


def load_profile(path: Path | None = None) -> dict[str, Any] | None:
    """The placement profile at ``path`` (default: the cache one), or None if there is none."""
    target = Path(path) if path is not None else default_profile_path()
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("placement"), dict) else None


def auto_placement(path: Path | None = None, fallback: str = "torch") -> tuple[str, dict[str, str]]:
    """(default backend, placement) for ``--backend auto``.

    From the newest profile written by ``--search``; modules placed on a backend that cannot run
    here (a profile copied from another machine) fall back to ``fallback``, and without a profile
    everything runs on ``fallback``.
    """
    profile = load_profile(path)
    if profile is None:
        return fallback, {}
    runnable = set(available_backends())
    placement = {m: b for m, b in profile["placement"].items() if m in MODULE_NAMES and b in runnable}
    choices = list(placement.values())
    default = max(set(choices), key=choices.count) if choices else fallback
    return default, {m: b for m, b in placement.items() if b != default}


# ------------------------------------------------------------------------------------ outputs


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """JSON with a trailing newline, written through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def shown_label(result: Mapping[str, Any]) -> str:
    """The result's label, with what ``fast`` became on each backend (``onnx-cpu/fast=fp32``)."""
    resolved = result.get("resolved_precision") or {}
    if result.get("precision") != "fast" or not resolved:
        return result["label"]
    chosen = ",".join(dict.fromkeys(resolved.values()))
    return result["label"].replace("/fast", f"/fast={chosen}", 1)


def render_table(report: Mapping[str, Any], console: Any = None) -> None:
    """The report on ``console`` (stdout by default): a per-frame summary table, a per-module
    table of medians, then the ratios. Two narrow tables rather than one wide one, so they stay
    readable in an 80-column terminal."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    settings, env = report.get("settings", {}), report.get("env", {})
    ratios = report.get("ratios", {})
    size = settings.get("size", ["?", "?"])
    title = (f"{size[0]}x{size[1]}, {settings.get('frames')} frames x {settings.get('runs')} runs, "
             f"{env.get('cpu_model')}, {env.get('cpus_usable')} cpus")
    summary = Table(title=title)
    for column in ("config", "ms/frame", "p10-p90", "fps", "ratio", "GFLOP/s", "load s", "peak MB"):
        summary.add_column(column, justify="left" if column == "config" else "right")
    names = module_order(n for r in report["results"] for n in r.get("modules", {}))
    per_module = Table(title="median ms per call")
    per_module.add_column("config")
    for name in names:
        per_module.add_column(name, justify="right")
    for result in report["results"]:
        if "error" in result:
            summary.add_row(result["label"], "[red]failed[/red]", "", "", "", "", "", "")
            continue
        frame = result["frame"]
        spread = "-" if frame.get("p10_ms") is None else f"{frame['p10_ms']:.0f}-{frame['p90_ms']:.0f}"
        summary.add_row(
            shown_label(result),
            _num(frame.get("median_ms"), 1),
            spread,
            _num(frame.get("fps"), 2),
            _num(ratios.get("frame", {}).get(result["label"]), 3),
            _num(result.get("achieved_gflops_per_s"), 1),
            _num(result.get("load_s"), 1),
            _num(result.get("peak_rss_mb"), 0),
        )
        per_module.add_row(result["label"], *[_num(result["modules"].get(n, {}).get("median_ms"), 1) for n in names])
    console.print(summary)
    console.print(per_module)
    for result in report["results"]:
        if "error" in result:
            console.print(f"[red]{result['label']} failed: {result['error']}[/red]")
    if len(ratios.get("frame", {})) > 1:
        parts = [f"{label}: {value:.3f}" for label, value in ratios["frame"].items() if value is not None]
        console.print(f"per-frame median / {ratios['reference']} (paired by round): " + ", ".join(parts))


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_plot(report: Mapping[str, Any], path: Path) -> Path:
    """A PNG bar chart: per-module and per-frame median latency for each configuration, with
    p10-p90 whiskers. Drawn on a bare Agg canvas, so no display and no pyplot state is touched."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install matplotlib") from None

    results = [r for r in report["results"] if "error" not in r]
    groups = [*module_order(n for r in results for n in r["modules"]), "frame"]
    figure = Figure(figsize=(max(8.0, 1.6 * len(groups) + 0.4 * len(results)), 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(results))
    for index, result in enumerate(results):
        stats = [result["modules"].get(g, {}) if g != "frame" else result["frame"] for g in groups]
        medians = np.array([s.get("median_ms") or 0.0 for s in stats])
        lower = medians - np.array([s.get("p10_ms") or 0.0 for s in stats])
        upper = np.array([s.get("p90_ms") or 0.0 for s in stats]) - medians
        positions = np.arange(len(groups)) + (index - (len(results) - 1) / 2) * width
        axes.bar(positions, medians, width, label=result["label"],
                 yerr=np.clip(np.stack([lower, upper]), 0, None), capsize=2)
    axes.set_xticks(np.arange(len(groups)), groups)
    axes.set_ylabel("median latency (ms), whiskers p10-p90")
    settings, env = report.get("settings", {}), report.get("env", {})
    size = settings.get("size", ["?", "?"])
    axes.set_title(f"MatAnyone modules at {size[0]}x{size[1]} on {env.get('cpu_model', '?')}", fontsize=10)
    if results:
        axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


# ------------------------------------------------------------------------------------ command


def plan_configs(
    backends: Sequence[str] | None,
    precisions: Sequence[str] | None,
    placement: str | None,
    pipeline: bool = False,
) -> list[BenchConfig]:
    """The configurations a ``bench`` command line asks for.

    Backends default to every available one; each runs in the asked precisions it offers.
    ``auto`` means the placement of the newest search profile. With ``--placement``, each listed
    backend (default: torch and the backends the placement names) runs on its own and the placed
    mix runs next to them (default backend for unplaced modules: the first listed), so the ratios
    show what the placement gains. ``pipeline`` adds each configuration once more with the image
    encoder pipelined, run interleaved with the plain one, so the ratio is the overlap's gain.
    """
    from dataclasses import replace

    from .api import parse_placement, resolve_backend

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
            default, auto_table = _auto_choice()
            configs += [make_config(default, p, auto_table) for p in precisions]
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
    return list(dict.fromkeys(configs))


def _auto_choice() -> tuple[str, dict[str, str]]:
    """What ``--backend auto`` resolves to: core.api's rule when it has one (so ``bench`` measures
    exactly what ``run --backend auto`` would run), else this module's auto_placement."""
    from . import api

    choose = getattr(api, "auto_choice", None)
    return choose() if choose is not None else auto_placement()


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


def bench(
    backend: Optional[List[str]] = typer.Option(
        None, "--backend", "-b", help="Backend to measure (repeatable; default: every available one; 'auto' = the search profile)."
    ),
    size: str = typer.Option(DEFAULT_SIZE, help="Frame size HxW the clip is resized to."),
    frames: int = typer.Option(8, help="Frames per clip pass (frame 0 seeds; the rest are timed per frame)."),
    runs: int = typer.Option(3, help="Measured clip passes per configuration."),
    warmup_runs: int = typer.Option(2, "--warmup-runs", help="Discarded clip passes per configuration first."),
    state_warmup: int = typer.Option(
        1, "--state-warmup", help="Extra first-frame predictions on frame 0 per pass (the demo uses 10)."
    ),
    threads: Optional[int] = typer.Option(None, help="CPU threads for every backend (default: the runtime's)."),
    weights: str = typer.Option(DEFAULT_WEIGHTS, "--weights", "-w", help="Checkpoint or seeded:v1-pm (timing is the same)."),
    precision: Optional[List[str]] = typer.Option(
        None, "--precision", "-p", help="Precision (repeatable, default fp32); one result per backend x precision."
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart of per-module medians here."),
    placement: Optional[str] = typer.Option(
        None, help="Also measure this mix (encoder=onnx-cpu,read=torch or a profile.json) next to the plain backends."
    ),
    search: bool = typer.Option(False, "--search", help="Measure every module on every backend; write the fastest placement."),
    profile_out: Optional[Path] = typer.Option(
        None, "--profile", help="Where --search writes the placement profile (default: the cache's placement.json)."
    ),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Clip to time (default: ../shared/data sample, else generated)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="First-frame mask for --clip (default: the clip's name .png)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use the generated clip even if the sample exists."),
    in_process: bool = typer.Option(
        False, "--in-process", help="Run every configuration in this process (peak memory is then the process's)."
    ),
    prepare: bool = typer.Option(
        True, "--prepare/--no-prepare", help="Load each configuration once first, so exports do not count as load."
    ),
    pipeline: bool = typer.Option(
        False, "--pipeline", help="Also measure each configuration with the next frame's image encoder overlapped."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Time each module and each frame per backend x precision through the real state machine."""
    from rich.console import Console

    log_console = Console(stderr=True)
    log: Log | None = None if quiet else (lambda m: log_console.print(f"[dim]{m}[/dim]"))
    try:
        report, profile_path = bench_command(
            backends=backend, size=size, frames=frames, runs=runs, warmup_runs=warmup_runs,
            state_warmup=state_warmup, threads=threads, weights=weights, precisions=precision,
            json_out=json_out, plot=plot, placement=placement, search=search, profile_out=profile_out,
            clip=clip, mask=mask, synthetic=synthetic, isolate=not in_process, prepare=prepare, log=log,
            pipeline=pipeline,
        )
    except MatanyoneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    render_table(report)
    if profile_path is not None:
        log_console.print(f"placement profile: {profile_path}")
    failed = [r["label"] for r in report["results"] if "error" in r]
    if failed and not search:
        typer.echo(f"error: {len(failed)} configuration(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(BackendError.exit_code)


def bench_command(
    *,
    backends: Sequence[str] | None = None,
    size: str = DEFAULT_SIZE,
    frames: int = 8,
    runs: int = 3,
    warmup_runs: int = 2,
    state_warmup: int = 1,
    threads: int | None = None,
    weights: str = DEFAULT_WEIGHTS,
    precisions: Sequence[str] | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
    placement: str | None = None,
    search: bool = False,
    profile_out: Path | None = None,
    clip: Path | None = None,
    mask: Path | None = None,
    synthetic: bool = False,
    isolate: bool = True,
    prepare: bool = True,
    log: Log | None = None,
    pipeline: bool = False,
) -> tuple[dict[str, Any], Path | None]:
    """Everything ``bench`` does except printing: returns (report, profile path or None).

    With ``search`` the configurations are every available backend (or the listed ones) at the
    first precision; the chosen mix, when it uses more than one backend, is then measured against
    the best single backend and the comparison is stored in the profile under ``verified``.
    """
    height, width = parse_size(size)
    if plot is not None:
        try:  # fail before minutes of measuring, not after
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install matplotlib") from None
    common = dict(weights=weights, runs=runs, warmup_runs=warmup_runs, state_warmup=state_warmup,
                  threads=threads, isolate=isolate, prepare=prepare, log=log)
    if search:
        chosen = list(dict.fromkeys(b for b in (backends or available_backends()) if b != "auto"))
        if not chosen:
            raise BackendError("no backend is available here; see `matanyone backends`")
        precision = (list(precisions or []) or ["fp32"])[0]
        from .api import resolve_backend

        for name in chosen:
            resolve_backend(name)
        configs = [make_config(name, precision) for name in chosen]
    else:
        configs = plan_configs(backends, precisions, placement, pipeline)
    data = load_clip((height, width), frames, clip, mask, synthetic)
    if log:
        log(f"clip: {data.source}, {frames} frames at {height}x{width}; "
            f"{len(configs)} configuration(s): {', '.join(c.label for c in configs)}")
    report = run_bench(configs, data, **common)
    profile_path: Path | None = None
    if search:
        profile = search_placement(report)
        mixed = set(profile["placement"].values())
        if len(mixed) > 1 and profile["best_single_backend"]:
            if log:
                log(f"verifying the mixed placement {profile['placement']} against {profile['best_single_backend']}")
            single = make_config(profile["best_single_backend"], profile["precision"])
            placed = make_config(profile["best_single_backend"], profile["precision"], profile["placement"])
            check = run_bench([single, placed], data, **common)
            profile["verified"] = {
                "frame_median_ms": {r["label"]: r.get("frame", {}).get("median_ms") for r in check["results"]},
                "ratio_placed_over_single": check["ratios"].get("frame", {}).get(placed.label),
            }
            report["verification"] = check
        report["placement_profile"] = profile
        profile_path = write_profile(profile, profile_out)
    if json_out is not None:
        write_json(report, json_out)
    if plot is not None:
        write_plot(report, plot)
    return report, profile_path


__all__ = [
    "BenchConfig",
    "ClipData",
    "TimedModule",
    "auto_placement",
    "available_backends",
    "backend_precisions",
    "bench",
    "declared_precisions",
    "bench_command",
    "compute_ratios",
    "default_profile_path",
    "environment",
    "find_sample_clip",
    "load_clip",
    "load_profile",
    "make_config",
    "parse_size",
    "plan_configs",
    "render_table",
    "resolve_flops",
    "run_bench",
    "search_placement",
    "summarize",
    "synthetic_clip",
    "time_clip_pass",
    "write_json",
    "write_plot",
    "write_profile",
]
