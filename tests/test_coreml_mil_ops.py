"""The reference MIL executor, op by op, against independent references.

Every case builds a one-op (or few-op) ML Program with coremltools' MIL builder, saves it as a
real .mlpackage (no graph passes, so the op reaches the file exactly as written), reads it back
with backends/coreml/mil and runs it. References are torch.nn.functional or numpy written here
from the MIL op reference, never the executor's own helpers. The cases are the ones converters get
wrong: resize corner rules, pooling padding, pad types, ties, masks, broadcasting, casts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")
torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import Function, Program, types  # noqa: E402

from matanyone_engine.backends.coreml.mil import (  # noqa: E402
    IMPLEMENTED_OPS,
    Executor,
    MilExecutionError,
    UnsupportedOpError,
    load_program,
)
from matanyone_engine.backends.coreml.mil.program import Arg, TensorType  # noqa: E402

RNG = np.random.default_rng(7)
_COUNTER = itertools.count()


def run_mil(
    tmp_path: Path,
    build: Callable[..., object],
    target: object = None,
    activations: str = "declared",
    **inputs: np.ndarray,
) -> list[np.ndarray]:
    """Build ``build(**input_vars)`` into a saved package, load it with the executor, run it."""
    target = target or ct.target.macOS14
    dtypes = {np.dtype(np.float32): types.fp32, np.dtype(np.int32): types.int32}
    specs = {name: mb.TensorSpec(shape=value.shape, dtype=dtypes[value.dtype]) for name, value in inputs.items()}
    with Function(specs, opset_version=target) as function:
        outputs = build(**function.inputs)
        outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        function.set_outputs(outputs)
    program = Program()
    program.add_function("main", function)
    model = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=target,
        compute_precision=ct.precision.FLOAT32,
        pass_pipeline=ct.PassPipeline.EMPTY,
        skip_model_load=True,
    )
    path = tmp_path / f"op{next(_COUNTER)}.mlpackage"
    model.save(str(path))
    executor = Executor(load_program(path), activations=activations)  # type: ignore[arg-type]
    result = executor.run(inputs)
    return [result[name] for name in executor.function.outputs]


def one(tmp_path: Path, build: Callable[..., object], **inputs: np.ndarray) -> np.ndarray:
    return run_mil(tmp_path, build, **inputs)[0]


def t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def close(got: np.ndarray, want: np.ndarray, atol: float = 1e-5) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=atol, rtol=1e-5)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------- conv


def _same_pads(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    """TensorFlow's SAME rule, as the MIL reference states it: out = ceil(size / stride)."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return (total - total // 2, total // 2) if lower else (total // 2, total - total // 2)


def test_same_pad_rule_examples_from_the_reference():
    # size 6, kernel 3, stride 2: one pixel of padding; same puts it after, same_lower before.
    assert _same_pads(6, 3, 2, 1, lower=False) == (0, 1)
    assert _same_pads(6, 3, 2, 1, lower=True) == (1, 0)
    assert _same_pads(5, 3, 2, 1, lower=False) == (1, 1)


