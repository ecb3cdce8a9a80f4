"""CoreML export on Linux: real packages at a small size, reloaded and checked against core.spec,
and the static checker rejecting deliberately bad modules and programs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")
torch = pytest.importorskip("torch")

from conftest import transpose_conv_weight  # noqa: E402
from torch import nn  # noqa: E402

from matanyone_engine.core.artifacts.manifest import read_manifest  # noqa: E402
from matanyone_engine.core.engine.errors import ExportError  # noqa: E402
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims, describe  # noqa: E402
from matanyone_engine.exporters.coreml import (  # noqa: E402
    ConstantTensorError,
    CoreMLCheckError,
    CoreMLExporter,
    DynamicShapeError,
    ForbiddenOpError,
    InterfaceMismatchError,
    PrecisionError,
    RankLimitError,
    SingletonSliceError,
    check_package,
    convert_module,
    package_name,
)
from matanyone_engine.exporters.coreml.checks import directory_size  # noqa: E402

SMALL = Dims(64, 96, 2)
#: The five modules plus the optional fast variant(s) the torch backend offers (mask_value).
EXPORTED = tuple(ALL_MODULE_SPECS)
TINY = Dims(32, 48, 1)
FORBIDDEN = {"non_zero", "nonzero", "gather_nd", "while_loop", "cond"}


# ------------------------------------------------------------------------------------ helpers


def load_spec(path: Path):
    return ct.utils.load_spec(str(path))


def all_operations(spec):
    """Every operation of every function, block specialisation and nested block."""

    def walk(block):
        for op in block.operations:
            yield op
            for nested in op.blocks:
                yield from walk(nested)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            yield from walk(block)


def feature_dtype(feature) -> str:
    from coremltools.proto import FeatureTypes_pb2

    return FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(feature.type.multiArrayType.dataType)


def weight_dtypes(spec) -> set[str]:
    from coremltools.proto import MIL_pb2

    found = set()
    for op in all_operations(spec):
        if op.type != "const":
            continue
        t = op.outputs[0].type.tensorType
        size = int(np.prod([d.constant.size for d in t.dimensions])) if t.dimensions else 1
        name = MIL_pb2.DataType.Name(t.dataType)
        if size >= 1024 and name.startswith(("FLOAT", "BFLOAT")):
            found.add(name)
    return found


def rewrite_spec(src: Path, dst: Path, edit) -> Path:
    """Copy a package and apply ``edit(spec)`` to its program (to build malformed programs)."""
    shutil.copytree(src, dst)
    model_file = next(dst.rglob("model.mlmodel"))
    spec = ct.utils.load_spec(str(src))
    edit(spec)
    model_file.write_bytes(spec.SerializeToString())
    return dst


class _TinyReadFirst(nn.Module):
    """A correct read_first-shaped module: one 1x1 convolution (converts in about a second)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(256, 256, 1)

    def forward(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        small = nn.functional.avg_pool2d(last_mask, 16)
        return (self.conv(pix_feat + last_msk_value * small) + sensory,)


def bad_module(body):
    class Bad(_TinyReadFirst):
        def forward(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
            return body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory)

    return Bad().eval()


# ----------------------------------------------------------------------------- the real export


@pytest.fixture(scope="module")
def exported(coreml_fp16_small: Path) -> Path:
    """The real network (seeded weights) exported at 64x96, T=2, fp16, with validation (conftest.py)."""
    return coreml_fp16_small


def test_export_writes_five_packages_and_a_manifest(exported: Path):
    manifest = read_manifest(exported)
    assert manifest.format == "coreml"
    assert (manifest.height, manifest.width, manifest.mem_frames) == (64, 96, 2)
    assert manifest.precision == "fp16"
    assert manifest.weights == "seeded:v1-pm"
    assert manifest.files == {name: package_name(name) for name in EXPORTED}
    assert set(MODULE_NAMES) <= set(manifest.files)
    assert manifest.modules == describe(SMALL)["modules"]
    assert manifest.exporter_version and manifest.libraries["coremltools"]
    assert manifest.extra["deployment_target"] == "macOS14"
    for name in EXPORTED:
        assert (exported / f"{name}.mlpackage" / "Manifest.json").is_file()


def test_weights_digest_is_the_golden_recipe_digest(exported: Path, golden_dir: Path):
    recorded = json.loads((golden_dir / "weights_seeded-v1-pm.sha256.json").read_text())
    assert read_manifest(exported).weights_digest == recorded["all_entries_sha256"]


@pytest.mark.parametrize("name", EXPORTED)
def test_package_interface_matches_core_spec(exported: Path, name: str):
    spec = load_spec(exported / package_name(name))
    declared = ALL_MODULE_SPECS[name]
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [f.name for f in spec.description.input] == list(declared.input_names)
    assert [f.name for f in spec.description.output] == list(declared.output_names)
    for feature in list(spec.description.input) + list(spec.description.output):
        tensor = next(t for t in declared.inputs + declared.outputs if t.name == feature.name)
        assert tuple(feature.type.multiArrayType.shape) == tensor.resolve(SMALL), feature.name
        assert feature_dtype(feature) == "FLOAT32", feature.name


@pytest.mark.parametrize("name", EXPORTED)
def test_fp16_weights_rank_and_op_set(exported: Path, name: str):
    spec = load_spec(exported / package_name(name))
    assert weight_dtypes(spec) == {"FLOAT16"}
    ops = list(all_operations(spec))
    types = {op.type for op in ops}
    assert not types & FORBIDDEN
    assert not {t for t in types if t.startswith("scatter")}
    ranks = [o.type.tensorType.rank for op in ops for o in op.outputs if o.type.WhichOneof("type") == "tensorType"]
    assert max(ranks) <= 5
    if name == "read":
        assert "topk" in types  # top-k by values and a threshold compare, not a scatter


def test_manifest_records_sizes_flops_checks_and_drift(exported: Path):
    manifest = read_manifest(exported)
    sizes = manifest.extra["package_bytes"]
    assert set(sizes) == set(EXPORTED)
    for name in EXPORTED:
        assert sizes[name] == directory_size(exported / package_name(name)) > 1_000_000
        assert manifest.flops[name] > 0
        checks = manifest.validation["static_checks"][name]
        assert checks["weight_dtype"] == "float16" and checks["max_rank"] <= 5
    assert manifest.extra["total_bytes"] == sum(sizes.values())
    drift = manifest.validation["fp16_drift"]
    assert set(drift["modules"]) == set(EXPORTED)
    for name, entry in drift["modules"].items():
        assert set(entry["outputs"]) == set(ALL_MODULE_SPECS[name].output_names)
        for out, d in entry["outputs"].items():
            assert d["finite"] and np.isfinite(d["max_abs"]), (name, out)
            # fp16 keeps ~3 significant digits: errors are a small fraction of the output range.
            assert d["max_abs"] <= 0.02 * max(d["max_ref"], 1.0), (name, out, d)


def test_manifest_records_the_executor_validation_of_every_package(exported: Path):
    record = read_manifest(exported).validation["mil_executor_vs_torch"]
    assert record["activations"] == "float16"  # fp16 packages run with float16 activations
    assert set(record["modules"]) == set(EXPORTED)
    for name, entry in record["modules"].items():
        assert entry["passed"] and entry["input_sets"] == (1 if name == "read_first" else 2)  # read_first runs once
        assert set(entry["outputs"]) == set(ALL_MODULE_SPECS[name].output_names)
        for out, check in entry["outputs"].items():
            assert 0 < check["max_abs"] <= 0.02 * max(1.0, check["max_ref"]), (name, out, check)


def test_a_transposed_conv_weight_fails_validation_with_the_typed_error(exported: Path, torch_net, tmp_path: Path):
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.core.artifacts.manifest import ValidationError
    from matanyone_engine.exporters.coreml import CoreMLValidationError, validate_packages
    from matanyone_engine.exporters.coreml.drift import recorded_inputs

    modules = build_torch_modules(torch_net)
    sets = recorded_inputs(modules, SMALL, keep="last")
    files = {"decoder": package_name("decoder")}
    broken = tmp_path / "broken"
    shutil.copytree(exported / files["decoder"], broken / files["decoder"])
    # the intact package passes ...
    report = validate_packages(exported, files, "fp16", sets, torch_modules=modules)
    for out, check in report["modules"]["decoder"]["outputs"].items():
        assert check["max_abs"] <= 0.02 * max(1.0, check["max_ref"]), (out, check)  # fp16: ~3 digits
    # ... the same package with one conv weight transposed does not
    transpose_conv_weight(broken / files["decoder"])
    with pytest.raises(CoreMLValidationError) as info:
        validate_packages(broken, files, "fp16", sets, torch_modules=modules)
    error = info.value
    assert isinstance(error, ValidationError) and isinstance(error, ExportError)
    assert error.module == "decoder" and error.output in ALL_MODULE_SPECS["decoder"].output_names
    assert error.max_abs > 0.05 and error.mean_abs > 0
    message = str(error)
    assert "\n" not in message
    assert "'decoder'" in message and repr(error.output) in message and "decoder.mlpackage" in message


def test_exported_packages_pass_the_checker_again(exported: Path):
    for name in EXPORTED:
        report = check_package(exported / package_name(name), name, SMALL, "fp16")
        assert report.weight_dtype == "float16" and report.operations > 0


def test_checker_refuses_a_package_for_another_module_or_size(exported: Path):
    with pytest.raises(InterfaceMismatchError) as info:
        check_package(exported / package_name("decoder"), "encoder", SMALL, "fp16")
    assert info.value.module == "encoder"
    with pytest.raises(InterfaceMismatchError, match="shape"):
        check_package(exported / package_name("decoder"), "decoder", Dims(64, 112, 2), "fp16")


def test_checker_refuses_fp16_weights_when_fp32_was_asked(exported: Path):
    with pytest.raises(PrecisionError, match="fp32"):
        check_package(exported / package_name("decoder"), "decoder", SMALL, "fp32")


def test_fp32_export_stores_fp32_weights(torch_net, tmp_path: Path):
    from matanyone_engine.backends.torch.modules import build_torch_modules

    decoder = build_torch_modules(torch_net)["decoder"]
    path = convert_module("decoder", decoder, SMALL, tmp_path / "decoder.mlpackage", precision="fp32")
    report = check_package(path, "decoder", SMALL, "fp32")
    assert report.weight_dtype == "float32"
    assert weight_dtypes(load_spec(path)) == {"FLOAT32"}
    with pytest.raises(PrecisionError):
        check_package(path, "decoder", SMALL, "fp16")


def test_unknown_precision_or_target_is_an_export_error(tmp_path: Path):
    with pytest.raises(ExportError, match="precision"):
        CoreMLExporter().export("seeded:v1-pm", TINY, precision="int8", out_dir=tmp_path)
    with pytest.raises(ExportError, match="target"):
        CoreMLExporter().export("seeded:v1-pm", TINY, target="watchOS9", out_dir=tmp_path)


# --------------------------------------------------------------------- the checker, bad modules


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "read_first.mlpackage"
    return convert_module("read_first", _TinyReadFirst().eval(), TINY, out)


def test_good_tiny_module_passes(tiny_package: Path):
    report = check_package(tiny_package, "read_first", TINY, "fp16")
    assert report.max_rank <= 5 and report.weight_dtype == "float16"


def _convert_and_check(module, tmp_path: Path):
    path = convert_module("read_first", module, TINY, tmp_path / "bad.mlpackage")
    return check_package(path, "read_first", TINY, "fp16")


def test_nonzero_is_rejected(tmp_path: Path):
    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        flat = last_mask.flatten()
        picked = flat[torch.nonzero(flat > 0.5).squeeze(1)].sum()
        return (self.conv(pix_feat) + picked,)

    with pytest.raises(ForbiddenOpError, match="non_zero") as info:
        _convert_and_check(bad_module(body), tmp_path)
    assert info.value.module == "read_first" and isinstance(info.value, ExportError)


def test_scatter_at_computed_indices_is_rejected(tmp_path: Path):
    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        x = self.conv(pix_feat).flatten(2)
        values, index = torch.topk(x, 2, dim=1)
        return (torch.zeros_like(x).scatter(1, index, values).reshape(pix_feat.shape),)

    with pytest.raises(ForbiddenOpError, match="scatter"):
        _convert_and_check(bad_module(body), tmp_path)


def test_folded_zeros_constant_is_rejected(tmp_path: Path):
    h, w = TINY.symbols["h"], TINY.symbols["w"]

    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        return (torch.where(last_msk_value > 0, self.conv(pix_feat), torch.zeros(1, 256, h, w)),)

    with pytest.raises(ConstantTensorError, match="zeros"):
        _convert_and_check(bad_module(body), tmp_path)


def test_singleton_dim_slice_is_rejected(tmp_path: Path):
    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        small = nn.functional.avg_pool2d(last_mask[:, 0].unsqueeze(1), 16)
        return (self.conv(pix_feat) * small,)

    with pytest.raises(SingletonSliceError, match="axis 1"):
        _convert_and_check(bad_module(body), tmp_path)


def test_rank6_tensor_is_rejected(tmp_path: Path):
    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        b, c, h, w = pix_feat.shape
        six = self.conv(pix_feat).reshape(1, 2, 2, 64, h, w) * 2.0
        return (six.reshape(b, c, h, w),)

    # coremltools itself refuses rank 6 during conversion; the exporter reports it as a RankLimitError.
    with pytest.raises(RankLimitError, match="rank"):
        _convert_and_check(bad_module(body), tmp_path)


def test_wrong_output_shape_is_rejected(tmp_path: Path):
    def body(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        return (self.conv(pix_feat)[:, :128],)

    with pytest.raises(InterfaceMismatchError, match="mem_readout"):
        _convert_and_check(bad_module(body), tmp_path)


# ------------------------------------------------------- the checker, malformed programs directly


def _first_compute_op(spec):
    return next(op for op in all_operations(spec) if op.type not in ("const", "cast"))


def test_checker_finds_rank6_types_in_the_program(tiny_package: Path, tmp_path: Path):
    def edit(spec):
        t = _first_compute_op(spec).outputs[0].type.tensorType
        while t.rank < 6:
            t.dimensions.add().constant.size = 1
            t.rank += 1

    bad = rewrite_spec(tiny_package, tmp_path / "rank6.mlpackage", edit)
    with pytest.raises(RankLimitError, match="rank 6"):
        check_package(bad, "read_first", TINY, "fp16")


def test_checker_walks_nested_blocks(tiny_package: Path, tmp_path: Path):
    def edit(spec):
        op = _first_compute_op(spec)
        nested = op.blocks.add()
        inner = nested.operations.add()
        inner.type = "gather_nd"
        out = inner.outputs.add()
        out.name = "hidden_gather"
        out.type.tensorType.dataType = 10  # FLOAT16
        out.type.tensorType.rank = 1
        out.type.tensorType.dimensions.add().constant.size = 4

    bad = rewrite_spec(tiny_package, tmp_path / "nested.mlpackage", edit)
    with pytest.raises(ForbiddenOpError, match="hidden_gather"):
        check_package(bad, "read_first", TINY, "fp16")


def test_checker_rejects_dynamic_dimensions(tiny_package: Path, tmp_path: Path):
    def edit(spec):
        dim = _first_compute_op(spec).outputs[0].type.tensorType.dimensions[1]
        dim.unknown.variadic = False

    bad = rewrite_spec(tiny_package, tmp_path / "dynamic.mlpackage", edit)
    with pytest.raises(DynamicShapeError):
        check_package(bad, "read_first", TINY, "fp16")


def test_check_errors_share_a_base_and_name_the_module():
    err = ForbiddenOpError("read", "non_zero found", "rewrite it")
    assert isinstance(err, CoreMLCheckError) and isinstance(err, ExportError)
    assert "read" in str(err) and err.problem == "non_zero found" and err.exit_code == 5


def test_numpy_patch_is_removed_after_conversion(tiny_package: Path):
    from coremltools.converters.mil.frontend.torch import ops

    from matanyone_engine.exporters.coreml.compat import numpy_compat_patch

    original = ops._cast
    with numpy_compat_patch():
        assert ops._cast is not original
    assert ops._cast is original


# ---------------------------------------------------------------------------------- fp16 drift


def _drift_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coreml_fp16_drift.py"
    spec = importlib.util.spec_from_file_location("coreml_fp16_drift", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_simulated_half_rounds_activations_and_weights_but_not_constants():
    from matanyone_engine.exporters.coreml.drift import simulated_half

    torch.manual_seed(0)
    layer = nn.Linear(64, 64)
    x = torch.randn(4, 64)
    with torch.no_grad():
        want = nn.functional.linear(x.half().float(), layer.weight.half().float(), layer.bias.half().float()).half()
        with simulated_half():
            got = layer(x.half())
            table = torch.arange(1000, dtype=torch.float32) * 0.001  # constants only: stays float32
    assert got.dtype == torch.float16 and torch.equal(got, want)
    assert table.dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the model itself is untouched


def test_fp16_drift_on_golden_module_inputs(golden_dir: Path):
    """Reduced run of benchmarks/coreml_fp16_drift.py: two modules on the official tensors."""
    report = _drift_script().module_drift(golden_dir, modules=("read", "decoder"))
    assert set(report["modules"]) == {"read", "decoder"}
    logits = report["modules"]["decoder"]["outputs"]["logits"]
    readout = report["modules"]["read"]["outputs"]["mem_readout"]
    assert report["modules"]["decoder"]["dtype"] == "float16"
    # Measured: logits max 1.4e-3 / mean 3.0e-4, mem_readout max 2.5e-2 / mean 4.3e-3.
    assert 0 < logits["mean_abs"] < 1e-3 and logits["max_abs"] < 5e-3
    assert 0 < readout["mean_abs"] < 1e-2 and readout["max_abs"] < 6e-2


@pytest.mark.slow
def test_fp16_drift_on_the_golden_clip(golden_dir: Path):
    """The matte itself over the first frames of the golden clip, all modules in simulated fp16."""
    report = _drift_script().clip_drift(golden_dir, frames=8, warmup=3)
    stats = report["alpha_vs_fp32"]
    # Measured over 30 frames: mean 0.029, p99.9 0.20 (the recurrent state amplifies fp16 rounding).
    assert stats["mean_abs"] < 0.06 and stats["p99_9"] < 0.4
    ratio = report["alpha_mean"]["float16"] / report["alpha_mean"]["fp32"]
    assert 0.5 < ratio < 1.5  # no drift of the matte to zero


def test_manifest_check_accepts_package_directories(exported: Path):
    from matanyone_engine.core.artifacts.manifest import check_manifest

    check_manifest(read_manifest(exported), format="coreml", dims=SMALL, precision="fp16", directory=exported)


@pytest.mark.slow
def test_default_size_export(tmp_path: Path):
    """The shipping size, 432x768 T=5 fp16, with the static checks (no numeric validation)."""
    manifest = CoreMLExporter().export("seeded:v1-pm", None, precision="fp16", out_dir=tmp_path, validate=False)
    assert (manifest.height, manifest.width, manifest.mem_frames) == (432, 768, 5)
    assert set(manifest.extra["package_bytes"]) == set(EXPORTED)
    assert 50e6 < manifest.extra["total_bytes"] < 150e6  # ~35 M parameters at 2 bytes, split over five packages
    for name in EXPORTED:
        assert manifest.validation["static_checks"][name]["weight_dtype"] == "float16"


def test_the_temporary_package_coremltools_writes_is_removed_after_saving(tmp_path):
    from types import SimpleNamespace

    from matanyone_engine.exporters.coreml.convert import discard_temporary_package

    temporary = tmp_path / "tmpabc.mlpackage"
    (temporary / "Data").mkdir(parents=True)
    discard_temporary_package(SimpleNamespace(is_temp_package=True, package_path=str(temporary)))
    assert not temporary.exists()

    saved = tmp_path / "encoder.mlpackage"  # a package the caller owns is never touched
    saved.mkdir()
    discard_temporary_package(SimpleNamespace(is_temp_package=False, package_path=str(saved)))
    assert saved.exists()
