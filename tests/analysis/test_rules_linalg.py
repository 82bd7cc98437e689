"""Property: RDP's rules for the contractions (MatMul, Gemm, Einsum), Attention, the recurrent
layers and QuantizeLinear agree with execution and resolve every output dim, for random shapes
whose dims are all distinct symbols (so batch broadcasting and contracted dims must be derived)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sod2.ir import DType, Graph, Model, symbol, tensor_type
from sod2.testing.shape_check import check_model_shapes


def _model(op, arrays, attrs=None, outputs=1, opset=18, constants=()):
    """One `op` node over `arrays`: each a symbolic input (dims `<name>_d<axis>`), a constant
    when its name is in `constants`, or omitted when None."""
    graph = Graph("main")
    tensors, feeds = [], {}
    for name, array in arrays.items():
        if array is None:
            tensors.append(None)
        elif name in constants:
            tensors.append(graph.add_constant(array, name))
        else:
            dims = [symbol(f"{name}_d{axis}") for axis in range(array.ndim)]
            dtype = DType.from_numpy(array.dtype)
            tensors.append(graph.add_input(name, tensor_type(dtype, dims)))
            feeds[name] = array
    node = graph.add_node(op, tensors, attrs=attrs or {}, outputs=outputs)
    graph.set_outputs([t for t in node.outputs if t is not None])
    return Model(graph, {"": opset}), feeds


def _assert_exact(model, feeds):
    check = check_model_shapes(model, feeds)
    assert check.wrong == [], "\n".join(check.wrong)
    assert check.unsupported == []
    assert check.resolved == check.dims, f"{check.resolved} of {check.dims} dims resolved"


def _zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


extents = st.integers(1, 4)


@st.composite
def batch_pair(draw):
    """Two batch shapes that broadcast: suffixes of one shape, some dims replaced by 1."""
    batch = draw(st.lists(st.integers(2, 3), max_size=2))

    def operand():
        kept = batch[len(batch) - draw(st.integers(0, len(batch))) :]
        return [1 if draw(st.booleans()) else d for d in kept]

    return operand(), operand()


@settings(max_examples=80)
@given(batch_pair(), extents, extents, extents, st.booleans(), st.booleans())
def test_matmul_broadcasts_batches_and_drops_vector_axes(batches, m, k, n, a_vector, b_vector):
    a_shape = [k] if a_vector else [*batches[0], m, k]
    b_shape = [k] if b_vector else [*batches[1], k, n]
    model, feeds = _model("MatMul", {"a": _zeros(a_shape), "b": _zeros(b_shape)})
    _assert_exact(model, feeds)


@settings(max_examples=60)
@given(extents, extents, extents, st.booleans(), st.booleans(), st.integers(0, 6))
def test_gemm_transposes_and_broadcasts_c(m, k, n, trans_a, trans_b, c_kind):
    a = _zeros([k, m] if trans_a else [m, k])
    b = _zeros([n, k] if trans_b else [k, n])
    c = [None, [], [1], [n], [1, n], [m, 1], [m, n]][c_kind]
    arrays = {"a": a, "b": b, "c": None if c is None else _zeros(c)}
    model, feeds = _model("Gemm", arrays, {"transA": int(trans_a), "transB": int(trans_b)})
    _assert_exact(model, feeds)


EQUATIONS = [
    "ij,jk->ik",
    "bij,bjk->bik",
    "...ij,...jk->...ik",
    "ij,jk",
    "ii->i",
    "ii",
    "ij->ji",
    "ij->",
    "i,i->",
    "i,j->ij",
    "bhqd,bhkd->bhqk",
    "...i,...i->...",
    "abc->cab",
    "...ab->...ba",
    "a...,a...->...",
]


@settings(max_examples=80)
@given(st.sampled_from(EQUATIONS), st.data())
def test_einsum_output_follows_the_labels(equation, data):
    terms = equation.split("->")[0].split(",")
    labels = {label: data.draw(extents, label) for label in set("".join(terms)) - {"."}}
    ellipsis = data.draw(batch_pair())
    arrays = {}
    for index, term in enumerate(terms):
        head, dots, tail = term.partition("...")
        middle = ellipsis[index % 2] if dots else []
        arrays[f"x{index}"] = _zeros(
            [*(labels[c] for c in head), *middle, *(labels[c] for c in tail)]
        )
    model, feeds = _model("Einsum", arrays, {"equation": equation})
    _assert_exact(model, feeds)


@st.composite
def attention_cases(draw):
    """Inputs and attributes of one Attention node (3-D or 4-D, GQA, past, masks, causal)."""
    batch, kv_heads, groups = draw(extents), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    q_heads, q_len, kv_len = kv_heads * groups, draw(extents), draw(extents)
    head, v_head = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    attrs = {"is_causal": draw(st.integers(0, 1))}
    if draw(st.booleans()):  # 3-D inputs: heads folded into the hidden size
        attrs.update(q_num_heads=q_heads, kv_num_heads=kv_heads)
        q, k = _zeros([batch, q_len, q_heads * head]), _zeros([batch, kv_len, kv_heads * head])
        v = _zeros([batch, kv_len, kv_heads * v_head])
    else:
        q, k = _zeros([batch, q_heads, q_len, head]), _zeros([batch, kv_heads, kv_len, head])
        v = _zeros([batch, kv_heads, kv_len, v_head])
    past = draw(st.integers(0, 2))
    total = past + kv_len
    mask = None
    if draw(st.booleans()):
        lead = draw(st.sampled_from([[], [1], [batch, 1], [1, q_heads], [batch, q_heads]]))
        mask = _zeros([*lead, q_len, draw(st.integers(1, total))])
    arrays = {"q": q, "k": k, "v": v, "mask": mask, "past_key": None, "past_value": None}
    if past:
        arrays["past_key"] = _zeros([batch, kv_heads, past, head])
        arrays["past_value"] = _zeros([batch, kv_heads, past, v_head])
    return arrays, attrs


@settings(max_examples=60)
@given(attention_cases(), st.integers(1, 4))
def test_attention_outputs_and_present_key_values(case, outputs):
    arrays, attrs = case
    model, feeds = _model("Attention", arrays, attrs, outputs=outputs, opset=23)
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(
    st.sampled_from([("RNN", 1, 2), ("GRU", 3, 2), ("LSTM", 4, 3)]),
    st.sampled_from(["forward", "reverse", "bidirectional"]),
    st.integers(0, 1),
    extents,
    extents,
    extents,
    st.integers(1, 3),
)
def test_recurrent_outputs_follow_layout_and_directions(
    layer, direction, layout, steps, batch, features, hidden
):
    op, gates, outputs = layer
    directions = 2 if direction == "bidirectional" else 1
    x = _zeros([batch, steps, features] if layout else [steps, batch, features])
    arrays = {
        "x": x,
        "w": _zeros([directions, gates * hidden, features]),
        "r": _zeros([directions, gates * hidden, hidden]),
    }
    attrs = {"direction": direction, "layout": layout, "hidden_size": hidden}
    model, feeds = _model(op, arrays, attrs, outputs=outputs, opset=14, constants=("w", "r"))
    _assert_exact(model, feeds)


@settings(max_examples=40)
@given(st.lists(extents, min_size=1, max_size=4), st.data())
def test_quantize_linear_checks_per_axis_and_blocked_parameters(shape, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    block = data.draw(st.sampled_from([0, 0, 2, 3]))
    if block:
        scale_shape = [-(-d // block) if i == axis else d for i, d in enumerate(shape)]
    else:
        scale_shape = data.draw(st.sampled_from([[], [1], [shape[axis]]]))
    arrays = {"x": _zeros(shape), "scale": np.ones(scale_shape, np.float32)}
    attrs = {"axis": axis, "block_size": block} if block else {"axis": axis}
    model, feeds = _model("QuantizeLinear", arrays, attrs, opset=21)
    _assert_exact(model, feeds)