@pytest.mark.parametrize(
    ("pad_type", "stride", "dilation", "groups", "size"),
    [
        ("valid", 1, 1, 1, (9, 10)),
        ("same", 1, 1, 1, (9, 10)),
        ("same", 2, 1, 1, (9, 10)),  # odd total padding: the extra row/column goes after
        ("same_lower", 2, 1, 1, (9, 10)),  # ... and before
        ("same", 1, 2, 1, (9, 10)),  # dilation widens the effective kernel
        ("custom", 2, 1, 2, (8, 11)),  # asymmetric custom pads with two groups
        ("valid", 1, 1, 4, (7, 7)),  # depthwise
    ],
)
def test_conv2d_pad_types_groups_dilation(tmp_path, pad_type, stride, dilation, groups, size):
    x = rand(1, 4, *size)
    w = rand(6 if groups != 4 else 4, 4 // groups, 3, 3)
    b = rand(w.shape[0])
    custom = [1, 2, 0, 1]
    params = {"strides": [stride, stride], "dilations": [dilation, dilation], "groups": groups, "pad_type": pad_type}
    if pad_type == "custom":
        params["pad"] = custom
    got = one(tmp_path, lambda x: mb.conv(x=x, weight=w, bias=b, **params), x=x)
    if pad_type == "custom":
        pads = [(custom[0], custom[1]), (custom[2], custom[3])]
    elif pad_type == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [_same_pads(s, 3, stride, dilation, pad_type == "same_lower") for s in size]
    padded = F.pad(t(x), [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
    want = F.conv2d(padded, t(w), t(b), stride=stride, dilation=dilation, groups=groups).numpy()
    close(got, want, 1e-4)
    if pad_type.startswith("same"):
        assert got.shape[2:] == tuple(-(-s // stride) for s in size)


def test_conv1d_without_bias(tmp_path):
    x, w = rand(1, 3, 17), rand(5, 3, 4)
    got = one(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type="custom", pad=[2, 1], strides=[2]), x=x)
    close(got, F.conv1d(F.pad(t(x), [2, 1]), t(w), stride=2).numpy(), 1e-4)


def test_conv_weight_from_the_blob_file_is_read_in_torch_layout(tmp_path):
    """A weight big enough to live in weight.bin: Cout, Cin, kH, kW order (a transpose would show)."""
    x, w = rand(1, 8, 6, 6), rand(8, 8, 3, 3)
    got = one(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type="same"), x=x)
    close(got, F.conv2d(t(x), t(w), padding=1).numpy(), 1e-4)
    wrong = F.conv2d(t(x), t(w.transpose(1, 0, 2, 3).copy()), padding=1).numpy()
    assert np.abs(got - wrong).max() > 0.1


# ---------------------------------------------------------------------------------------- pools


@pytest.mark.parametrize("exclude", [False, True])
def test_avg_pool_padding_in_or_out_of_the_average(tmp_path, exclude):
    x = rand(1, 2, 7, 8) + 3.0  # positive: zeros counted in the average visibly lower it
    got = one(
        tmp_path,
        lambda x: mb.avg_pool(
            x=x,
            kernel_sizes=[3, 3],
            strides=[2, 2],
            pad_type="custom",
            pad=[1, 1, 1, 1],
            exclude_padding_from_average=exclude,
        ),
        x=x,
    )
    want = F.avg_pool2d(t(x), 3, 2, padding=1, count_include_pad=not exclude).numpy()
    close(got, want)
    other = F.avg_pool2d(t(x), 3, 2, padding=1, count_include_pad=exclude).numpy()
    assert np.abs(got - other).max() > 0.1


def test_avg_pool_ceil_mode_matches_pytorch(tmp_path):
    x = rand(1, 2, 9, 10)
    got = one(
        tmp_path,
        lambda x: mb.avg_pool(
            x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1], ceil_mode=True
        ),
        x=x,
    )
    close(got, F.avg_pool2d(t(x), 3, 2, padding=1, ceil_mode=True, count_include_pad=True).numpy())


def test_avg_pool_kernel_equal_to_stride(tmp_path):
    x = rand(1, 1, 32, 48)
    got = one(tmp_path, lambda x: mb.avg_pool(x=x, kernel_sizes=[16, 16], strides=[16, 16], pad_type="valid"), x=x)
    close(got, F.avg_pool2d(t(x), 16).numpy())


def test_max_pool_padding_never_wins(tmp_path):
    x = rand(1, 3, 8, 9) - 5.0  # all negative: a zero-padded max would show zeros on the border
    got = one(
        tmp_path,
        lambda x: mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1]),
        x=x,
    )
    close(got, F.max_pool2d(t(x), 3, 2, padding=1).numpy())
    assert got.max() < 0


def test_max_pool_same_and_ceil_mode(tmp_path):
    x = rand(1, 2, 9, 11)
    got = one(tmp_path, lambda x: mb.max_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="same"), x=x)
    # same: out = ceil(9/2) x ceil(11/2); the missing row/column is padded after (with -inf)
    want = F.max_pool2d(F.pad(t(x), [0, 1, 0, 1], value=-np.inf), 2, 2).numpy()
    close(got, want)
    got = one(
        tmp_path,
        lambda x: mb.max_pool(x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="valid", ceil_mode=True),
        x=x,
    )
    close(got, F.max_pool2d(t(x), 3, 2, ceil_mode=True).numpy())


# ------------------------------------------------------------------------------------- upsample


