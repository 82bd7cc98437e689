"""Recurrent layers: RNN, GRU, LSTM (one layer, forward, reverse or bidirectional).

Each direction is a loop over time steps (the recurrence is inherently sequential), vectorized
over the batch and the hidden units; the input projection X W^T + Wb of all steps is one matmul
before the loop. The care is in ONNX's conventions:
- weights stack the gates along their first axis in ONNX's order: LSTM i, o, f, c (peepholes
  i, o, f); GRU z, r, h; B holds all W biases, then all R biases;
- `sequence_lens` gives each batch entry its own length: past it the state stays as it was and
  Y is zero; the reverse direction of an entry starts at its own last valid step;
- `activations` names f, g (and h for LSTM) per direction; `activation_alpha` / `activation_beta`
  are consumed in order by the activations that take them (defaults otherwise), as onnxruntime
  reads them;
- `clip` bounds every gate's input to its activation; `input_forget` couples f = 1 - i;
- GRU's `linear_before_reset` applies R_h before the reset gate instead of after;
- `layout=1` (opset 14) puts the batch first in X, Y and the states.
Everything runs in float64 and is cast back to the input's type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sod2.analysis.facts import Facts, TensorFact
from sod2.analysis.rule_kit import Rule, optional
from sod2.analysis.shape_context import ShapeContext
from sod2.ir.dims import Dim
from sod2.ir.types import Shape
from sod2.ops.registry import KernelContext, OpClass, Value, as_array, register, shape_rule

_Function = Callable[[np.ndarray, float, float], np.ndarray]
Clip = Callable[[np.ndarray], np.ndarray]

# name -> (function, default alpha or None when unused, default beta or None when unused)
_ACTIVATIONS: dict[str, tuple[_Function, float | None, float | None]] = {
    "relu": (lambda x, a, b: np.maximum(x, 0.0), None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: 1.0 / (1.0 + np.exp(-x)), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x >= a, x, 0.0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0.0, 1.0), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1)), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0.0, x), None, None),
}


@dataclass(frozen=True, slots=True)
class Activation:
    """One activation function of a recurrent layer, with its alpha and beta."""

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _ACTIVATIONS[self.name][0](x, self.alpha, self.beta)


def _optional(inputs: Sequence[Value], index: int) -> Value:
    return inputs[index] if len(inputs) > index else None


def _activations(
    ctx: KernelContext, defaults: list[str], directions: int
) -> list[list[Activation]]:
    """The activation functions of each direction (f, g[, h]), alphas and betas in order."""
    names = [str(n) for n in ctx.attr("activations", ())] or defaults * directions
    if len(names) != len(defaults) * directions:
        raise ctx.fail(
            f"activations {names} must name {len(defaults)} functions per direction ({directions})"
        )
    alphas = [float(a) for a in ctx.attr("activation_alpha", ())]
    betas = [float(b) for b in ctx.attr("activation_beta", ())]
    functions = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ctx.unsupported(f"activation function {name!r}")
        _, alpha_default, beta_default = _ACTIVATIONS[key]
        alpha = (alphas.pop(0) if alphas else alpha_default) if alpha_default is not None else 0.0
        beta = (betas.pop(0) if betas else beta_default) if beta_default is not None else 0.0
        functions.append(Activation(key, alpha, beta))
    per_direction = len(defaults)
    return [functions[d * per_direction : (d + 1) * per_direction] for d in range(directions)]


@dataclass(frozen=True)
class RecurrentInputs:
    """The inputs of a recurrent node in the time-major layout, float64."""

    x: np.ndarray  # (T, B, I)
    w: np.ndarray  # (D, G * H, I)
    r: np.ndarray  # (D, G * H, H)
    w_bias: np.ndarray  # (D, G * H)
    r_bias: np.ndarray  # (D, G * H)
    lengths: np.ndarray  # (B,)
    directions: tuple[bool, ...]  # reverse? per direction
    hidden: int
    dtype: np.dtype  # the element type of X and of every output


def _directions(ctx: KernelContext) -> tuple[bool, ...]:
    direction = str(ctx.attr("direction", "forward"))
    found = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}.get(direction)
    if found is None:
        raise ctx.fail(f"direction {direction!r} is not forward, reverse or bidirectional")
    return found


def read_inputs(ctx: KernelContext, inputs: Sequence[Value], gates: int) -> RecurrentInputs:
    """X, W, R, B and sequence_lens, checked and put in the (T, B, ...) layout."""
    x_given = as_array(inputs[0], ctx, "input X")
    x = x_given.astype(np.float64)
    w = as_array(inputs[1], ctx, "input W").astype(np.float64)
    r = as_array(inputs[2], ctx, "input R").astype(np.float64)
    directions = _directions(ctx)
    hidden = int(ctx.attr("hidden_size", r.shape[-1] if r.ndim == 3 else 0))
    if int(ctx.attr("layout", 0)):
        x = x.transpose(1, 0, 2)
    count = len(directions)
    if (
        x.ndim != 3
        or w.shape != (count, gates * hidden, x.shape[2])
        or r.shape != (count, gates * hidden, hidden)
    ):
        raise ctx.fail(
            f"X {list(x.shape)} (time-major), W {list(w.shape)} and R {list(r.shape)} do not fit "
            f"{count} direction(s), {gates} gates and hidden_size {hidden}"
        )
    bias = _optional(inputs, 3)
    b = np.zeros((count, 2 * gates * hidden)) if bias is None else as_array(bias, ctx, "B")
    if b.shape != (count, 2 * gates * hidden):
        raise ctx.fail(f"B {list(b.shape)} must be [{count}, {2 * gates * hidden}]")
    b = b.astype(np.float64)
    steps, batch = x.shape[:2]
    given = _optional(inputs, 4)
    lengths = (
        np.full(batch, steps, dtype=np.int64)
        if given is None
        else as_array(given, ctx, "sequence_lens").astype(np.int64).reshape(-1)
    )
    if lengths.shape != (batch,) or (lengths.size and (lengths.min() < 0 or lengths.max() > steps)):
        raise ctx.fail(
            f"sequence_lens {lengths.tolist()} must give {batch} lengths in [0, {steps}]"
        )
    split = gates * hidden
    return RecurrentInputs(
        x, w, r, b[:, :split], b[:, split:], lengths, directions, hidden, x_given.dtype
    )


def initial_state(
    ctx: KernelContext, value: Value, inputs: RecurrentInputs, what: str
) -> np.ndarray:
    """An initial state (D, B, H), zeros when absent."""
    shape = (len(inputs.directions), inputs.x.shape[1], inputs.hidden)
    if value is None:
        return np.zeros(shape)
    array = as_array(value, ctx, what).astype(np.float64)
    if int(ctx.attr("layout", 0)):
        array = array.transpose(1, 0, 2)
    if array.shape != shape:
        raise ctx.fail(f"{what} {list(array.shape)} must be {list(shape)} (direction-major)")
    return array


Step = Callable[[np.ndarray, tuple[np.ndarray, ...]], tuple[np.ndarray, ...]]
"""One time step: (projected input X_t W^T + Wb, states) -> new states; states[0] is H."""


def run_direction(
    projected: np.ndarray,
    states: tuple[np.ndarray, ...],
    lengths: np.ndarray,
    reverse: bool,
    step: Step,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Apply `step` over time (backwards if reverse); entries past their length keep their
    state and output zeros. Returns Y (T, B, H) and the final states."""
    steps = projected.shape[0]
    outputs = np.zeros((steps, *states[0].shape))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        active = (t < lengths)[:, None]
        updated = step(projected[t], states)
        states = tuple(np.where(active, new, old) for new, old in zip(updated, states, strict=True))
        outputs[t] = np.where(active, states[0], 0.0)
    return outputs, states


