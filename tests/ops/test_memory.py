"""The memory tables: which inputs a node's output may overwrite (`sod2.ops.memory`)."""

from __future__ import annotations

from sod2.ops.memory import may_write_in_place, overwritable_inputs
from sod2.opt.fusion import fuse
from tests.backend.test_runtime import _residual_chain_model
from tests.opt.test_fusion import conv_model, everything


def test_a_chain_may_overwrite_only_what_its_last_epilogue_alone_reads():
    model = _residual_chain_model()
    fuse(model, supports=everything)
    (chain,) = [n for n in model.graph.nodes if n.attr("kind", None) == "chain"]
    assert may_write_in_place(chain)
    (position,) = overwritable_inputs(chain)
    assert chain.inputs[position].producer.name == "conv"  # the shortcut, not X or a weight
    assert chain.inputs[0].name == "x" and 0 not in overwritable_inputs(chain)


def test_a_chain_whose_epilogue_reads_its_own_input_overwrites_nothing():
    model = conv_model(["conv", "relu", "conv", "residual"])  # relu(conv(x)) -> conv -> + x
    (group,) = fuse(model, supports=everything)
    (chain,) = [n for n in model.graph.nodes if n.attr("kind", None) == "chain"]
    assert group.kind == "chain" and overwritable_inputs(chain) == frozenset()


def test_other_nodes_keep_their_rules():
    model = conv_model(["relu", "scale"])
    (group,) = fuse(model, supports=everything)
    (fused,) = model.graph.nodes
    assert group.kind == fused.attr("kind") == "elementwise"
    assert may_write_in_place(fused) and overwritable_inputs(fused) is None