def test_upsample_grid_points_of_the_reference_examples(tmp_path):
    """The MIL reference's own example: Xin = 2 with values [0, 1], Xout = 5 and 6."""
    ramp = np.array([0.0, 1.0], np.float32).reshape(1, 1, 1, 2)
    cases = {
        (2.5, False): [0.0, 0.1, 0.5, 0.9, 1.0],
        (2.5, True): [0.0, 0.25, 0.5, 0.75, 1.0],
        (3.0, False): [0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0],
        (3.0, True): [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
    }
    for (scale, align), want in cases.items():
        got = one(
            tmp_path,
            lambda x, s=scale, a=align: mb.upsample_bilinear(
                x=x, scale_factor_height=1.0, scale_factor_width=s, align_corners=a
            ),
            x=ramp,
        )
        close(got.reshape(-1), np.array(want, np.float32))


@pytest.mark.parametrize("align", [False, True])
def test_upsample_bilinear_matches_torch_interpolate(tmp_path, align):
    x = rand(1, 3, 5, 7)
    got = one(
        tmp_path,
        lambda x: mb.upsample_bilinear(x=x, scale_factor_height=2.0, scale_factor_width=2.0, align_corners=align),
        x=x,
    )
    close(got, F.interpolate(t(x), scale_factor=2, mode="bilinear", align_corners=align).numpy())


def test_upsample_without_half_pixel_centres_and_a_fractional_scale(tmp_path):
    """align_corners and half_pixel_centers both false: sample at j * in / out (legacy TF);
    output size floor(in * scale)."""
    x = rand(1, 2, 4, 6)
    got = one(
        tmp_path,
        lambda x: mb.upsample_bilinear(
            x=x, scale_factor_height=1.5, scale_factor_width=1.5, align_corners=False, half_pixel_centers=False
        ),
        x=x,
    )
    assert got.shape == (1, 2, 6, 9)

    def axis(values: np.ndarray, out: int, dim: int) -> np.ndarray:
        size = values.shape[dim]
        src = np.minimum(np.arange(out) * size / out, size - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, size - 1)
        f = (src - lo).reshape([-1 if d == dim else 1 for d in range(values.ndim)])
        return np.take(values, lo, dim) * (1 - f) + np.take(values, hi, dim) * f

    close(got, axis(axis(x.astype(np.float64), 6, 2), 9, 3).astype(np.float32))


# ------------------------------------------------------------------------------------ matmul etc.


def test_linear_and_matmul_transposes_and_promotion(tmp_path):
    x, w, b = rand(2, 5, 4), rand(3, 4), rand(3)
    close(one(tmp_path, lambda x: mb.linear(x=x, weight=w, bias=b), x=x), F.linear(t(x), t(w), t(b)).numpy(), 1e-5)
    a, c = rand(2, 4, 3), rand(2, 4, 5)
    got = one(tmp_path, lambda a, c: mb.matmul(x=a, y=c, transpose_x=True), a=a, c=c)
    close(got, np.einsum("bki,bkj->bij", a, c), 1e-5)
    got = one(tmp_path, lambda a, c: mb.matmul(x=a, y=c, transpose_y=True), a=rand(3, 2, 4), c=rand(1, 6, 4))
    assert got.shape == (3, 2, 6)  # batch broadcast
    v, m = rand(4), rand(4, 3)
    got = one(tmp_path, lambda m, v: mb.matmul(x=v, y=m), m=m, v=v)
    close(got, np.einsum("k,kj->j", v, m), 1e-5)  # 1-D x promoted to a row, then the axis removed


def test_softmax_is_stable_and_matches_torch(tmp_path):
    x = rand(2, 3, 7) * 50
    close(one(tmp_path, lambda x: mb.softmax(x=x, axis=1), x=x), F.softmax(t(x), dim=1).numpy())
    big = np.array([[1000.0, 1001.0, 999.0]], np.float32)
    got = one(tmp_path, lambda x: mb.softmax(x=x), x=big)
    assert np.all(np.isfinite(got))
    close(got, F.softmax(t(big), -1).numpy())


# -------------------------------------------------------------------------------- normalisation


def test_layer_norm_trailing_axes_and_epsilon(tmp_path):
    x = rand(2, 3, 8)
    gamma, beta = rand(8), rand(8)
    got = one(tmp_path, lambda x: mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-5), x=x)
    close(got, F.layer_norm(t(x), (8,), t(gamma), t(beta), eps=1e-5).numpy(), 1e-5)
    # A large epsilon must sit inside the square root, next to the (population) variance.
    got = one(tmp_path, lambda x: mb.layer_norm(x=x, axes=[1, 2], epsilon=0.5), x=x)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(1, 2), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    close(got, ((x64 - mean) / np.sqrt(var + 0.5)).astype(np.float32), 1e-5)


