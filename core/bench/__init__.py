"""The benchmark: latency per module x backend x precision, and automatic per-module placement.

What is measured, and why this way:

* **The real state machine on a real clip.** Module latencies depend on the data only through
  shapes, but the state machine decides how often each module runs (read_first only on first-frame
  predictions, the deep mask encoder on memory frames) and adds its own numpy work, so a frame's
  cost is only honest when measured through ``core.engine.driver.matte_frames``. The clip is the MatAnyone
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
shallow ``mask_value`` variant replaces most mask-encoder calls is credited for it). Because every
module call already pays its own numpy boundary (inputs in, outputs out), a mixed placement costs
the sum of its modules' times and nothing more: there is no hidden transfer between backends to
account for. The chosen mix is
then measured once against the best single backend to confirm, and written as a profile that
``run --placement PROFILE.json`` and ``--backend auto`` read (``core.app.loading``).

No torch is imported here: FLOP counts come from the backends (``module_flops``) or manifests.

Modules: ``configs`` (what to measure), ``clip`` (what it is fed), ``runner`` (workers and
interleaved passes), ``stats`` (medians, FLOPs, ratios), ``environment`` (the machine),
``placement`` (the search), ``report`` (table, JSON, plot), ``command`` (``matanyone bench``).
"""

from .clip import ClipData, load_clip
from .command import bench, bench_command
from .configs import BenchConfig, available_backends, backend_precisions, declared_precisions, make_config, plan_configs
from .environment import cpu_model, environment
from .placement import search_configs, search_placement, verification_configs
from .report import render_table, shown_label, write_json, write_plot
from .runner import TimedModule, run_bench, time_clip_pass
from .stats import compute_ratios, resolve_flops, summarize

__all__ = [
    "BenchConfig",
    "ClipData",
    "TimedModule",
    "available_backends",
    "backend_precisions",
    "bench",
    "bench_command",
    "compute_ratios",
    "cpu_model",
    "declared_precisions",
    "environment",
    "load_clip",
    "make_config",
    "plan_configs",
    "render_table",
    "resolve_flops",
    "run_bench",
    "search_configs",
    "search_placement",
    "shown_label",
    "summarize",
    "time_clip_pass",
    "verification_configs",
    "write_json",
    "write_plot",
]
