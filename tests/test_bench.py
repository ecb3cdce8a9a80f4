"""Smoke tests of the benchmark and the placement search.

Benchmarks are never asserted by timed unit tests: these check that the machinery runs end to end
(real state machine, worker processes, JSON, plot, profile) and that the report has the promised
shape, never how fast anything is. Tiny sizes keep the whole file well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from matanyone_engine.core import bench as B
from matanyone_engine.core import hookimpl, plugins
from matanyone_engine.core.app.loading import (
    AUTO_PREFERENCE,
    auto_choice,
    default_profile_path,
    parse_placement,
    runs_here,
)
from matanyone_engine.core.engine.driver import clip_dims
from matanyone_engine.core.engine.protocol import LoadRequest
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, MODULE_SPECS, ModuleSpec
from matanyone_engine.core.media.synthetic import moving_shapes

TINY = [
    "--size",
    "64x96",
    "--frames",
    "2",
    "--warmup-runs",
    "1",
    "--runs",
    "1",
    "--state-warmup",
    "0",
    "--synthetic",
    "--threads",
    "1",
]  # one thread: a busy CI machine slows 2-thread torch (barrier waits) by 100x
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RESULT_KEYS = {
    "backend",
    "precision",
    "modules",
    "frame",
    "load_s",
    "peak_rss_mb",
    "gflops_per_frame",
    "achieved_gflops_per_s",
}
STATS_KEYS = {"median_ms", "p10_ms", "p90_ms", "count"}


def _app() -> typer.Typer:
    """The command wired the way core/cli.py wires it, plus a second command so typer keeps
    the sub-command name (a one-command app would take the options at the top level)."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("bench")(B.bench)
    app.command("noop")(lambda: None)
    return app


# --- fake numpy backends: registered in this process only, so used with --in-process -------------


class _ZeroModule:
    """Outputs of the declared shapes, all zeros except a unit area for object summaries."""

    def __init__(self, spec: ModuleSpec, request: LoadRequest):
        self.spec = spec
        self.shapes = spec.output_shapes(request.dims)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        assert set(inputs) == set(self.spec.input_names)
        out = {name: np.zeros(shape, np.float32) for name, shape in self.shapes.items()}
        if "obj_summary" in out:
            out["obj_summary"][..., -1] = 1.0
        return out


class _FakeBackend:
    description = "zeros, for tests"

    def __init__(self, name: str, variants: bool = False):
        self.name = name
        self.variants = variants

    def available(self) -> tuple[bool, str]:
        return True, ""

    def load(self, request: LoadRequest):
        names = ALL_MODULE_SPECS if self.variants else MODULE_SPECS
        return {name: _ZeroModule(ALL_MODULE_SPECS[name], request) for name in names}


class _FakePlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(_FakeBackend("fake-a"))
        register(_FakeBackend("fake-b", variants=True))


@pytest.fixture
def fake_backends() -> Iterator[None]:
    manager = plugins.get_plugin_manager()
    manager.register(_FakePlugin(), name="test-bench-fakes")
    try:
        yield
    finally:
        manager.unregister(name="test-bench-fakes")


# --- end to end ---------------------------------------------------------------------------------