def test_layer_norm_over_a_middle_axis_places_gamma_on_it(tmp_path):
    x = rand(2, 3, 4)
    gamma, beta = rand(3), rand(3)
    got = one(tmp_path, lambda x: mb.layer_norm(x=x, axes=[1], gamma=gamma, beta=beta), x=x)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = x64.var(axis=1, keepdims=True)
    want = (x64 - mean) / np.sqrt(var + 1e-5) * gamma[None, :, None] + beta[None, :, None]
    close(got, want.astype(np.float32), 1e-5)


@pytest.mark.parametrize("keep", [False, True])
def test_reductions_with_keep_dims_and_negative_axes(tmp_path, keep):
    x = rand(2, 3, 4, 5)
    got = run_mil(
        tmp_path,
        lambda x: (
            mb.reduce_sum(x=x, axes=[1, -1], keep_dims=keep),
            mb.reduce_max(x=x, axes=[-2], keep_dims=keep),
            mb.reduce_mean(x=x, axes=[2, 3], keep_dims=keep),
        ),
        x=x,
    )
    close(got[0], x.sum(axis=(1, 3), keepdims=keep), 1e-5)
    close(got[1], x.max(axis=2, keepdims=keep))
    close(got[2], x.mean(axis=(2, 3), keepdims=keep), 1e-6)
    y = rand(2, 3)
    total = one(tmp_path, lambda y: mb.reduce_sum(x=y, keep_dims=True), y=y)  # no axes: every axis
    close(total, y.sum(keepdims=True), 1e-5)


# ------------------------------------------------------------------------------------- indexing


def test_topk_values_indices_and_order(tmp_path):
    x = RNG.permutation(60).astype(np.float32).reshape(3, 20)  # distinct values
    values, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=4), x=x)
    want = torch.topk(t(x), 4)
    close(values, want.values.numpy())
    np.testing.assert_array_equal(indices, want.indices.numpy())
    values, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=3, axis=0, ascending=True), x=x)
    close(values, np.sort(x, axis=0)[:3])
    np.testing.assert_array_equal(indices, np.argsort(x, axis=0)[:3])


def test_topk_ties_take_the_lower_index_first(tmp_path):
    x = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0]], np.float32)
    values, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=2), x=x)
    close(values, np.array([[3.0, 3.0]], np.float32))
    np.testing.assert_array_equal(indices, [[1, 2]])
    _, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=4), x=x)
    np.testing.assert_array_equal(indices, [[1, 2, 4, 3]])
    _, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=3, ascending=True), x=-x)
    np.testing.assert_array_equal(indices, [[1, 2, 4]])


def test_slice_by_index_masks_strides_and_negative_indices(tmp_path):
    x = rand(4, 6, 5)
    cases = [
        ({"begin": [1, 0, 0], "end": [3, 6, 5]}, x[1:3]),
        ({"begin": [0, -4, 1], "end": [0, -1, 0], "end_mask": [True, False, True]}, x[:, -4:-1, 1:]),
        (
            {"begin": [9, 1, 0], "end": [2, 5, 5], "begin_mask": [True, False, False], "stride": [1, 2, 2]},
            x[:2, 1:5:2, ::2],
        ),
        (
            {"begin": [3, 0, 4], "end": [0, 0, 0], "stride": [-1, 1, -2], "end_mask": [True, True, True]},
            x[3::-1, :, 4::-2],
        ),
        (
            {
                "begin": [0, 2, 0],
                "end": [0, 0, 0],
                "squeeze_mask": [False, True, False],
                "end_mask": [True, True, True],
            },
            x[:, 2],
        ),
    ]
    for params, want in cases:
        params = {k: np.array(v, dtype=bool if k.endswith("mask") else np.int32) for k, v in params.items()}
        close(one(tmp_path, lambda x, p=params: mb.slice_by_index(x=x, **p), x=x), want)


def test_gather_axes_batch_dims_and_index_shapes(tmp_path):
    x = rand(3, 5, 4)
    idx = np.array([[4, 0], [2, 2]], np.int32)
    close(one(tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=1), x=x, i=idx), x[:, idx])
    close(one(tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=-1), x=x, i=idx % 4), x[..., idx % 4])
    batched = np.array([[0, 4], [1, 1], [3, 2]], np.int32)
    got = one(tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=1, batch_dims=1), x=x, i=batched)
    want = np.stack([x[b, batched[b]] for b in range(3)])
    close(got, want)


