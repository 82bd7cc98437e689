"""Elementwise math beyond arithmetic, determinants, and the signal operators.

Trigonometric and hyperbolic functions, IsNaN / IsInf, BitShift, Det, the spectral windows
(Hann, Hamming, Blackman), MelWeightMatrix, DFT and STFT.

Precision rule, shared by the activation, reduction and normalization families: a float kernel
computes float16 and bfloat16 inputs in float32 and rounds once at the end (as onnxruntime does),
float32 in float32 and float64 in float64 (`working_dtype`, `float_input`).

Where ONNX differs from numpy:
- BitShift by a negative amount or by at least the bit width is undefined in C and numpy; ONNX
  (opset 28, applied here to every opset, where it was undefined before) defines it as the sign
  fill alone: -1 for a right shift of a negative value, 0 otherwise;
- complex numbers are real tensors with a trailing dim of 2 (real, imaginary); a trailing dim of
  1 means a real signal. numpy's FFTs work on complex arrays, so DFT and STFT convert at the edges;
- DFT's `onesided=1` is numpy's `rfft` forward and `irfft` (default length 2 * (bins - 1)) inverse;
- the windows are periodic by default: they divide by N, not by N - 1 as numpy's windows do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import (
    Element,
    broadcast_rule,
    dims_or_unknown,
    optional,
    same_as_input,
    value_dims,
    with_dtype,
)
from sod2.analysis.shape_context import ShapeContext
from sod2.analysis.symbolic import floor_div
from sod2.ir.dims import Dim
from sod2.ir.dtypes import DType
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule

FLOAT_DTYPES = frozenset(
    d.numpy for d in (DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32, DType.FLOAT64)
)
"""float32, float16, float64 and bfloat16: the float types the kernels of these families compute."""


def working_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a float kernel computes in: float64 for float64, float32 for narrower floats."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def float_input(ctx: KernelContext, value: Value, what: str) -> np.ndarray:
    """`value` as an array of a supported float type; unsupported for float8 and other floats."""
    array = as_array(value, ctx, what)
    if array.dtype not in FLOAT_DTYPES:
        raise ctx.unsupported(
            f"{what} has element type {array.dtype}; this kernel computes float16, bfloat16, "
            "float32 and float64"
        )
    return array


def optional_input(inputs: Sequence[Value], index: int) -> Value:
    """Input slot `index`, or None when it is omitted or past the end."""
    return inputs[index] if len(inputs) > index else None


def scalar_int(ctx: KernelContext, value: Value, what: str) -> int:
    """A one-element integer tensor (scalar or shape [1]) as a Python int."""
    array = as_array(value, ctx, what)
    if array.dtype.kind not in "iu" or array.size != 1:
        raise ctx.fail(
            f"{what} must be one integer, got {array.dtype} of shape {list(array.shape)}"
        )
    return int(array.reshape(-1)[0])


def _float_unary(op_type: str, fn: Callable[[np.ndarray], np.ndarray], since: int) -> None:
    def kernel(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
        x = float_input(ctx, inputs[0], "input")
        with np.errstate(all="ignore"):
            result = fn(x.astype(working_dtype(x.dtype), copy=False))
        return [np.asarray(result).astype(x.dtype, copy=False)]

    kernel.__name__ = op_type.lower()
    kernel.__doc__ = f"{op_type}: y = {fn.__name__}(x), elementwise."
    register(op_type, since=since)(kernel)


for _name, _fn in {"Sin": np.sin, "Cos": np.cos, "Tan": np.tan}.items():
    _float_unary(_name, _fn, since=7)
for _name, _fn in {"Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan}.items():
    _float_unary(_name, _fn, since=7)
for _name, _fn in {"Sinh": np.sinh, "Cosh": np.cosh}.items():
    _float_unary(_name, _fn, since=9)
for _name, _fn in {"Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh}.items():
    _float_unary(_name, _fn, since=9)


@register("IsNaN", since=9)
def is_nan(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """IsNaN: y = (x != x), a bool tensor."""
    x = as_array(inputs[0], ctx, "input X")
    if not DType.from_numpy(x.dtype).is_float:
        raise ctx.fail(f"input X must be a float tensor, got {x.dtype}")
    return [np.asarray(np.isnan(x))]


@register("IsInf", since=10)
def is_inf(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """IsInf: y = (x == +inf and detect_positive) or (x == -inf and detect_negative)."""
    x = as_array(inputs[0], ctx, "input X")
    if not DType.from_numpy(x.dtype).is_float:
        raise ctx.fail(f"input X must be a float tensor, got {x.dtype}")
    infinite = np.isinf(x)
    negative = np.signbit(x.astype(np.float32, copy=False))
    wanted = np.zeros(x.shape, dtype=bool)
    if ctx.attr("detect_positive", 1):
        wanted |= infinite & ~negative
    if ctx.attr("detect_negative", 1):
        wanted |= infinite & negative
    return [wanted]


@register("BitShift", since=11)
def bit_shift(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """BitShift: z = x << y or x >> y (arithmetic for signed x); y outside [0, bits) gives the
    sign fill: -1 for a right shift of a negative x, else 0."""
    x, y = as_array(inputs[0], ctx, "input X"), as_array(inputs[1], ctx, "input Y")
    if x.dtype.kind not in "iu" or y.dtype != x.dtype:
        raise ctx.fail(f"inputs X and Y must share one integer type, got {x.dtype} and {y.dtype}")
    direction = ctx.attr("direction", None)
    if direction not in ("LEFT", "RIGHT"):
        raise ctx.fail(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ctx.fail(
            f"input shapes {list(x.shape)} and {list(y.shape)} do not broadcast"
        ) from None
    in_range = (y >= 0) & (y < 8 * x.dtype.itemsize)
    amount = np.where(in_range, y, 0).astype(x.dtype)
    if direction == "LEFT":
        return [np.where(in_range, np.left_shift(x, amount), 0).astype(x.dtype)]
    fill = np.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
    return [np.where(in_range, np.right_shift(x, amount), fill).astype(x.dtype)]


@register("Det", since=11)
def det(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """Det: y[*] = det(x[*, :, :]) for square innermost matrices."""
    x = float_input(ctx, inputs[0], "input X")
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ctx.fail(f"input X must end in square matrices [*, M, M], got {list(x.shape)}")
    with np.errstate(all="ignore"):
        result = np.linalg.det(x.astype(working_dtype(x.dtype), copy=False))
    return [np.asarray(result).astype(x.dtype)]


# -- windows and filter banks ----------------------------------------------------------------


def _output_dtype(ctx: KernelContext) -> np.dtype:
    code = int(ctx.attr("output_datatype", DType.FLOAT32.onnx))
    dtype = DType.from_onnx(code)
    if not (dtype.is_integer or dtype.numpy in FLOAT_DTYPES):
        raise ctx.unsupported(f"output_datatype {dtype} is not supported")
    return dtype.numpy


def _cosine_window(ctx: KernelContext, inputs: Sequence[Value], terms: Sequence[float]) -> Value:
    """w[n] = sum_k terms[k] * cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    size = scalar_int(ctx, inputs[0], "input size")
    if size < 0:
        raise ctx.fail(f"input size must not be negative, got {size}")
    period = size if ctx.attr("periodic", 1) else size - 1
    with np.errstate(all="ignore"):  # a symmetric window of size 1 is 0/0, NaN by the formula
        phase = 2.0 * np.pi * np.arange(size, dtype=np.float64) / period
        window = sum(term * np.cos(k * phase) for k, term in enumerate(terms))
    return np.asarray(window).astype(_output_dtype(ctx))


