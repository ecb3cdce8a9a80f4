"""ONNX exporter: names and shapes from core.spec, validation against PyTorch, fp16, manifest.

Fast cases export the stand-in modules (exporters/onnx/standin.py: spec-conformant, tiny); the
real network is exported module by module for the two modules with the most export risk (read:
masked top-k; decoder) and, under ``-m slow``, as a whole set in both precisions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from matanyone_engine.core import plugins  # noqa: E402
from matanyone_engine.core.artifacts.manifest import ValidationError, read_manifest  # noqa: E402
from matanyone_engine.core.engine.errors import ExportError  # noqa: E402
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, MODULE_SPECS, Dims  # noqa: E402
from matanyone_engine.exporters.onnx import EXPORTER_NAME, EXPORTER_VERSION, OnnxExporter, as_dims  # noqa: E402
from matanyone_engine.exporters.onnx.exporter import export_module  # noqa: E402
from matanyone_engine.exporters.onnx.inputs import capture_inputs, synthetic_inputs  # noqa: E402
from matanyone_engine.exporters.onnx.validate import validate_onnx_modules  # noqa: E402
from matanyone_engine.exporters.torch_modules import resolve_torch_modules  # noqa: E402

DIMS = Dims(64, 96, 3)
STANDIN = "standin:v1"


@pytest.fixture(scope="session")
def standin_modules():
    modules, _ = resolve_torch_modules(STANDIN)
    return modules


def _interface(model) -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    inits = {i.name for i in model.graph.initializer}

    def shape(v):
        return tuple(d.dim_value for d in v.type.tensor_type.shape.dim)

    ins = [(v.name, shape(v)) for v in model.graph.input if v.name not in inits]
    outs = [(v.name, shape(v)) for v in model.graph.output]
    return ins, outs


def test_exporter_is_registered() -> None:
    exporter = plugins.exporters()["onnx"]
    assert exporter.format == "onnx" and isinstance(exporter, OnnxExporter)


def test_padded_dims() -> None:
    assert as_dims((60, 90, 2)) == Dims(64, 96, 2)
    assert as_dims((64, 96)) == Dims(64, 96, 5)
    assert as_dims(Dims(32, 48, 5), mem_frames=2) == Dims(32, 48, 2)


def test_names_shapes_and_manifest(standin_artifacts: Path) -> None:
    m = read_manifest(standin_artifacts)
    assert (m.format, m.dims, m.precision, m.weights) == ("onnx", DIMS, "fp32", STANDIN)
    assert (m.exporter, m.exporter_version) == (EXPORTER_NAME, EXPORTER_VERSION)
    assert m.opset == 18 and len(m.weights_digest) == 64
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(m.libraries)
    # the five modules plus the optional shallow variant the stand-ins (like the network) offer
    assert set(m.files) == set(MODULE_NAMES) | {"mask_value"}
    assert m.files == {n: f"{n}.onnx" for n in m.files}
    assert set(m.flops) == set(m.files) and all(v > 0 for v in m.flops.values()) and m.flops_method
    for name in m.files:
        spec = ALL_MODULE_SPECS[name]
        model = onnx.load(str(standin_artifacts / m.files[name]))
        ins, outs = _interface(model)
        assert ins == [(t.name, t.resolve(DIMS)) for t in spec.inputs], name
        assert outs == [(t.name, t.resolve(DIMS)) for t in spec.outputs], name
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["matanyone.module"] == name and meta["matanyone.weights_digest"] == m.weights_digest
        report = m.validation["modules"][name]
        assert report["passed"] and set(report["outputs"]) == set(spec.output_names)
        for out in report["outputs"].values():
            assert out["max_abs"] <= 1e-4 * max(1.0, out["max_ref"]), (name, out)
    assert m.validation["performed"] and "synthetic clip" in m.validation["inputs"]


def test_corrupted_initializer_fails_validation(standin_artifacts: Path, standin_modules, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(standin_artifacts, broken)
    model = onnx.load(str(broken / "decoder.onnx"))
    target = next(i for i in model.graph.initializer if i.name.endswith("c1.bias"))
    values = onnx.numpy_helper.to_array(target) + np.float32(0.05)
    target.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), target.name))
    onnx.save(model, str(broken / "decoder.onnx"))

    sets, _ = capture_inputs(standin_modules, DIMS)
    with pytest.raises(ValidationError) as info:
        validate_onnx_modules(broken, standin_modules, sets, "fp32")
    err = info.value
    assert isinstance(err, ExportError)
    assert (err.module, err.output) == ("decoder", "logits")
    assert err.max_abs == pytest.approx(0.05, rel=0.05) and err.mean_abs > 0.04
    assert "decoder" in str(err) and "logits" in str(err)


def test_validation_on_declaration_only_inputs(standin_artifacts: Path, standin_modules) -> None:
    """Synthetic inputs built from the declaration alone exercise other value ranges; still agree."""
    import torch

    sets = {n: [v] for n, v in synthetic_inputs(DIMS, seed=3).items()}
    report = validate_onnx_modules(standin_artifacts, standin_modules, sets, "fp32")
    assert set(report) == set(read_manifest(standin_artifacts).files)
    for name, entry in report.items():
        # re-run the exported file in a plain ORT session and the torch module, independently of the validator
        spec = ALL_MODULE_SPECS[name]
        session = ort.InferenceSession(str(standin_artifacts / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        inputs = sets[name][0]
        got = dict(zip(spec.output_names, session.run(list(spec.output_names), inputs), strict=True))
        with torch.inference_mode():
            want = standin_modules[name](*(torch.from_numpy(inputs[n]) for n in spec.input_names))
        for out, reference in zip(spec.output_names, want, strict=True):
            reference = reference.numpy()
            error = float(np.abs(got[out] - reference).max())
            assert error <= 1e-4 * max(1.0, float(np.abs(reference).max())), (name, out, error)
            assert entry["outputs"][out]["max_abs"] == pytest.approx(error, abs=1e-6), (
                name,
                out,
            )  # the report's own number


def test_fp16_export_runs_and_keeps_float32_io(onnx_shared_root: Path, standin_artifacts: Path) -> None:
    path = OnnxExporter().ensure(STANDIN, DIMS, precision="fp16", root=onnx_shared_root)
    m = read_manifest(path)
    assert m.precision == "fp16" and m.validation["performed"]
    model = onnx.load(str(path / "encoder.onnx"))
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in model.graph.input)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in model.graph.output)
    assert {i.data_type for i in model.graph.initializer if i.dims} == {onnx.TensorProto.FLOAT16}
    assert (path / "encoder.onnx").stat().st_size < 0.6 * (standin_artifacts / "encoder.onnx").stat().st_size
    # fp16 and fp32 sessions agree to fp16 accuracy on the same input
    image = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 96)).astype(np.float32)
    s16 = ort.InferenceSession(str(path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    s32 = ort.InferenceSession(str(standin_artifacts / "encoder.onnx"), providers=["CPUExecutionProvider"])
    a, b = s16.run(["key"], {"image": image})[0], s32.run(["key"], {"image": image})[0]
    assert a.dtype == np.float32 and np.abs(a - b).max() < 1e-2 * max(1.0, np.abs(b).max())


def test_export_to_directory_without_validation(tmp_path: Path) -> None:
    m = OnnxExporter().export(STANDIN, (30, 40, 2), out_dir=tmp_path, validate=False)
    assert m.dims == Dims(32, 48, 2) and m.validation == {"performed": False}
    assert read_manifest(tmp_path).to_dict() == m.to_dict()
    with pytest.raises(ExportError, match="precision"):
        OnnxExporter().export(STANDIN, (32, 48, 2), precision="int8", out_dir=tmp_path / "x")


def test_real_network_read_and_decoder_export(tmp_path: Path) -> None:
    """The real network's riskiest modules (masked top-k read; decoder) export and validate."""
    import torch

    dims = Dims(64, 96, 2)
    modules, digest = resolve_torch_modules("seeded:v1-pm")
    sets, how = capture_inputs(modules, dims)
    assert "state machine" in how
    for name in ("read", "decoder"):
        spec = MODULE_SPECS[name]
        args = tuple(torch.from_numpy(sets[name][0][n]) for n in spec.input_names)
        export_module(modules[name], name, args, tmp_path / f"{name}.onnx", dims, weights_digest=digest)
    # The first read sees a partly filled memory (masked slots), the last one a full memory.
    valid = [s["mem_valid"].mean() for s in sets["read"]]
    assert min(valid) < 1.0 and max(valid) == 1.0
    report = validate_onnx_modules(tmp_path, modules, sets, "fp32", modules=("read", "decoder"))
    for name, r in report.items():
        for out, check in r["outputs"].items():
            assert check["max_abs"] <= 1e-4 * max(1.0, check["max_ref"]), (name, out, check)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_network_full_export(precision: str, onnx_shared_root: Path) -> None:
    path = OnnxExporter().ensure("seeded:v1-pm", Dims(64, 96, 2), precision=precision, root=onnx_shared_root)
    m = read_manifest(path)
    golden_digest = "0cb4009b1bc91d3157ba2d35f7f109ff51eee02aa562a5ecd37a9735e9b8fef1"  # GOLDEN.md all_entries_sha256
    assert m.weights_digest == golden_digest
    assert set(m.validation["modules"]) == set(m.files)
    bound = 1e-4 if precision == "fp32" else 0.02  # of the output's range: fp16 keeps ~3 digits
    for name, entry in m.validation["modules"].items():
        assert set(entry["outputs"]) == set(ALL_MODULE_SPECS[name].output_names)
        for out, check in entry["outputs"].items():
            assert check["max_abs"] <= bound * max(1.0, check["max_ref"]), (name, out, check)
    assert m.flops["encoder"] > 5e8


def test_inputs_are_captured_through_the_state_machine_only(standin_modules, monkeypatch) -> None:
    """No second, hand-written copy of the per-frame flow: a failing state machine fails the
    capture, and a clip too short to read is refused in one line."""
    from matanyone_engine.exporters.onnx import inputs

    sets, _ = capture_inputs(standin_modules, DIMS)
    assert set(sets) == set(ALL_MODULE_SPECS) and all(sets.values())
    with pytest.raises(ExportError) as info:
        capture_inputs(standin_modules, DIMS, frames=1)
    assert str(info.value) == (
        "the input capture (1 frames) never called read; capture at least 2 frames "
        "(frame 0 seeds the memory, the next ones read it)"
    )

    def broken(*args, **kwargs):
        raise RuntimeError("state machine broke")

    monkeypatch.setattr(inputs, "matte_frames", broken)
    with pytest.raises(RuntimeError, match="state machine broke"):
        capture_inputs(standin_modules, DIMS)