def _clip(ctx: KernelContext) -> Clip:
    limit = ctx.attr("clip")
    if limit is None:
        return lambda x: x
    bound = float(limit)
    return lambda x: np.clip(x, -bound, bound)


def assemble_outputs(
    ctx: KernelContext, dtype: np.dtype, ys: list[np.ndarray], finals: list[tuple[np.ndarray, ...]]
) -> list[Value]:
    """Y (T, D, B, H) and the final states (D, B, H), batch-first if layout=1, cast to dtype."""
    y = np.stack(ys, axis=1)
    states = [np.stack([final[k] for final in finals]) for k in range(len(finals[0]))]
    if int(ctx.attr("layout", 0)):
        y = y.transpose(2, 0, 1, 3)
        states = [s.transpose(1, 0, 2) for s in states]
    results = [y.astype(dtype), *(s.astype(dtype) for s in states)]
    return results[: len(ctx.node.outputs)]


def run_layer(
    ctx: KernelContext,
    data: RecurrentInputs,
    initial: list[np.ndarray],
    make_step: Callable[[int], Step],
) -> list[Value]:
    """Run every direction from its initial states (each (D, B, H)) and assemble the outputs."""
    ys, finals = [], []
    for d, reverse in enumerate(data.directions):
        projected = data.x @ data.w[d].T + data.w_bias[d]
        states = tuple(state[d] for state in initial)
        y, final = run_direction(projected, states, data.lengths, reverse, make_step(d))
        ys.append(y)
        finals.append(final)
    return assemble_outputs(ctx, data.dtype, ys, finals)


