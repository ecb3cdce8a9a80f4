"""The up-front memory estimate and its refusal, out-of-memory errors as one line, and the export
capture that keeps large inputs out of memory. Budgets are forced small so that small clips
exercise the same code a 4K clip on a 24 GB machine takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.app import memory
from matanyone_engine.core.app.loading import module_memory_profiles
from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.errors import MemoryLimitError, is_out_of_memory
from matanyone_engine.core.media.video import scaled_size


@pytest.fixture()
def clip(tmp_path: Path) -> tuple[Path, Path]:
    path = write_clip(tmp_path / "clip.mp4", frames=3, height=96, width=160)
    mask = np.zeros((96, 160), np.uint8)
    mask[20:80, 40:120] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return path, tmp_path / "mask.png"


def test_estimate_grows_with_the_size_and_the_read_stays_bounded() -> None:
    """Without tiling the 4K read alone would be 21 GB; the estimate stays near 10 GB, and it grows
    with the pixel count (not its square) from 1080p to 4K."""
    profiles = module_memory_profiles("torch")
    sizes = [(432, 768), (1080, 1920), (2160, 3840)]
    needed = [memory.estimate(h, w, profiles).needed_bytes for h, w in sizes]
    assert needed == sorted(needed)
    assert needed[2] < 12 * memory.GB
    assert needed[2] / needed[1] < 4.5
    read = memory.module_bytes(profiles["read"], "read", memory.Dims(2160, 3840, 5))
    assert read < 1.5 * memory.GB


def test_parse_bytes() -> None:
    assert memory.parse_bytes("10G") == 10 * 2**30
    assert memory.parse_bytes("800M") == 800 * 2**20
    assert memory.parse_bytes("1.5GB") == int(1.5 * 2**30)
    assert memory.parse_bytes("2GiB") == 2 * 2**30
    assert memory.parse_bytes("12345") == 12345
    with pytest.raises(MemoryLimitError, match="MATANYONE_MEMORY_LIMIT"):
        memory.parse_bytes("lots")


def test_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.LIMIT_ENV, "3G")
    assert memory.available_bytes() == (3 * 2**30, "MATANYONE_MEMORY_LIMIT=3G")
    monkeypatch.delenv(memory.LIMIT_ENV)
    available, source = memory.available_bytes()
    assert available > 0 and source


def test_too_large_is_refused_before_the_model_loads(clip, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit sits between what the clip's own size needs and what a 48-pixel one needs: the
    run is refused before any model loads, with the size that would fit."""
    from matanyone_engine.core.app import api

    profiles = module_memory_profiles("torch")
    full = memory.estimate(96, 160, profiles).needed_bytes
    small = memory.estimate(*scaled_size(96, 160, 48), profiles).needed_bytes
    limit = (full + small) // 2
    monkeypatch.setenv(memory.LIMIT_ENV, str(limit))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the memory check")

    monkeypatch.setattr(api, "load_modules", no_loading)
    with pytest.raises(MemoryLimitError) as caught:
        next(api.matte(clip[0], clip[1], backend="torch"))
    message = str(caught.value)
    assert "\n" not in message
    assert "160x96 run with torch needs about" in message and "this machine has" in message
    fitting = int(message.split("--max-size ")[1].split()[0])
    assert 48 <= fitting < 96
    assert memory.estimate(*scaled_size(96, 160, fitting), profiles).needed_bytes <= limit
    assert memory.estimate(*scaled_size(96, 160, fitting + 1), profiles).needed_bytes > limit


def test_cli_refusal_is_one_line_and_writes_nothing(clip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.LIMIT_ENV, "100M")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(clip[0]), "--mask", str(clip[1]), "-o", str(out), "--weights", "seeded:v1-pm", "-b", "torch"]
    )
    assert result.exit_code == MemoryLimitError.exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs about" in errors[0] and "no --max-size fits" in errors[0]
    assert "Traceback" not in result.output
    assert not (out / "clip").exists()


def test_bench_refuses_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    from matanyone_engine.core.bench.command import bench_command

    monkeypatch.setenv(memory.LIMIT_ENV, "100M")
    with pytest.raises(MemoryLimitError, match="needs about"):
        bench_command(backends=["torch"], size="2160x3840", frames=2, synthetic=True)


def test_out_of_memory_in_a_module_is_one_line_and_leaves_no_output(
    clip, tmp_path: Path, torch_modules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's allocator failure inside the decoder (as at 4K before tiling) becomes the typed
    one-line error; the CLI prints it and exits non-zero with nothing written."""
    from matanyone_engine.core.app import api

    decoder = torch_modules["decoder"]

    def failing_stage(*args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 20995200000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(decoder, "stage", failing_stage)
    with pytest.raises(MemoryLimitError, match="ran out of memory in the decoder module"):
        decoder(**{n: np.zeros(t.resolve(memory.Dims(32, 32, 5)), np.float32) for n, t in _spec_inputs(decoder)})

    real_matte = api.matte
    monkeypatch.setattr(api, "matte", lambda *a, **k: real_matte(*a, modules=torch_modules, **k))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(clip[0]), "--mask", str(clip[1]), "-o", str(out), "--warmup", "0", "--outputs", "alpha,rgba"]
    )
    assert result.exit_code == MemoryLimitError.exit_code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ran out of memory in the decoder module" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (out / "clip").exists()
    assert sorted(p.name for p in out.rglob("*")) == []


def _spec_inputs(module):
    return [(t.name, t) for t in module.spec.inputs]


def test_allocation_failures_are_recognised() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_onnx_sessions_have_no_per_session_arena() -> None:
    ort = pytest.importorskip("onnxruntime")
    from matanyone_engine.backends.onnx.runtime import _session_options

    assert _session_options(ort, 1, ort.GraphOptimizationLevel.ORT_ENABLE_ALL).enable_cpu_mem_arena is False


def test_large_export_capture_keeps_one_set_per_module_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above LARGE_PIXELS the captured inputs are one set per module, memory-mapped from files that
    are already gone, and the capture clip is shorter."""
    from matanyone_engine.core.engine.spec import Dims
    from matanyone_engine.exporters.onnx import inputs
    from matanyone_engine.exporters.torch_modules import resolve_torch_modules

    dims = Dims(64, 96, 2)
    modules, _ = resolve_torch_modules("standin:v1")
    normal, _ = inputs.capture_inputs(modules, dims)
    monkeypatch.setattr(inputs, "LARGE_PIXELS", 100)
    large, _ = inputs.capture_inputs(modules, dims)
    assert {len(v) for v in normal.values()} == {2}
    assert {len(v) for v in large.values()} == {1}
    decoder = large["decoder"][0]
    assert all(isinstance(v, np.memmap) for v in decoder.values())
    assert all(np.isfinite(v).all() for v in decoder.values())
    assert not list(Path(decoder["f1"].filename).parent.glob("*.npy"))
