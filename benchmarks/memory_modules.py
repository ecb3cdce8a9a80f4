#!/usr/bin/env python
"""Peak memory of each module at one size: what a module call adds to the process's resident set.

    python benchmarks/memory_modules.py --backend torch --size 1088x1920
    python benchmarks/memory_modules.py --backend onnx-cpu --size 2160x3840 --json out.json

For each module (declared inputs of realistic range, exporters/onnx/inputs.synthetic_inputs) the
process's peak resident set (Linux ``VmHWM``) is reset to the current resident set through
``/proc/self/clear_refs`` before the call and read after it, so ``peak_mb`` is what that call
needed on top of what was already held, and ``retained_mb`` what it kept afterwards (an ONNX
Runtime session keeps its arena). The ONNX artifacts are exported once for the size into
``--artifacts`` (default: a folder under the system temp dir), without validation: this measures
memory, not accuracy. Each module runs ``--calls`` times; the largest peak is reported.

Linux only (VmHWM, clear_refs). Heavy at 4K: run it under ``flock /work/.heavy.lock``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024.0


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024.0


def reset_peak() -> None:
    """Set VmHWM to the current VmRSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def load(backend: str, dims: Any, artifacts: Path | None, threads: int | None) -> dict[str, Any]:
    from matanyone_engine.core.app.loading import load_modules

    options: dict[str, Any] = {}
    if backend.startswith("onnx"):
        directory = artifacts or Path(tempfile.gettempdir()) / f"matanyone-mem-{dims.height}x{dims.width}"
        if not (directory / "manifest.json").is_file():
            export_unvalidated(dims, directory)
        options["artifacts"] = str(directory)
    return load_modules(backend, "seeded:v1-pm", dims, threads=threads, options=options)


def export_unvalidated(dims: Any, directory: Path) -> None:
    """ONNX artifacts for ``dims`` traced on declared-range inputs, in a child process (so the
    export's own memory is not part of this one's)."""
    import subprocess

    code = (
        "import sys; from pathlib import Path\n"
        "from matanyone_engine.core.engine.spec import Dims\n"
        "from matanyone_engine.exporters.onnx.exporter import export_torch_modules\n"
        "from matanyone_engine.exporters.torch_modules import resolve_torch_modules\n"
        "from matanyone_engine.exporters.onnx.inputs import synthetic_inputs\n"
        f"d = Dims({dims.height}, {dims.width}, {dims.mem_frames})\n"
        "m, digest = resolve_torch_modules('seeded:v1-pm')\n"
        "sets = {k: [v] for k, v in synthetic_inputs(d).items()}\n"
        "export_torch_modules(m, d, Path(sys.argv[1]), weights='seeded:v1-pm', weights_digest=digest,"
        " validate=False, input_sets=sets)\n"
    )
    print(f"exporting ONNX at {dims.height}x{dims.width} into {directory} (no validation)", file=sys.stderr)
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True)


def measure(backend: str, size: tuple[int, int], calls: int, artifacts: Path | None, threads: int | None) -> dict:
    import numpy as np

    from matanyone_engine.core.engine.padding import padded_size
    from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, Dims
    from matanyone_engine.core.engine.tiling import read_tiles
    from matanyone_engine.exporters.onnx.inputs import synthetic_inputs

    dims = Dims(*padded_size(*size), 5)
    start_rss = rss_mb()
    modules = load(backend, dims, artifacts, threads)
    loaded_rss = rss_mb()
    inputs = synthetic_inputs(dims)
    gc.collect()
    held_rss = rss_mb()
    result: dict[str, Any] = {
        "backend": backend,
        "size": list(size),
        "padded": [dims.height, dims.width],
        "read_tiles": len(read_tiles(dims.tokens_per_frame, dims.symbols["N"])),
        "load_mb": round(loaded_rss - start_rss, 1),
        "inputs_mb": round(held_rss - loaded_rss, 1),
        "modules": {},
    }
    for name in [n for n in ALL_MODULE_SPECS if n in modules]:
        declared = sum(
            int(np.prod(t.resolve(dims))) * 4 for t in (*ALL_MODULE_SPECS[name].inputs, *ALL_MODULE_SPECS[name].outputs)
        )
        worst, seconds = 0.0, []
        for _ in range(calls):
            gc.collect()
            before = rss_mb()
            reset_peak()
            started = time.perf_counter()
            outputs = modules[name](**inputs[name])
            seconds.append(time.perf_counter() - started)
            worst = max(worst, peak_mb() - before)
            del outputs
        gc.collect()
        result["modules"][name] = {
            "peak_mb": round(worst, 1),
            "retained_mb": round(rss_mb() - before, 1),
            "declared_io_mb": round(declared / 2**20, 1),
            "seconds": round(min(seconds), 2),
        }
        print(f"{backend} {dims.height}x{dims.width} {name}: {result['modules'][name]}", file=sys.stderr, flush=True)
    result["process_peak_mb"] = round(peak_mb(), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--size", default="1088x1920", help="HxW")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--artifacts", type=Path, help="ONNX artifact folder (exported there when absent)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    result = measure(args.backend, (height, width), args.calls, args.artifacts, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