def test_gather_out_of_range_is_refused_and_negative_indices_follow_the_opset(tmp_path):
    x = rand(5, 2)
    with pytest.raises(MilExecutionError, match="gather index out of range"):
        one(tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=0), x=x, i=np.array([1, 5], np.int32))
    with pytest.raises(MilExecutionError, match="out of range"):  # iOS 17: negative = out of range
        one(tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=0), x=x, i=np.array([-1], np.int32))
    got = run_mil(
        tmp_path, lambda x, i: mb.gather(x=x, indices=i, axis=0), ct.target.macOS13, x=x, i=np.array([-1], np.int32)
    )[0]
    close(got, x[[-1]])  # iOS 16: negative indices wrap


def test_select_broadcasts_cond_a_and_b(tmp_path):
    a, b = rand(2, 3), rand(1, 3)
    cond_source = np.array([[1.0, -1.0, 2.0]], np.float32)
    got = one(tmp_path, lambda a, b, c: mb.select(cond=mb.greater(x=c, y=0.0), a=a, b=b), a=a, b=b, c=cond_source)
    close(got, np.where(cond_source > 0, a, b))


def test_reshape_minus_one_and_the_ios17_zero_rule(tmp_path):
    x = rand(2, 50)
    # the reference's example: shape [1, 0, -1, 0] on [2, 50] gives [1, 1, 2, 50] from iOS 17
    got = one(tmp_path, lambda x: mb.reshape(x=x, shape=[1, 0, -1, 0]), x=x)
    assert got.shape == (1, 1, 2, 50)
    close(got.reshape(2, 50), x)
    got = one(tmp_path, lambda x: mb.reshape(x=x, shape=[0, 5, -1]), x=x)  # no input dim left of 50
    assert got.shape == (1, 5, 20)
    got = run_mil(tmp_path, lambda x: mb.reshape(x=x, shape=[0, -1]), ct.target.macOS13, x=x)[0]
    assert got.shape == (2, 50)


def test_layout_ops(tmp_path):
    x = rand(2, 3, 4)
    close(one(tmp_path, lambda x: mb.transpose(x=x, perm=[0, -1, 1]), x=x), x.transpose(0, 2, 1))
    assert one(tmp_path, lambda x: mb.expand_dims(x=x, axes=[0, -1]), x=x).shape == (1, 2, 3, 4, 1)
    assert one(tmp_path, lambda x: mb.expand_dims(x=x, axes=[-2]), x=x).shape == (2, 3, 1, 4)
    close(one(tmp_path, lambda x: mb.tile(x=x, reps=[1, 2, 3]), x=x), np.tile(x, (1, 2, 3)))
    got = one(tmp_path, lambda x: mb.fill_like(ref_tensor=x, value=2.5), x=x)
    close(got, np.full_like(x, 2.5))


def test_concat_plain_and_interleaved(tmp_path):
    a = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    b = np.array([[7, 8], [9, 10], [11, 12]], np.float32)
    got = one(tmp_path, lambda a, b: mb.concat(values=[a, b], axis=0), a=a, b=b)
    close(got, np.concatenate([a, b]))
    got = one(tmp_path, lambda a, b: mb.concat(values=[a, b], axis=0, interleave=True), a=a, b=b)
    close(got, np.array([[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]], np.float32))  # the reference's


# ----------------------------------------------------------------------------- element-wise


def test_binary_ops_broadcast(tmp_path):
    x, y = rand(2, 1, 4), np.abs(rand(3, 1)) + 0.5
    got = run_mil(
        tmp_path,
        lambda x, y: (
            mb.add(x=x, y=y),
            mb.sub(x=x, y=y),
            mb.mul(x=x, y=y),
            mb.real_div(x=x, y=y),
            mb.pow(x=y, y=2.0),
            mb.cast(x=mb.greater(x=x, y=y), dtype="fp32"),
            mb.cast(x=mb.greater_equal(x=x, y=0.0), dtype="fp32"),
            mb.cast(x=mb.less(x=x, y=y), dtype="fp32"),
        ),
        x=x,
        y=y,
    )
    for value, want in zip(got, [x + y, x - y, x * y, x / y, y**2, x > y, x >= 0, x < y], strict=True):
        close(value, np.asarray(want, np.float32), 1e-6)