@register("HannWindow", since=17)
def hann_window(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """HannWindow: w[n] = 0.5 - 0.5 cos(2 pi n / N)."""
    return [_cosine_window(ctx, inputs, (0.5, -0.5))]


@register("HammingWindow", since=17)
def hamming_window(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """HammingWindow: w[n] = 25/46 - 21/46 cos(2 pi n / N)."""
    return [_cosine_window(ctx, inputs, (25 / 46, -21 / 46))]


@register("BlackmanWindow", since=17)
def blackman_window(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """BlackmanWindow: w[n] = 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)."""
    return [_cosine_window(ctx, inputs, (0.42, -0.5, 0.08))]


def _hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hertz, dtype=np.float64) / 700.0)


def _mel_to_hertz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@register("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """MelWeightMatrix: [dft_length // 2 + 1, num_mel_bins] triangles with peak 1.

    The mel range [mel(lower), mel(upper)] is cut into num_mel_bins + 2 points spaced by
    (mel(upper) - mel(lower)) / (num_mel_bins + 2); point p falls in spectrogram bin
    floor((dft_length + 1) * hertz(p) / sample_rate). Filter i rises linearly from bin edge i to
    edge i + 1 and falls to edge i + 2 (exclusive).
    """
    mel_bins = scalar_int(ctx, inputs[0], "input num_mel_bins")
    dft_length = scalar_int(ctx, inputs[1], "input dft_length")
    sample_rate = scalar_int(ctx, inputs[2], "input sample_rate")
    lower, upper = (float(as_array(v, ctx, "edge hertz").reshape(-1)[0]) for v in inputs[3:5])
    if mel_bins <= 0 or dft_length <= 0 or sample_rate <= 0:
        raise ctx.fail("num_mel_bins, dft_length and sample_rate must be positive")
    low_mel, high_mel = _hertz_to_mel(lower), _hertz_to_mel(upper)
    points = low_mel + np.arange(mel_bins + 2) * ((high_mel - low_mel) / (mel_bins + 2))
    edges = np.floor((dft_length + 1) * _mel_to_hertz(points) / sample_rate).astype(np.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    bins = np.arange(dft_length // 2 + 1)[:, None]
    with np.errstate(all="ignore"):
        rising = np.where(center > left, (bins - left) / (center - left), 1.0)
        falling = (right - bins) / (right - center)
    on_rise = (bins >= left) & (bins <= center)
    on_fall = (bins >= center) & (bins < right)
    weights = np.where(on_fall, falling, np.where(on_rise, rising, 0.0))
    return [weights.astype(_output_dtype(ctx))]


# -- Fourier transforms ----------------------------------------------------------------------


def _complex_signal(ctx: KernelContext, signal: np.ndarray) -> tuple[np.ndarray, bool]:
    """The signal as a complex (or real) numpy array without its trailing [1] or [2] dim."""
    if signal.ndim < 2 or signal.shape[-1] not in (1, 2):
        raise ctx.fail(
            f"input signal must end in a dim of 1 (real) or 2 (complex), got {list(signal.shape)}"
        )
    values = signal.astype(working_dtype(signal.dtype), copy=False)
    if signal.shape[-1] == 1:
        return values[..., 0], False
    return values[..., 0] + 1j * values[..., 1], True


def _as_real_pairs(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A complex array as real tensors with a trailing [real, imaginary] dim."""
    if np.iscomplexobj(values):
        return np.stack([values.real, values.imag], axis=-1).astype(dtype)
    return values[..., None].astype(dtype)


def _dft(ctx: KernelContext, inputs: Sequence[Value], axis: int) -> list[Value]:
    """DFT: y[k] = sum_n x[n] e^(-2 pi j k n / N);
    inverse: x[n] = 1/N sum_k y[k] e^(2 pi j k n / N)."""
    signal = float_input(ctx, inputs[0], "input")
    values, is_complex = _complex_signal(ctx, signal)
    axis = _signal_axis(ctx, axis, signal.ndim)
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    length_value = optional_input(inputs, 1)
    extent = values.shape[axis]
    default = 2 * (extent - 1) if onesided and inverse else extent
    length = default if length_value is None else scalar_int(ctx, length_value, "dft_length")
    if length <= 0:
        raise ctx.fail(f"dft_length must be positive, got {length}")
    if onesided and not inverse:
        if is_complex:
            raise ctx.fail("a one-sided forward DFT (onesided=1) needs a real input [..., 1]")
        result = np.fft.rfft(values, n=length, axis=axis)
    elif onesided:
        if not is_complex:
            raise ctx.fail("a one-sided inverse DFT (onesided=1) needs a complex input [..., 2]")
        if length // 2 + 1 != extent:
            raise ctx.unsupported(
                f"a one-sided inverse DFT of {extent} bins to dft_length {length}: the length "
                f"must be {2 * extent - 2} or {2 * extent - 1}"
            )
        result = np.fft.irfft(values, n=length, axis=axis)
    else:
        transform = np.fft.ifft if inverse else np.fft.fft
        result = transform(values, n=length, axis=axis)
    return [_as_real_pairs(result, signal.dtype)]


def _signal_axis(ctx: KernelContext, axis: int, rank: int) -> int:
    """The DFT axis in [0, rank - 2]: the trailing real/imaginary dim is not a signal axis."""
    normal = axis + rank if axis < 0 else axis
    if not 0 <= normal <= rank - 2:
        raise ctx.fail(f"axis {axis} is out of range [-{rank}, -2] or [0, {rank - 2}]")
    return normal


@register("DFT", since=17)
def dft_17(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DFT (opset 17): the axis is an attribute, default 1."""
    return _dft(ctx, inputs, int(ctx.attr("axis", 1)))


@register("DFT", since=20)
def dft_20(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """DFT (opset 20): the axis is the optional third input, default -2."""
    axis_value = optional_input(inputs, 2)
    axis = -2 if axis_value is None else scalar_int(ctx, axis_value, "input axis")
    return _dft(ctx, inputs, axis)


@register("STFT", since=17)
def stft(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """STFT: frame f is DFT(window * x[f * step : f * step + length]);
    frames = floor((signal_length - length) / step) + 1, bins = length // 2 + 1 when onesided."""
    signal = float_input(ctx, inputs[0], "input signal")
    values, is_complex = _complex_signal(ctx, signal)
    if values.ndim != 2:
        raise ctx.fail(f"input signal must be [batch, length, 1 or 2], got {list(signal.shape)}")
    step = scalar_int(ctx, inputs[1], "input frame_step")
    window_value, length_value = optional_input(inputs, 2), optional_input(inputs, 3)
    window = None if window_value is None else float_input(ctx, window_value, "input window")
    length = _frame_length(ctx, values.shape[1], window, length_value)
    if step <= 0 or not 0 < length <= values.shape[1]:
        raise ctx.fail(
            f"frame_step {step} and frame_length {length} do not fit a signal of "
            f"length {values.shape[1]}"
        )
    frames = np.lib.stride_tricks.sliding_window_view(values, length, axis=1)[:, ::step]
    if window is not None:
        frames = frames * window.astype(working_dtype(window.dtype))
    if ctx.attr("onesided", 1):
        if is_complex:
            raise ctx.fail("a one-sided STFT (onesided=1) needs a real signal [batch, length, 1]")
        spectrum = np.fft.rfft(frames, axis=-1)
    else:
        spectrum = np.fft.fft(frames, axis=-1)
    return [_as_real_pairs(spectrum, signal.dtype)]


def _frame_length(
    ctx: KernelContext, signal_length: int, window: np.ndarray | None, length_value: Value
) -> int:
    """frame_length: the input, else the window's length, else the whole signal."""
    if window is not None and window.ndim != 1:
        raise ctx.fail(f"input window must be 1-D, got shape {list(window.shape)}")
    if length_value is None:
        return signal_length if window is None else window.shape[0]
    length = scalar_int(ctx, length_value, "input frame_length")
    if window is not None and window.shape[0] != length:
        raise ctx.fail(f"window of length {window.shape[0]} with frame_length {length}")
    return length


# -- shape rules (RDP) -------------------------------------------------------------------------
#
# The elementwise functions keep their input's shape. The windows, MelWeightMatrix, DFT and STFT
# take extents from the VALUES of their small integer inputs (size, dft_length, frame_step ...):
# those follow shape tensors, and an element RDP does not know becomes a fresh symbol.

for _name in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan"):
    shape_rule(_name, since=7, op_class=OpClass.ISDOS)(same_as_input)
for _name in ("Sinh", "Cosh", "Asinh", "Acosh", "Atanh"):
    shape_rule(_name, since=9, op_class=OpClass.ISDOS)(same_as_input)
shape_rule("IsNaN", since=9, op_class=OpClass.ISDOS)(with_dtype(DType.BOOL))
shape_rule("IsInf", since=10, op_class=OpClass.ISDOS)(with_dtype(DType.BOOL))
shape_rule("BitShift", since=11, op_class=OpClass.ISDOS)(broadcast_rule())


def scalar_value(fact: TensorFact | None) -> Element:
    """The element of a one-element integer input (a size, a length), None if unknown."""
    values = None if fact is None else value_dims(fact)
    return values[0] if values is not None and len(values) == 1 else None


def _extent(ctx: ShapeContext, value: Element, note: str) -> Dim:
    """A value used as an extent: itself when it is one, else a fresh symbol."""
    return dims_or_unknown(ctx, [value], note)[0]


def _half_spectrum(length: Dim) -> Dim:
    """The bins of a one-sided spectrum of `length` points: floor(length / 2) + 1."""
    return floor_div(length, 2) + 1  # type: ignore[return-value]


@shape_rule("Det", since=11, op_class=OpClass.ISDOS)
def det_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """Det: X [*batch, M, M] -> [*batch]."""
    x = inputs[0]
    dims = x.shape.dims
    if dims is None:
        return [TensorFact(x.dtype, Shape.unknown())]
    if len(dims) < 2:
        raise ctx.fail(f"input X must end in square matrices [*, M, M], got {x.shape}")
    ctx.same(dims[-2], dims[-1], "the matrices are square")
    return [TensorFact(x.dtype, Shape(dims[:-2]))]


def _datatype_attr(ctx: ShapeContext) -> DType:
    return DType.from_onnx(int(ctx.attr("output_datatype", DType.FLOAT32.onnx)))


def window_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """HannWindow, HammingWindow, BlackmanWindow: [size], size the value of input 0."""
    size = _extent(ctx, scalar_value(inputs[0]), "window size")
    return [TensorFact(_datatype_attr(ctx), Shape([size]))]


for _name in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    shape_rule(_name, since=17, op_class=OpClass.ISVDOS)(window_shape)


@shape_rule("MelWeightMatrix", since=17, op_class=OpClass.ISVDOS)
def mel_weight_matrix_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """MelWeightMatrix: [floor(dft_length / 2) + 1, num_mel_bins], from the inputs' values."""
    mel_bins = _extent(ctx, scalar_value(inputs[0]), "num_mel_bins")
    dft_length = _extent(ctx, scalar_value(inputs[1]), "dft_length")
    return [TensorFact(_datatype_attr(ctx), Shape([_half_spectrum(dft_length), mel_bins]))]


def _complex_dim(ctx: ShapeContext, dim: Dim, needs: int | None, why: str) -> None:
    """The trailing dim of a signal: 1 (real) or 2 (complex); `needs` one of them."""
    if needs is not None:
        ctx.same(dim, needs, why)
    elif isinstance(dim, int) and dim not in (1, 2):
        raise ctx.fail(f"the signal's last dim must be 1 (real) or 2 (complex), got {dim}")
    elif not isinstance(dim, int):
        ctx.assume(sympy.Eq(dim, 1) | sympy.Eq(dim, 2), "the signal is real [..., 1] or complex")


def _dft_shape(
    ctx: ShapeContext, inputs: Facts, axis: int | None, length_fact: TensorFact | None
) -> list[TensorFact]:
    """DFT: the signal axis becomes n = dft_length (default: its extent n, or 2(n - 1) for the
    one-sided inverse), floor(n / 2) + 1 bins for the one-sided forward; the last dim becomes 2
    (complex), or 1 for the one-sided inverse (a real signal). `axis` None: not known."""
    signal = inputs[0]
    dims = signal.shape.dims
    if dims is None:
        return [TensorFact(signal.dtype, Shape.unknown())]
    if len(dims) < 2:
        raise ctx.fail(f"the signal must end in a dim of 1 or 2, got {signal.shape}")
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    needs = None if not onesided else (2 if inverse else 1)
    _complex_dim(ctx, dims[-1], needs, "a one-sided DFT's signal kind (onesided=1)")
    last = 1 if onesided and inverse else 2
    if axis is None:
        if not onesided and length_fact is None:  # every axis keeps its extent
            return [TensorFact(signal.dtype, Shape([*dims[:-1], last]))]
        return [TensorFact(signal.dtype, Shape([*ctx.unknown_shape(len(dims) - 1, "DFT"), last]))]
    normal = axis + len(dims) if axis < 0 else axis
    if not 0 <= normal <= len(dims) - 2:
        raise ctx.fail(f"axis {axis} is out of range for a signal of rank {len(dims)}")
    extent = dims[normal]
    if length_fact is not None:
        length = _extent(ctx, scalar_value(length_fact), "dft_length")
    else:
        length = 2 * (extent - 1) if onesided and inverse else extent
    result = list(dims)
    result[normal] = _half_spectrum(length) if onesided and not inverse else length
    result[-1] = last
    return [TensorFact(signal.dtype, Shape(result))]


@shape_rule("DFT", since=17, op_class=OpClass.ISVDOS)
def dft_17_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DFT (opset 17): the axis is an attribute, default 1 (see `_dft_shape`)."""
    return _dft_shape(ctx, inputs, int(ctx.attr("axis", 1)), optional(inputs, 1))


@shape_rule("DFT", since=20, op_class=OpClass.ISVDOS)
def dft_20_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """DFT (opset 20): the axis is the optional third input, default -2 (see `_dft_shape`)."""
    axis_fact = optional(inputs, 2)
    axis = -2 if axis_fact is None else scalar_value(axis_fact)
    axis = axis if isinstance(axis, int) else None
    return _dft_shape(ctx, inputs, axis, optional(inputs, 1))


@shape_rule("STFT", since=17, op_class=OpClass.ISVDOS)
def stft_shape(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
    """STFT: [batch, frames, bins, 2] from a signal [batch, length, 1 or 2]:
    frames = floor((length - frame_length) / frame_step) + 1,
    bins = floor(frame_length / 2) + 1 when onesided, else frame_length."""
    signal = inputs[0]
    dims = signal.shape.dims
    if dims is None:
        return [TensorFact(signal.dtype, Shape([*ctx.unknown_shape(3, "STFT"), 2]))]
    if len(dims) != 3:
        raise ctx.fail(f"the signal must be [batch, length, 1 or 2], got {signal.shape}")
    batch, length, kind = dims
    onesided = bool(ctx.attr("onesided", 1))
    _complex_dim(ctx, kind, 1 if onesided else None, "a one-sided STFT takes a real signal")
    frame_length = _frame_length_extent(ctx, length, optional(inputs, 2), optional(inputs, 3))
    step = scalar_value(inputs[1])
    if isinstance(step, int) and step <= 0:
        raise ctx.fail(f"frame_step must be positive, got {step}")
    step = _extent(ctx, step, "frame_step")
    frames = floor_div(length - frame_length, step) + 1
    bins = _half_spectrum(frame_length) if onesided else frame_length
    return [TensorFact(signal.dtype, Shape([batch, frames, bins, 2]))]


def _frame_length_extent(
    ctx: ShapeContext, length: Dim, window: TensorFact | None, length_fact: TensorFact | None
) -> Dim:
    """frame_length: the input's value, else the window's extent, else the signal's length."""
    window_dims = None if window is None else window.shape.dims
    if window_dims is not None and len(window_dims) != 1:
        raise ctx.fail(f"the window must be 1-D, got {Shape(window_dims)}")
    if length_fact is not None:
        frame_length = _extent(ctx, scalar_value(length_fact), "frame_length")
        if window_dims is not None:
            frame_length = ctx.same(window_dims[0], frame_length, "window length = frame_length")
        return frame_length
    if window is None:
        return length
    return window_dims[0] if window_dims is not None else ctx.fresh(note="window length")
