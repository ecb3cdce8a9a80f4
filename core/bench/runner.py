"""Running the measurement: one worker per configuration, clip passes interleaved round by round,
every module call timed through the real state machine (see ``core/bench/__init__.py`` for the
method)."""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..app.loading import load_modules, precision_plan
from ..app.models import ModelFolder
from ..engine.driver import clip_dims, matte_subjects
from ..engine.errors import InputError, MatanyoneError
from ..engine.protocol import Module
from ..engine.tiling import read_tiles
from .clip import ClipData
from .configs import BenchConfig, module_order
from .environment import environment, load_average
from .stats import compute_ratios, resolve_flops, round_or_none, summarize_config

Log = Callable[[str], None]
DEFAULT_WEIGHTS = "seeded:v1-pm"
#: Seconds to wait for a worker to exit after it was told to finish.
WORKER_JOIN_S = 30.0


class TimedModule:
    """A Module that records the wall time of each call into ``sink`` (seconds).

    The proxy keeps ``spec`` and ``array_home`` so the state machine cannot tell it from the
    module it wraps (a device module's state stays on its device here too). A numpy module has
    finished when it returns; a device module may still be computing asynchronously (CUDA), so
    its time is charged to whichever later call waits for it, and the frame time, which ends
    when the alpha reaches the host, is the full cost.
    """

    def __init__(self, module: Module, sink: list[float]):
        self.module = module
        self.spec = module.spec
        self.sink = sink
        home = getattr(module, "array_home", None)
        if home is not None:
            self.array_home = home

    def __call__(self, **inputs: Any) -> Mapping[str, Any]:
        start = time.perf_counter()
        outputs = self.module(**inputs)
        self.sink.append(time.perf_counter() - start)
        return outputs