def test_unary_functions(tmp_path):
    x = np.array([-100.0, -3.0, -0.5, 0.0, 0.5, 3.0, 100.0], np.float32)
    got = run_mil(
        tmp_path,
        lambda x: (mb.relu(x=x), mb.sigmoid(x=x), mb.tanh(x=x), mb.exp(x=mb.mul(x=x, y=0.1))),
        x=x,
    )
    close(got[0], F.relu(t(x)).numpy())
    close(got[1], torch.sigmoid(t(x)).numpy(), 1e-7)
    assert np.all(np.isfinite(got[1]))
    close(got[2], np.tanh(x))
    close(got[3], np.exp(0.1 * x), 1e-6)


def test_log_adds_epsilon(tmp_path):
    x = np.array([0.0, 1e-3, 1.0, 10.0], np.float32)
    got = one(tmp_path, lambda x: mb.log(x=x, epsilon=0.5), x=x)
    close(got, np.log(x + 0.5))
    got = one(tmp_path, lambda x: mb.log(x=x), x=x)  # default epsilon 1e-45: log(0) stays finite
    close(got[1:], np.log(x[1:]))
    assert np.isfinite(got[0])


def test_clip_bounds(tmp_path):
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    close(one(tmp_path, lambda x: mb.clip(x=x, alpha=-0.5, beta=1.25), x=x), np.clip(x, -0.5, 1.25))


def test_cast_truncates_toward_zero_and_rounds_to_half_evenly(tmp_path):
    x = np.array([-2.7, -1.5, -0.5, 0.0, 0.5, 1.5, 2.7], np.float32)
    got = one(tmp_path, lambda x: mb.cast(x=x, dtype="int32"), x=x)
    np.testing.assert_array_equal(got, [-2, -1, 0, 0, 0, 1, 2])
    y = np.array([1.0 + 2**-11, 1.0 + 3 * 2**-11, 70000.0], np.float32)  # halfway cases, overflow
    got = one(tmp_path, lambda y: mb.cast(x=mb.cast(x=y, dtype="fp16"), dtype="fp32"), y=y)
    np.testing.assert_array_equal(got, [1.0, 1.0 + 4 * 2**-11, np.inf])
    got = one(tmp_path, lambda x: mb.cast(x=mb.cast(x=x, dtype="bool"), dtype="fp32"), x=x)
    np.testing.assert_array_equal(got, (x != 0).astype(np.float32))
    i = np.array([3, -4], np.int32)
    close(one(tmp_path, lambda i: mb.cast(x=i, dtype="fp32"), i=i), i.astype(np.float32))


# ------------------------------------------------------------------------------------ executor


def test_float16_mode_stores_every_activation_in_half(tmp_path):
    x = np.array([[1.0 + 2**-12, 3.0, 1000.3]], np.float32)
    declared = one(tmp_path, lambda x: mb.add(x=mb.mul(x=x, y=1.0), y=0.0), x=x)
    close(declared, x, 0)
    half = run_mil(tmp_path, lambda x: mb.add(x=mb.mul(x=x, y=1.0), y=0.0), activations="float16", x=x)[0]
    assert half.dtype == np.float32  # the declared output type ...
    np.testing.assert_array_equal(half, x.astype(np.float16).astype(np.float32))  # ... of a half value


def test_float16_mode_keeps_integer_and_bool_values(tmp_path):
    x = np.array([[5.0, 1.0, 3.0]], np.float32)
    _, indices = run_mil(tmp_path, lambda x: mb.topk(x=x, k=2), activations="float16", x=x)
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(indices, [[0, 2]])


def test_every_op_of_the_packages_is_implemented():
    packaged = {
        "const", "conv", "reshape", "add", "relu", "linear", "transpose", "mul", "sub", "matmul", "real_div",
        "sigmoid", "reduce_sum", "expand_dims", "concat", "cast", "layer_norm", "reduce_max", "exp", "reduce_mean",
        "tile", "clip", "log", "slice_by_index", "avg_pool", "greater_equal", "greater", "less",
        "upsample_bilinear", "max_pool", "pow", "tanh", "fill_like", "topk", "softmax", "select", "gather",
    }  # fmt: skip
    assert len(packaged) == 37
    assert packaged <= IMPLEMENTED_OPS