# -- RNN -------------------------------------------------------------------------------------


def rnn_step(r: np.ndarray, r_bias: np.ndarray, f: Activation, clip: Clip) -> Step:
    """H_t = f(X_t W^T + Wb + H_(t-1) R^T + Rb)."""

    def step(x_t: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return (f(clip(x_t + states[0] @ r.T + r_bias)),)

    return step


@register("RNN", since=7)
def rnn(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """RNN: H_t = f(X_t W^T + H_(t-1) R^T + Wb + Rb), f = Tanh by default."""
    data = read_inputs(ctx, inputs, gates=1)
    h0 = initial_state(ctx, _optional(inputs, 5), data, "initial_h")
    functions = _activations(ctx, ["Tanh"], len(data.directions))
    clip = _clip(ctx)
    return run_layer(
        ctx, data, [h0], lambda d: rnn_step(data.r[d], data.r_bias[d], functions[d][0], clip)
    )


# -- GRU -------------------------------------------------------------------------------------


def gru_step(
    r: np.ndarray,
    r_bias: np.ndarray,
    functions: list[Activation],
    clip: Clip,
    before_reset: bool,
) -> Step:
    """z, r = f(X W_zr^T + Wb_zr + H R_zr^T + Rb_zr); h~ = g(X W_h^T + Wb_h + (r * H) R_h^T +
    Rb_h), or r * (H R_h^T + Rb_h) with linear_before_reset; H_t = (1 - z) h~ + z H."""
    f, g = functions
    size = r.shape[1]
    r_gates, r_hidden = r[: 2 * size].T, r[2 * size :].T
    bias_gates, bias_hidden = r_bias[: 2 * size], r_bias[2 * size :]

    def step(x_t: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        (h,) = states
        gates = f(clip(x_t[:, : 2 * size] + h @ r_gates + bias_gates))
        update, reset = gates[:, :size], gates[:, size:]
        if before_reset:
            recurrent = reset * (h @ r_hidden + bias_hidden)
        else:
            recurrent = (reset * h) @ r_hidden + bias_hidden
        candidate = g(clip(x_t[:, 2 * size :] + recurrent))
        return ((1 - update) * candidate + update * h,)

    return step


@register("GRU", since=7)
def gru(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """GRU: update and reset gates, a candidate state, H_t = (1 - z) * h~ + z * H_(t-1)."""
    data = read_inputs(ctx, inputs, gates=3)
    h0 = initial_state(ctx, _optional(inputs, 5), data, "initial_h")
    functions = _activations(ctx, ["Sigmoid", "Tanh"], len(data.directions))
    clip = _clip(ctx)
    before_reset = bool(ctx.attr("linear_before_reset", 0))
    return run_layer(
        ctx,
        data,
        [h0],
        lambda d: gru_step(data.r[d], data.r_bias[d], functions[d], clip, before_reset),
    )


# -- LSTM ------------------------------------------------------------------------------------


def _peepholes(ctx: KernelContext, value: Value, directions: int, hidden: int) -> np.ndarray:
    if value is None:
        return np.zeros((directions, 3 * hidden))
    array = as_array(value, ctx, "P").astype(np.float64)
    if array.shape != (directions, 3 * hidden):
        raise ctx.fail(f"P {list(array.shape)} must be [{directions}, {3 * hidden}]")
    return array


def lstm_step(
    r: np.ndarray,
    r_bias: np.ndarray,
    peepholes: np.ndarray,
    functions: list[Activation],
    clip: Clip,
    coupled: bool,
) -> Step:
    """i = f(. + P_i C), f = f(. + P_f C) or 1 - i, C_t = f C + i g(.), o = f(. + P_o C_t),
    H_t = o h(C_t); each '.' is X W_gate^T + Wb_gate + H R_gate^T + Rb_gate."""
    f, g, h_act = functions
    p_input, p_output, p_forget = np.split(peepholes, 3)

    def step(x_t: np.ndarray, states: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        h, c = states
        i_in, o_in, f_in, c_in = np.split(x_t + h @ r.T + r_bias, 4, axis=1)
        input_gate = f(clip(i_in + p_input * c))
        forget = 1 - input_gate if coupled else f(clip(f_in + p_forget * c))
        cell = forget * c + input_gate * g(clip(c_in))
        output_gate = f(clip(o_in + p_output * cell))
        return output_gate * h_act(cell), cell

    return step


@register("LSTM", since=7)
def lstm(ctx: KernelContext, inputs: Sequence[Value]) -> list[Value]:
    """LSTM: input, forget and output gates with peepholes; C_t = f C_(t-1) + i c~, H_t = o h(C_t)."""
    data = read_inputs(ctx, inputs, gates=4)
    h0 = initial_state(ctx, _optional(inputs, 5), data, "initial_h")
    c0 = initial_state(ctx, _optional(inputs, 6), data, "initial_c")
    peepholes = _peepholes(ctx, _optional(inputs, 7), len(data.directions), data.hidden)
    functions = _activations(ctx, ["Sigmoid", "Tanh", "Tanh"], len(data.directions))
    clip = _clip(ctx)
    coupled = bool(ctx.attr("input_forget", 0))
    return run_layer(
        ctx,
        data,
        [h0, c0],
        lambda d: lstm_step(data.r[d], data.r_bias[d], peepholes[d], functions[d], clip, coupled),
    )


# -- shape rules (RDP) -------------------------------------------------------------------------

_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _layer_dims(ctx: ShapeContext, inputs: Facts, gates: int) -> tuple[Dim, Dim, int, Dim]:
    """(T, B, D, H) of a recurrent layer; W [D, G*H, I] and R [D, G*H, H] are checked."""
    directions = _DIRECTIONS.get(str(ctx.attr("direction", "forward")))
    if directions is None:
        raise ctx.fail(
            f"direction {ctx.attr('direction')!r} is not forward, reverse or bidirectional"
        )
    x, w, r = (f.shape.dims for f in inputs[:3])
    hidden: Dim | None = ctx.attr("hidden_size")
    if hidden is None:
        hidden = r[-1] if r is not None and len(r) == 3 else ctx.fresh(note="hidden size")
    if x is None:
        steps, batch, features = (ctx.fresh(note="recurrent input of unknown rank") for _ in "TBI")
    elif len(x) != 3:
        raise ctx.fail(f"X {inputs[0].shape} must be 3-D")
    else:
        steps, batch, features = (x[1], x[0], x[2]) if ctx.attr("layout", 0) else x
    for name, dims, last in (("W", w, features), ("R", r, hidden)):
        if dims is None:
            continue
        if len(dims) != 3:
            raise ctx.fail(f"{name} {list(dims)} must be [directions, gates * hidden, {last}]")
        ctx.same(dims[0], directions, f"{name}'s dim 0 = the number of directions")
        ctx.same(dims[1], gates * hidden, f"{name}'s dim 1 = {gates} gates * hidden_size")
        ctx.same(dims[2], last, f"{name}'s dim 2")
    return steps, batch, directions, hidden


def _fits(ctx: ShapeContext, fact: TensorFact | None, dims: list[Dim], what: str) -> None:
    """An optional input, when given, has `dims`."""
    if fact is None or fact.shape.dims is None:
        return
    if len(fact.shape.dims) != len(dims):
        raise ctx.fail(f"{what} {fact.shape} must have {len(dims)} dims")
    for axis, (dim, extent) in enumerate(zip(fact.shape.dims, dims, strict=True)):
        ctx.same(dim, extent, f"{what}'s dim {axis}")


def _recurrent_shapes(gates: int, states: int) -> Rule:
    """A rule: Y [T, D, B, H] and `states` final states [D, B, H] (batch first if layout=1)."""

    def rule(ctx: ShapeContext, inputs: Facts) -> list[TensorFact]:
        steps, batch, directions, hidden = _layer_dims(ctx, inputs, gates)
        if ctx.attr("layout", 0):
            y, state = [batch, steps, directions, hidden], [batch, directions, hidden]
        else:
            y, state = [steps, directions, batch, hidden], [directions, batch, hidden]
        expected = {
            3: [directions, 2 * gates * hidden],  # B
            4: [batch],  # sequence_lens
            5: state,  # initial_h
            6: state,  # initial_c
            7: [directions, 3 * hidden],  # P
        }
        for index, dims in expected.items():
            _fits(ctx, optional(inputs, index), dims, f"input {index}")
        dtype = inputs[0].dtype
        return [TensorFact(dtype, Shape(y))] + [TensorFact(dtype, Shape(state))] * states

    rule.__doc__ = _recurrent_shapes.__doc__
    return rule


shape_rule("RNN", since=7, op_class=OpClass.ISDOS)(_recurrent_shapes(gates=1, states=1))
shape_rule("GRU", since=7, op_class=OpClass.ISDOS)(_recurrent_shapes(gates=3, states=1))
shape_rule("LSTM", since=7, op_class=OpClass.ISDOS)(_recurrent_shapes(gates=4, states=2))