def time_clip_pass(
    modules: Mapping[str, Module],
    clip: ClipData,
    state_warmup: int = 1,
    mem_frames: int = 5,
    pipeline: bool = False,
    subjects: int = 1,
) -> dict[str, Any]:
    """One pass of the state machine over the clip with every module timed.

    Every module the backend handed over is wrapped, optional variants included, so the state
    machine takes the same path it takes in real use. Returns seconds: ``modules`` (every call of
    each module), ``frames`` (steady-state frames 1..n-1, between consecutive mattes),
    ``first_frame`` (frame 0: seed plus 1 + state_warmup first-frame predictions), ``wall`` (the
    whole pass), and ``frame_calls``: how often each module ran in each steady-state frame (the
    mix differs between memory and other frames, and FLOPs per frame follow from it). With
    ``pipeline`` the encoder of frame t+1 overlaps frame t, so module times include contention and
    only the frame times say what the overlap gains. With ``subjects`` > 1 the clip's mask seeds that
    many subjects (timing depends on shapes, not on which pixels the masks cover); a frame is then
    every subject's matte of it.
    """
    calls: dict[str, list[float]] = {name: [] for name in modules}
    timed = {name: TimedModule(module, calls[name]) for name, module in modules.items()}
    gc.collect()  # start every pass with the same garbage, so a collection lands in no pass by habit
    stamps = [time.perf_counter()]
    counts = [dict.fromkeys(calls, 0)]
    masks = {str(k): clip.mask for k in range(1, subjects + 1)}
    for _ in matte_subjects(
        timed, iter(clip.frames), masks, warmup=state_warmup, mem_frames=mem_frames, pipeline=pipeline
    ):
        stamps.append(time.perf_counter())
        counts.append({name: len(c) for name, c in calls.items()})
    gaps = np.diff(stamps).tolist()
    frame_calls = [
        {n: after[n] - before[n] for n in calls} for before, after in zip(counts[1:], counts[2:], strict=False)
    ]
    return {
        "modules": calls,
        "first_frame": gaps[0],
        "frames": gaps[1:],
        "wall": stamps[-1] - stamps[0],
        "frame_calls": frame_calls,
    }


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

    def __init__(
        self,
        config: BenchConfig,
        clip: ClipData,
        weights: str,
        threads: int | None,
        state_warmup: int,
        mem_frames: int,
        models: ModelFolder | None = None,
    ):
        self.config = config
        self.clip = clip
        self.weights = weights
        self.threads = threads
        self.state_warmup = state_warmup
        self.mem_frames = mem_frames
        self.models = models
        self.modules: dict[str, Module] | None = None

    def start(self) -> dict[str, Any]:
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
            models=self.models,
        )
        load_s = time.perf_counter() - started
        declared = {n: f for n, m in self.modules.items() if (f := _declared_flops(n, m)) is not None}
        if self.models is not None:  # the folder's precision, whatever the backend would choose
            plan = {self.config.backend: (self.models.manifest.precision, "the model folder's")}
        else:
            plan = precision_plan(self.config.backend, self.config.precision, dict(self.config.placement))
        return {
            "load_s": load_s,
            "baseline_rss_mb": baseline,
            "declared_flops": declared,
            "threads": _runtime_threads(self.modules),
            "resolved_precision": {name: chosen for name, (chosen, _) in plan.items()},
        }

    def run_pass(self) -> dict[str, Any]:
        assert self.modules is not None, "start() first"
        return time_clip_pass(
            self.modules, self.clip, self.state_warmup, self.mem_frames, self.config.pipeline, self.config.subjects
        )

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
    except BaseException as exc:
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

    def __init__(
        self,
        config: BenchConfig,
        clip: ClipData,
        weights: str,
        threads: int | None,
        state_warmup: int,
        mem_frames: int,
        models: ModelFolder | None = None,
    ):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, (config, clip, weights, threads, state_warmup, mem_frames, models)),
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
    models: ModelFolder | None = None,
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
    tiles = read_tiles(dims.tokens_per_frame, dims.symbols["N"])

    def make_runner(config: BenchConfig, isolated: bool) -> Any:
        runner_cls = _ProcessRunner if isolated else _LocalRunner
        return runner_cls(config, clip, weights, threads, state_warmup, mem_frames, models)

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
            except Exception as exc:
                errors[config.label] = _error_text(exc)
                say(f"{config.label} failed to load: {errors[config.label]}")
                runner.close()
        passes, first_pass = _interleave([c.label for c in configs], runners, warmup_runs, runs, errors, say)
        for label, runner in list(runners.items()):
            try:
                info[label].update(finish=runner.finish())
            except Exception as exc:
                errors[label] = _error_text(exc)
    finally:
        for runner in runners.values():
            runner.close()

    env["load_average_end"] = load_average()
    results = []
    flops_cache: dict[str, tuple[dict[str, int] | None, str]] = {}
    for config in configs:
        base = {
            "backend": config.backend,
            "precision": config.precision,
            "resolved_precision": info.get(config.label, {}).get("resolved_precision"),
            "pipeline": config.pipeline,
            "subjects": config.subjects,
            "label": config.label,
            "placement": dict(config.placement) or None,
        }
        if config.label in errors:
            results.append({**base, "error": errors[config.label]})
            continue
        timed_names = module_order(n for p in passes[config.label] for n in p["modules"])
        flops, sources = resolve_flops(
            config, timed_names, dims, weights, info[config.label]["declared_flops"], flops_cache
        )
        summary = summarize_config(
            passes[config.label], info[config.label], first_pass.get(config.label), flops, sources, isolate
        )
        summary["prepare_s"] = round_or_none(prepared.get(config.label), 3)
        results.append({**base, **summary})
    settings = {
        "size": list(clip.size),
        "padded": [dims.height, dims.width],
        "read_tiles": len(tiles),
        "read_tile_rows": max(stop - start for start, stop in tiles),
        "mem_frames": mem_frames,
        "frames": int(clip.frames.shape[0]),
        "runs": runs,
        "warmup_runs": warmup_runs,
        "state_warmup": state_warmup,
        "weights": weights,
        "models": str(models.directory) if models is not None else None,
        "clip": clip.source,
        "threads": threads,
        "isolation": "one worker process per configuration" if isolate else "all configurations in one process",
        "prepared": bool(prepare and isolate),
        "interleave": "clip by clip, order rotated each round (A B C, B C A, ...)",
        "frame_definition": "wall time between consecutive mattes of matte_subjects (every subject's), frames 1..n-1 "
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
        except Exception as exc:
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
            except Exception as exc:
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