def test_an_unimplemented_op_is_refused_in_one_line_naming_op_and_package(tmp_path):
    with pytest.raises(UnsupportedOpError) as info:
        run_mil(tmp_path, lambda x: mb.erf(x=x), x=rand(3))
    message = str(info.value)
    assert "\n" not in message
    assert "'erf'" in message and ".mlpackage" in message and "not implemented" in message
    assert info.value.op_type == "erf"
    with pytest.raises(UnsupportedOpError, match="'cond'"):  # control flow: nested blocks
        run_mil(
            tmp_path,
            lambda x: mb.cond(
                pred=mb.greater(x=mb.reduce_sum(x=x), y=0.0), _true_fn=lambda: mb.relu(x=x), _false_fn=lambda: x
            ),
            x=rand(3),
        )


def test_inputs_are_checked_against_the_declared_interface(tmp_path):
    path = tmp_path / "relu.mlpackage"
    with Function({"x": mb.TensorSpec(shape=(2, 3))}, opset_version=ct.target.macOS14) as function:
        function.set_outputs([mb.relu(x=function.inputs["x"])])
    program = Program()
    program.add_function("main", function)
    ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.macOS14,
        pass_pipeline=ct.PassPipeline.EMPTY,
        skip_model_load=True,
    ).save(str(path))
    executor = Executor(load_program(path))
    with pytest.raises(MilExecutionError, match=r"shape \(3, 2\), the program declares \(2, 3\)"):
        executor.run({"x": rand(3, 2)})
    with pytest.raises(MilExecutionError, match="not given"):
        executor.run({})


def test_an_output_shape_other_than_declared_stops_the_run(tmp_path):
    """The executor checks itself against the program's types: a disagreement is a bug somewhere."""
    x = rand(2, 3)
    path = tmp_path / "t.mlpackage"
    with Function({"x": mb.TensorSpec(shape=(2, 3))}, opset_version=ct.target.macOS14) as function:
        function.set_outputs([mb.transpose(x=function.inputs["x"], perm=[1, 0])])
    program = Program()
    program.add_function("main", function)
    ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.macOS14,
        pass_pipeline=ct.PassPipeline.EMPTY,
        skip_model_load=True,
    ).save(str(path))
    loaded = load_program(path)
    op = loaded.main.operations[0]
    perm = next(key for key in op.inputs if key == "perm")
    op.inputs[perm] = [Arg(value=np.array([0, 1], np.int32))]  # now the identity
    with pytest.raises(MilExecutionError, match=r"computed shape \(2, 3\), the program declares \(3, 2\)"):
        Executor(loaded).run({"x": x})


def test_topk_k_minus_one_takes_everything_sorted(tmp_path):
    """k = -1 (all elements) is in the reference but coremltools cannot serialise it: set it on the
    loaded program."""
    x = RNG.permutation(12).astype(np.float32).reshape(2, 6)
    run_mil(tmp_path, lambda x: mb.topk(x=x, k=2), x=x)
    loaded = load_program(sorted(tmp_path.glob("op*.mlpackage"))[-1])
    op = loaded.main.operations[0]
    op.inputs["k"] = [Arg(value=np.array(-1, np.int32))]
    op.outputs = [(name, TensorType(ttype.dtype, (2, 6))) for name, ttype in op.outputs]
    result = Executor(loaded).run({"x": x})
    values, indices = (result[name] for name in loaded.main.outputs)
    close(values, -np.sort(-x, axis=1))
    np.testing.assert_array_equal(indices, np.argsort(-x, axis=1))


def test_missing_torch_kernel_is_refused_in_one_line(tmp_path):
    """Without torch, a program with conv is refused at load with the op, the package and the fix."""
    import subprocess
    import sys

    x, w = rand(1, 2, 4, 4), rand(2, 2, 1, 1)
    run_mil(tmp_path, lambda x: mb.conv(x=x, weight=w), x=x)  # saved as op<n>.mlpackage
    package = sorted(tmp_path.glob("op*.mlpackage"))[-1]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from matanyone_engine.backends.coreml.mil import Executor, load_program, MissingKernelError\n"
        f"try:\n    Executor(load_program({str(package)!r}))\n"
        "except MissingKernelError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = out.stdout.strip()
    assert "\n" not in line and package.name in line and "'conv'" in line and "pip install torch" in line
