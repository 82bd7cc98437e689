"""DMP: the symbolic plan is valid at every binding, tight, and real execution agrees with it."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sod2.zoo
from sod2 import load
from sod2.backend.planned import run_planned
from sod2.backend.reference import run_reference
from sod2.errors import Sod2Error
from sod2.opt import memory_plan, placement
from sod2.opt.memory_plan import AboveDags, PlanError, PlanOptions, plan_memory
from sod2.opt.memory_report import figures
from sod2.testing.strategies import SYMBOL_RANGES, bindings, dynamic_graphs

ZOO = sod2.zoo.names()


@pytest.fixture(scope="module")
def plans():
    """Every shipped zoo model planned once, with its ranges."""
    found = {}
    for name in ZOO:
        entry = sod2.zoo.get(name)
        model = load(entry.path())
        ranges = {s.name: (s.low, s.high) for s in entry.symbols}
        found[name] = (entry, model, plan_memory(model, options=PlanOptions(ranges=ranges)))
    return found


def assert_valid(top, binding):
    """No two storages alive at one step overlap, and each fits inside the arena."""
    concrete = top.instantiate(binding)
    sizes = top.sizes(top.binding_values(binding))
    start = np.array([s.start for s in top.storages], dtype=np.int64)
    end = np.array([s.end for s in top.storages], dtype=np.int64)
    placement.check_placement(start, end, sizes, concrete.offsets, concrete.arena_bytes)
    return concrete


@pytest.mark.parametrize("name", ZOO)
@settings(max_examples=25)
@given(data=st.data())
def test_plan_is_valid_at_random_bindings_over_the_whole_range(plans, name, data):
    entry, _, plan = plans[name]
    binding = {s.name: data.draw(st.integers(s.low, s.high), label=s.name) for s in entry.symbols}
    assert_valid(plan.top, binding)
    for subplans in plan.top.subplans.values():
        for subplan in subplans.values():
            assert_valid(subplan, binding)


@pytest.mark.parametrize("name", ZOO)
@settings(max_examples=3)
@given(data=st.data())
def test_planned_execution_matches_the_reference(plans, name, data):
    entry, model, plan = plans[name]
    binding = data.draw(bindings(entry))
    feeds = entry.make_inputs(binding, seed=data.draw(st.integers(0, 99)))
    expected = run_reference(model, feeds).outputs
    got = run_planned(model, plan, feeds).outputs
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", ZOO)
def test_targets_at_every_sweep_point(plans, name):
    entry, _, plan = plans[name]
    for point in entry.sweep:  # bindings the plan never saw: versions come from other points
        result = figures(plan, point.values(), repeat=1)
        assert result.order_peak_bytes <= result.default_order_peak_bytes, point
        assert result.arena_bytes >= result.order_peak_bytes, point
        assert result.arena_bytes <= 1.05 * result.greedy_by_size_bytes, point
        assert result.arena_bytes <= 1.10 * result.order_peak_bytes, point
        assert result.no_reuse_bytes >= result.online_best_fit_bytes >= result.order_peak_bytes


@pytest.mark.parametrize("name", ["sam_mask_decoder", "yolov6"])
def test_compiled_and_python_placement_agree(plans, name):
    entry, _, plan = plans[name]
    top = plan.top
    python = AboveDags(top.versions, top.dynamic, backend="python")
    for point in entry.sweep:
        sizes = top.sizes(top.binding_values(point.values()))
        for static_only in (False, True):
            fast = top.dags.place(sizes, static_only=static_only)
            slow = python.place(sizes, static_only=static_only)
            assert all((a == b).all() for a, b in zip(fast, slow, strict=True))


@settings(max_examples=15)
@given(dynamic_graphs(), st.data())
def test_random_graphs_run_in_their_plan(case, data):
    ranges = dict(SYMBOL_RANGES, **({"C": (1, 5)} if case.symbolic_channels else {}))
    plan = plan_memory(case.model, options=PlanOptions(ranges=ranges, time_limit_s=0.5))
    binding = data.draw(case.bindings())
    feeds = case.inputs(binding)
    try:
        expected = run_reference(case.model, feeds).outputs
    except Sod2Error:  # a binding the graph cannot run at (a kernel larger than the input)
        assume(False)
    got = run_planned(case.model, plan, feeds).outputs
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-5)


def test_static_offsets_do_not_depend_on_run_time_symbols(plans):
    _, _, plan = plans["yolov6"]
    top = plan.top
    assert any(top.dynamic), "yolov6 has storages sized by its NonZero count"
    binding = sod2.zoo.get("yolov6").sweep[0].values()
    static = top.instantiate_static(binding)
    bounds = top.binding_values(binding)
    runtime = [s.name for s in top.runtime_symbols]
    for fraction in (0.0, 0.3, 1.0):
        values = {**binding, **{name: int(bounds[name] * fraction) for name in runtime}}
        full = assert_valid(top, values)
        assert full.version == static.version
        keep = ~np.array(top.dynamic)
        assert (full.offsets[keep] == static.offsets[keep]).all()


def test_errors_name_what_is_missing(plans):
    entry, model, plan = plans["skipnet"]
    with pytest.raises(PlanError, match="bind the input symbols"):
        plan.instantiate({})
    with pytest.raises(PlanError, match="not input symbols"):
        plan_memory(model, options=PlanOptions(ranges={"Q": (1, 2)}))


def test_symbolic_offsets_read_as_expressions(plans):
    _, _, plan = plans["codebert"]
    top = plan.top
    binding = sod2.zoo.get("codebert").sweep[1].values()
    concrete = top.instantiate(binding)
    for index in range(0, len(top.storages), max(1, len(top.storages) // 6)):
        offset = top.offset_expr(index, concrete.version)
        if not isinstance(offset, int):
            offset = offset.subs({s: binding[s.name] for s in offset.free_symbols})
        assert int(offset) == concrete.offsets[index]


def _orient_oracle(start, end, size, offsets, dynamic):
    """The above-DAG's direct edges by definition: b's parents are the conflicting storages
    ranked below it (static first, then by offset, top, index) that are not already below
    another of its parents."""
    count = len(size)
    rank = sorted(
        range(count), key=lambda b: (bool(dynamic[b]), offsets[b], offsets[b] + size[b], b)
    )
    below = {b: set() for b in range(count)}  # transitive
    direct = {}
    for position, b in enumerate(rank):
        chosen, implied = [], set()
        for a in reversed(rank[:position]):
            if start[a] <= end[b] and end[a] >= start[b] and a not in implied:
                chosen.append(a)
                implied |= below[a]
        below[b] = implied | set(chosen)
        direct[b] = tuple(sorted(chosen))
    return [direct[b] for b in range(count)]


@given(st.data())
def test_above_dag_edges_match_their_definition(data):
    count = data.draw(st.integers(0, 30))
    start = np.array(data.draw(st.lists(st.integers(0, 12), min_size=count, max_size=count)))
    start = start.astype(np.int64)
    end = start + np.array(data.draw(st.lists(st.integers(0, 6), min_size=count, max_size=count)))
    size = 64 * np.array(data.draw(st.lists(st.integers(0, 8), min_size=count, max_size=count)))
    dynamic = np.array(data.draw(st.lists(st.booleans(), min_size=count, max_size=count)), bool)
    offsets = memory_plan._greedy_static_first(start, end, size.astype(np.int64), dynamic)
    got = memory_plan._orient(start, end, size, offsets, dynamic)
    assert got == _orient_oracle(start, end, size, offsets, dynamic)


@settings(max_examples=15, deadline=None)
@given(dynamic_graphs(), st.data())
def test_kernel_workspace_is_planned_alive_at_its_step_only(case, data):
    """Every node given a workspace gets a storage of that size alive at its step only, in
    the top graph and in bodies; the plan stays valid and runs the graph."""
    from sod2.analysis.liveness import tensor_bytes
    from sod2.opt.workspace import is_workspace

    ranges = dict(SYMBOL_RANGES, **({"C": (1, 5)} if case.symbolic_channels else {}))
    options = PlanOptions(ranges=ranges, time_limit_s=0.5)
    asked = {}

    def workspace(node):  # twice the bytes of its first output, in whole lines
        size = tensor_bytes(plan_facts.get(node.outputs[0]))
        if size is None:
            return None
        asked[node] = 64 * (2 * size // 64 + 1)
        return asked[node]

    from sod2.analysis.rdp import propagate

    rdp = propagate(case.model)
    plan_facts = rdp.facts
    plan = plan_memory(case.model, rdp, options, workspace)
    top = plan.top
    binding = data.draw(case.bindings())
    concrete = assert_valid(top, binding)
    values = top.binding_values(binding)
    sizes = top.sizes(values)
    spaces = [(k, s) for k, s in enumerate(top.storages) if is_workspace(s)]
    assert {s.scratch_of for _, s in spaces} == {n for n in asked if n.graph is top.graph}
    for k, storage in spaces:
        need = asked[storage.scratch_of]
        if not isinstance(need, int):
            need = int(need.subs({sym: values[sym.name] for sym in need.free_symbols}))
        assert int(sizes[k]) == need and storage.start == storage.end
        assert concrete.offsets[k] + need <= concrete.arena_bytes
    feeds = case.inputs(binding)
    try:
        expected = run_reference(case.model, feeds).outputs
    except Sod2Error:
        assume(False)
    got_outputs = run_planned(case.model, plan, feeds).outputs
    for key, value in expected.items():
        np.testing.assert_allclose(got_outputs[key], value, rtol=1e-4, atol=1e-5)