def test_bench_torch_worker_writes_json_and_png(tmp_path: Path):
    """The real torch backend in a worker process, through the command line."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(
        _app(),
        [
            "bench",
            "--backend",
            "torch",
            "--precision",
            "fp32",
            *TINY,
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert {"env", "settings", "results", "ratios"} <= set(report)
    assert {"cpu_model", "cpu_count_logical", "libraries", "date", "git_commit"} <= set(report["env"])
    (only,) = report["results"]
    assert RESULT_KEYS <= set(only)
    assert set(MODULE_NAMES) <= set(only["modules"])  # plus any variant the backend offers (mask_value)
    for _name, stats in only["modules"].items():
        assert STATS_KEYS <= set(stats)
        assert stats["count"] >= 1
    assert only["frame"]["count"] == 1  # 2 frames: frame 0 seeds, frame 1 is timed
    assert only["peak_rss_mb"] > only["baseline_rss_mb"] > 0  # the worker's own high-water mark
    assert only["gflops_per_frame"] > 0  # counted on the torch modules
    assert only["prepare_s"] > 0 and only["load_s"] > 0  # a throwaway load first, then the measured one
    assert report["ratios"]["reference"] == "torch/fp32"
    assert out_png.read_bytes()[:8] == PNG_SIGNATURE


def test_two_backends_give_ratios_in_process(tmp_path: Path, fake_backends):
    out_json = tmp_path / "r.json"
    result = CliRunner().invoke(
        _app(), ["bench", "-b", "fake-a", "-b", "fake-b", *TINY, "--in-process", "--json", str(out_json), "-q"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert [r["label"] for r in report["results"]] == ["fake-a/fp32", "fake-b/fp32"]
    assert report["ratios"]["reference"] == "fake-a/fp32"
    assert set(report["ratios"]["frame"]) == {"fake-a/fp32", "fake-b/fp32"}
    assert report["ratios"]["frame"]["fake-a/fp32"] == 1.0
    assert set(report["ratios"]["modules"]["fake-b/fp32"]) == set(MODULE_NAMES)
    assert "whole process" in report["results"][0]["peak_rss_scope"]


def test_search_writes_a_profile_that_parse_placement_reads(tmp_path: Path, fake_backends):
    profile = tmp_path / "placement.json"
    result = CliRunner().invoke(
        _app(),
        ["bench", "-b", "fake-a", "-b", "fake-b", *TINY, "--in-process", "--search", "--profile", str(profile), "-q"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(profile.read_text())
    assert set(data["placement"]) == set(MODULE_NAMES)
    assert set(data["placement"].values()) <= {"fake-a", "fake-b"}
    assert set(data["measured"]) == {"fake-a", "fake-b"}
    assert {"env", "precision", "settings"} <= set(data)
    assert parse_placement(str(profile)) == data["placement"]
    choice = auto_choice(profile)  # what `run --backend auto` and `bench -b auto` call
    assert choice.backend in {"fake-a", "fake-b"}
    assert {**dict.fromkeys(MODULE_NAMES, choice.backend), **choice.placement} == data["placement"]
    assert str(profile) in choice.reason


def test_placement_option_adds_the_mix_next_to_the_plain_backends(fake_backends):
    configs = B.plan_configs(None, ["fp32"], "encoder=fake-b")
    assert [c.label for c in configs] == ["torch/fp32", "fake-b/fp32", "torch/fp32 [encoder=fake-b]"]
    assert configs[-1].module_backends()["encoder"] == "fake-b"
    assert configs[-1].module_backends()["decoder"] == "torch"


def test_unknown_backend_is_a_one_line_error():
    result = CliRunner().invoke(_app(), ["bench", "-b", "no-such-backend", *TINY, "-q"])
    assert result.exit_code == 4
    assert "no-such-backend" in result.output


# --- pure functions -----------------------------------------------------------------------------


def test_summarize_and_paired_ratios():
    stats = B.summarize([0.010, 0.020, 0.030])
    assert stats["median_ms"] == pytest.approx(20.0) and stats["count"] == 3
    assert B.summarize([])["median_ms"] is None

    def result(label: str, frames: list[float]) -> dict:
        return {
            "label": label,
            "frame": {"median_ms": float(np.median(frames))},
            "modules": dict.fromkeys(MODULE_NAMES),
            "rounds": [{"frame_median_ms": f, "modules_median_ms": dict.fromkeys(MODULE_NAMES, f)} for f in frames],
        }

    # Round 2 ran twice as slow for both (drift): paired ratios still say exactly 2.
    ratios = B.compute_ratios(
        [result("a", [10.0, 20.0, 10.0]), result("b", [20.0, 40.0, 20.0]), {"label": "c", "error": "x"}]
    )
    assert ratios["reference"] == "a"
    assert ratios["frame"] == {"a": 1.0, "b": 2.0}
    assert ratios["modules"]["b"]["read"] == 2.0


def test_synthetic_clip_and_default_profile_path(monkeypatch, tmp_path: Path):
    frames, mask = moving_shapes(32, 48, 3)
    assert frames.shape == (3, 32, 48, 3) and frames.dtype == np.uint8
    assert mask.shape == (32, 48) and set(np.unique(mask)) == {0, 255}
    assert not np.array_equal(frames[0], frames[2])  # the shapes move
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    assert default_profile_path() == tmp_path / "placement.json"
    choice = auto_choice()  # no profile yet: the first of the fixed preference that runs here
    assert choice.placement == {} and "no placement profile" in choice.reason
    assert choice.backend == next(n for n in AUTO_PREFERENCE if runs_here(n))


def test_run_table_markdown_and_readme_markers(tmp_path: Path):
    """The README updater replaces only between the markers, and only when both exist."""
    spec = importlib.util.spec_from_file_location(
        "run_table", Path(__file__).resolve().parents[1] / "benchmarks" / "run_table.py"
    )
    run_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_table)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- perf-table:start -->\nold\n<!-- perf-table:end -->\noutro\n")
    assert run_table.update_readme(readme, "| new |\n")
    text = readme.read_text()
    assert text.startswith("intro\n<!-- perf-table:start -->\n") and text.endswith("<!-- perf-table:end -->\noutro\n")
    assert "| new |" in text and "old" not in text
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not run_table.update_readme(plain, "| new |\n")
    assert plain.read_text() == "no markers\n"


@pytest.mark.parametrize("variants", [False, True])
def test_timing_proxy_sees_every_module_call_of_the_state_machine(variants: bool):
    """Frame 0: one encoder call (seed and first-frame predictions share it), the seed's mask
    encoder, then 1 + state_warmup first-frame predictions (read_first, decoder, mask_encoder); then
    one normal step per later frame (encoder, read, decoder, and the mask encoder, or its shallow
    variant when the backend has one: frames 1 and 2 are not memory frames): the counts say the
    proxy is in the path of every call, variants too."""
    frames, mask = moving_shapes(32, 48, 3)
    clip = B.ClipData(frames, mask.astype(np.float32), "synthetic")
    modules = _FakeBackend("fake", variants).load(LoadRequest("seeded:v1-pm", clip_dims(32, 48)[0]))
    timed = B.time_clip_pass(modules, clip, state_warmup=1)
    counts = {name: len(calls) for name, calls in timed["modules"].items()}
    expected = {"encoder": 3, "mask_encoder": 5, "read_first": 2, "read": 2, "decoder": 4}
    if variants:
        expected.update(mask_encoder=3, mask_value=2)
    assert counts == expected
    assert len(timed["frames"]) == 2 and timed["first_frame"] > 0
    shallow = "mask_value" if variants else "mask_encoder"
    assert timed["frame_calls"] == [{**dict.fromkeys(counts, 0), "encoder": 1, "read": 1, "decoder": 1, shallow: 1}] * 2


def test_search_credits_a_shallow_variant_per_frame():
    """B's mask_encoder is slower per call, but its mask_value variant replaces it on most frames:
    per steady-state frame B is cheaper, and the search must say so (synthetic numbers, no timing)."""

    def stats(median: float, per_frame: float) -> dict:
        return {"median_ms": median, "calls_per_frame": per_frame}

    def result(backend: str, modules: dict) -> dict:
        return {
            "backend": backend,
            "precision": "fp32",
            "label": f"{backend}/fp32",
            "placement": None,
            "modules": modules,
            "frame": {"median_ms": 100.0},
        }

    same = {"encoder": stats(10, 1), "read_first": stats(5, 0), "read": stats(5, 1), "decoder": stats(10, 1)}
    a = result("a", {**same, "mask_encoder": stats(8, 1), "read_first": stats(4, 0)})
    b = result("b", {**same, "mask_encoder": stats(10, 0.2), "mask_value": stats(3, 0.8)})
    profile = B.search_placement({"results": [a, b], "settings": {}, "env": {}})
    assert profile["measured"]["b"]["cost_ms"]["mask_encoder"] == pytest.approx(10 * 0.2 + 3 * 0.8)
    assert profile["placement"]["mask_encoder"] == "b"
    assert profile["placement"]["read_first"] == "a"  # never in a steady frame: compared per call


class _FastFake(_FakeBackend):
    """A fake that declares what ``--precision fast`` means for it, and records what it loaded."""

    precisions = ("fp32", "fp16")
    loaded: list[str] = []

    def fast_precision(self) -> tuple[str, str]:
        return "fp16", "fake accelerator"

    def load(self, request: LoadRequest):
        type(self).loaded.append(request.precision)
        return super().load(request)


class _FastPlugin:
    @hookimpl
    def register_backends(self, register) -> None:
        register(_FastFake("fake-fast"))


def test_fast_precision_is_resolved_per_backend_and_reported(tmp_path: Path, fake_backends, monkeypatch):
    """``-p fast`` loads each backend at the precision it names (admitted by a record), and the
    JSON says which."""
    from matanyone_engine.core.engine import accuracy

    monkeypatch.setitem(accuracy.RECORDED, accuracy.REFERENCE, {"mean_abs": 0.03, "p999_abs": 0.2})
    monkeypatch.setitem(accuracy.RECORDED, "fake-fast/fp16", {"mean_abs": 0.02, "p999_abs": 0.1})
    manager = plugins.get_plugin_manager()
    manager.register(_FastPlugin(), name="test-bench-fast")
    _FastFake.loaded = []
    try:
        out_json = tmp_path / "r.json"
        result = CliRunner().invoke(
            _app(),
            ["bench", "-b", "fake-fast", "-b", "fake-a", "-p", "fast", *TINY, "--in-process", "--json", str(out_json)],
        )
        assert result.exit_code == 0, result.output
    finally:
        manager.unregister(name="test-bench-fast")
    report = json.loads(out_json.read_text())
    by_label = {r["label"]: r for r in report["results"]}
    assert by_label["fake-fast/fast"]["precision"] == "fast"
    assert by_label["fake-fast/fast"]["resolved_precision"] == {"fake-fast": "fp16"}
    assert by_label["fake-a/fast"]["resolved_precision"] == {"fake-a": "fp32"}  # declares nothing faster
    assert set(_FastFake.loaded) == {"fp16"}  # never asked to load "fast" itself
    assert B.shown_label(by_label["fake-fast/fast"]) == "fake-fast/fast=fp16"  # the table's row name


def test_pipeline_option_measures_each_configuration_both_ways(tmp_path: Path, fake_backends):
    configs = B.plan_configs(["fake-a"], ["fp32"], None, pipeline=True)
    assert [c.label for c in configs] == ["fake-a/fp32", "fake-a/fp32 +pipeline"]
    out_json = tmp_path / "r.json"
    result = CliRunner().invoke(
        _app(), ["bench", "-b", "fake-a", "--pipeline", *TINY, "--in-process", "--json", str(out_json), "-q"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert [(r["label"], r["pipeline"]) for r in report["results"]] == [
        ("fake-a/fp32", False),
        ("fake-a/fp32 +pipeline", True),
    ]
    assert set(report["ratios"]["frame"]) == {"fake-a/fp32", "fake-a/fp32 +pipeline"}


def _run_table_module():
    spec = importlib.util.spec_from_file_location(
        "run_table", Path(__file__).resolve().parents[1] / "benchmarks" / "run_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_table_side_run_rows_are_scaled_through_the_shared_reference():
    """A slow configuration timed in a side run beside torch fp32 gets its speed-ups from the ratio
    paired there, carried to the main run's clock through torch fp32's main-run median."""
    rt = _run_table_module()

    def result(label, ms, **extra):
        backend, precision = label.split()[0].split("/")
        return {
            "label": label,
            "backend": backend,
            "precision": precision,
            "frame": {"median_ms": ms, "p10_ms": ms, "p90_ms": ms, "fps": 1000 / ms},
            "modules": {},
            **extra,
        }

    main = {
        "results": [
            result("torch/fp32", 2000.0),
            result("onnx-cpu/fast", 1000.0, resolved_precision={"onnx-cpu": "fp32"}),
            result("onnx-cpu/fp32 +pipeline", 1250.0, pipeline=True),
        ],
        "ratios": {
            "reference": "torch/fp32",
            "frame": {"torch/fp32": 1.0, "onnx-cpu/fast": 0.5, "onnx-cpu/fp32 +pipeline": 0.625},
        },
    }
    side = {
        "results": [result("torch/fp32", 2500.0), result("torch/bf16", 150000.0)],
        "ratios": {"reference": "torch/fp32", "frame": {"torch/fp32": 1.0, "torch/bf16": 60.0}},
        "settings": {"frames": 3},
    }
    rt.merge_side_run(main, side)
    assert [r["label"] for r in main["results"]][-1] == "torch/bf16" and main["results"][-1]["side_run"]
    assert rt.reference_equivalent_ms(main, "torch/bf16") == 2000.0 * 60.0  # not the side run's 150 s
    rows = {line.split(" | ")[1]: line.split(" | ") for line in rt.markdown_table(main, modules=False).splitlines()[2:]}
    assert rows["fast (= fp32)"][5:7] == ["2.00", "120.00"]  # x torch fp32 (paired), x torch bf16
    assert rows["fp32, pipelined"][5:7] == ["1.60", "96.00"]
    assert rows["bf16 †"][5:7] == ["0.02", "1.00"]


# --- the search over backend x precision ----------------------------------------------------------


def _measured(backend: str, precision: str, frame_ms: float, module_ms: dict[str, float]) -> dict:
    return {
        "backend": backend,
        "precision": precision,
        "label": f"{backend}/{precision}",
        "placement": None,
        "modules": {
            n: {"median_ms": ms, "calls_per_frame": 0.0 if n == "read_first" else 1.0} for n, ms in module_ms.items()
        },
        "frame": {"median_ms": frame_ms},
    }


def test_search_picks_each_backends_fastest_precision_and_the_fastest_configuration():
    """Synthetic numbers: x is fastest at bf16, y only has fp32; the choice is x/bf16, fast takes
    bf16 for x, and each module goes to whichever backend serves it cheapest at its own best."""
    same = dict.fromkeys(MODULE_NAMES, 10.0)
    report = {
        "results": [
            _measured("x", "fp32", 500.0, same),
            _measured("x", "bf16", 200.0, {**same, "decoder": 5.0, "encoder": 30.0}),
            _measured("y", "fp32", 300.0, {**same, "encoder": 4.0}),
            {"backend": "z", "precision": "fp32", "label": "z/fp32", "error": "failed to load"},
        ],
        "settings": {},
        "env": {},
    }
    profile = B.search_placement(report)
    assert profile["precisions"] == {"x": "bf16", "y": "fp32"}
    assert profile["choice"] == {"backend": "x", "precision": "bf16", "frame_median_ms": 200.0}
    assert profile["placement"]["encoder"] == "y" and profile["placement"]["decoder"] == "x"
    assert {c["label"] for c in profile["candidates"]} == {"x/fp32", "x/bf16", "y/fp32"}
    # a mix whose backends run different precisions cannot be verified as one load: the single wins
    assert B.verification_configs(profile) is None


class _TwoPrecisionFake(_FakeBackend):
    """Offers fp32 and bf16 (admissible through a test record); bf16 sleeps less than fp32."""

    precisions = ("fp32", "bf16")

    def load(self, request: LoadRequest):
        import time

        pause = 0.002 if request.precision == "bf16" else 0.03
        modules = super().load(request)

        class Slow:
            def __init__(self, inner):
                self.inner, self.spec = inner, inner.spec

            def __call__(self, **inputs):
                time.sleep(pause)
                return self.inner(**inputs)

        return {name: Slow(m) for name, m in modules.items()}


def test_search_measures_every_admissible_precision_and_fast_then_takes_the_winner(
    tmp_path: Path, monkeypatch, fake_backends
):
    from matanyone_engine.core.app import loading
    from matanyone_engine.core.engine import accuracy, precision

    class Plugin:
        @hookimpl
        def register_backends(self, register) -> None:
            register(_TwoPrecisionFake("fake-two"))

    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    monkeypatch.setitem(accuracy.RECORDED, accuracy.REFERENCE, {"mean_abs": 0.03, "p999_abs": 0.2})
    monkeypatch.setitem(accuracy.RECORDED, "fake-two/bf16", {"mean_abs": 0.02, "p999_abs": 0.1})
    manager = plugins.get_plugin_manager()
    manager.register(Plugin(), name="test-bench-two")
    profile_path = tmp_path / "placement.json"
    try:
        result = CliRunner().invoke(
            _app(),
            [
                "bench",
                "-b",
                "fake-two",
                *TINY,
                "--in-process",
                "--search",
                "--profile",
                str(profile_path),
            ],
        )
        assert result.exit_code == 0, result.output
        data = json.loads(profile_path.read_text())
        assert {c["label"] for c in data["candidates"]} == {"fake-two/fp32", "fake-two/bf16"}
        assert data["precisions"]["fake-two"] == "bf16"  # 2 ms a call against 30
        assert data["choice"]["backend"] == "fake-two" and data["choice"]["precision"] == "bf16"
        choice = loading.auto_choice(profile_path, precision="fast")
        assert (choice.backend, choice.precision) == ("fake-two", "bf16")
        assert loading.auto_choice(profile_path, precision="fp32").precision == "fp32"
    finally:
        manager.unregister(name="test-bench-two")


def test_search_leaves_out_what_is_not_admissible_or_emulated(monkeypatch, fake_backends):
    from matanyone_engine.core.engine import accuracy, precision

    class Plugin:
        @hookimpl
        def register_backends(self, register) -> None:
            register(_TwoPrecisionFake("fake-two"))

    manager = plugins.get_plugin_manager()
    manager.register(Plugin(), name="test-bench-two")
    try:
        monkeypatch.setattr(accuracy, "RECORDED", {accuracy.REFERENCE: {"mean_abs": 0.03, "p999_abs": 0.2}})
        said: list[str] = []
        configs = B.search_configs(["fake-two"], log=said.append)
        assert [c.label for c in configs] == ["fake-two/fp32"]
        assert any("no golden-clip alpha error is recorded" in s for s in said)
        monkeypatch.setitem(accuracy.RECORDED, "fake-two/bf16", {"mean_abs": 0.01, "p999_abs": 0.1})
        monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
        said.clear()
        assert [c.label for c in B.search_configs(["fake-two"], log=said.append)] == ["fake-two/fp32"]
        assert any("emulated" in s for s in said)
        monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("amx_bf16",))
        assert [c.label for c in B.search_configs(["fake-two"])] == ["fake-two/fp32", "fake-two/bf16"]
    finally:
        manager.unregister(name="test-bench-two")
