#!/usr/bin/env python
"""Where the torch backend's time goes, per operator, on steady frames of the real state machine.

    python benchmarks/profile_torch.py --size 432x768 --frames 6 [--precision bf16] [--top 30]

Loads the ``torch`` backend as a run would (load_modules), mattes the sample clip (or a generated
one) and records the steady frames (after frame 0) with torch.profiler: a table of operators by
self CPU time, and the time per module (record_function ranges around each module call). It is a
tool for finding what to optimise, not a benchmark: use ``matanyone bench`` for numbers.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="432x768")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from matanyone_engine.core.app.loading import load_modules
    from matanyone_engine.core.app.options import parse_size
    from matanyone_engine.core.bench.clip import load_clip
    from matanyone_engine.core.engine.driver import clip_dims, matte_frames

    height, width = parse_size(args.size)
    data = load_clip((height, width), args.frames, None, None, False)
    dims, _ = clip_dims(height, width)
    modules = load_modules(args.backend, "seeded:v1-pm", dims, precision=args.precision, threads=args.threads)

    class Named:
        def __init__(self, name, module):
            self.name, self.module, self.spec = name, module, module.spec
            self.array_home = getattr(module, "array_home", None)

        def __call__(self, **inputs):
            with record_function(f"module::{self.name}"):
                return self.module(**inputs)

    named = {n: Named(n, m) for n, m in modules.items()}
    frames = iter(matte_frames(named, iter(data.frames), data.mask, warmup=1))
    next(frames)  # frame 0 (seed and first-frame predictions) is not what a clip spends its time on
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        steady = sum(1 for _ in frames)
    print(f"{steady} steady frames at {height}x{width}, precision {args.precision}, threads {torch.get_num_threads()}")
    events = prof.key_averages()
    modules_ms = {e.key: e.cpu_time_total / 1e3 / steady for e in events if e.key.startswith("module::")}
    for key, ms in sorted(modules_ms.items(), key=lambda kv: -kv[1]):
        print(f"  {key:24s} {ms:8.1f} ms/frame")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    shapes = prof.key_averages(group_by_input_shape=True)
    print(shapes.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
