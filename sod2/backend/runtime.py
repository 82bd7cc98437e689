"""The compiled runtime: a dynamic model turned, once, into a schedule of kernels over one arena.

`compile_model(model)` does the ahead-of-time work and `CompiledModel.run(feeds)` the per-call
work. Ahead of time:
1. clean-up passes (constant folding, dead code), then RDP (`sod2.analysis.rdp`);
2. fusion (`sod2.opt.fusion`): elementwise chains, heavy-op epilogues and chains of
   convolutions become `sod2::Fused` nodes, then RDP again on the fused model;
3. the memory plan (`sod2.opt.memory_plan`): SEP's execution order and DMP's symbolic offsets;
4. one *step* per node of that order, each holding the kernel it will call: a generated loop
   nest (`sod2.backend.codegen`) for a fused group, a fast kernel writing into its output
   (`sod2.backend.kernels`) where there is one, else the catalogue's reference kernel; a
   chain's stages run as one `BandChain`, band by band;
5. a generated evaluator of every resolved dim, so shapes cost one call per binding, and one of
   every value RDP proved as integers over the input symbols (shape arithmetic: Shape, and
   the Gather, Add, Mul, Div, Concat... over it).

Per call: the symbols are bound from the input shapes, the recorded assumptions are checked (a
violated one is an error that names it), and, once per distinct binding, the plan is instantiated
into one arena (grown when a binding needs more, reused across calls), every planned tensor
gets its arena view and every step whose kernel takes scratch its workspace region: the storage
the plan placed for it (`sod2.backend.scratch`), or the widest span of bytes nothing alive at
that step uses where that is wider (`sod2.opt.workspace`). Then the steps run in order, each writing its
outputs into their views.

A binding's second run skips most of the Python a step costs. At the first, a step whose inputs
are arena views or constants (the same arrays at every run of the binding) and whose outputs
have views has its kernels check those arrays once and return the computation as a call without
arguments (`bind`: `FusedKernel.bind`, `sod2.backend.kernels.Bindable`), kept in the binding's
frame (`_Bound`); later runs make that call, once they see the same input arrays. Kernels
decide only from shapes, strides, types and overlaps, never from elements, so the call
computes whatever the arrays then hold. Reshape-like ops and Split (`_ViewStep`,
`_SplitStep`) do not read their shape operands: RDP proved the output shapes, which the
binding fixes, so the output is the input's elements under that shape (nothing to copy where
the plan put it in the input's bytes) or its parts along the axis.

Shape arithmetic is not run at all. A top-level step whose every output is such a proved value
(not a graph output, which the caller owns, nor of a floating-point type) is folded: at each new
binding its outputs are evaluated with the others, kept read-only in the frame (`_Frame.known`),
and the step is left out of the binding's program (`_Frame.program`). So is a step one level
beyond: one that reads nothing but constants and such values (a Range over a length, the Cast
and the arithmetic of positions or of an anchor grid, a causal mask). Its values RDP does not
track, but the binding fixes them all the same: at each new binding the catalogue kernels
compute them once (`_fixed_program`, FIXED_MAX_BYTES at most per binding; a fused group's
body by the reference interpreter) and they are kept read-only in the frame with the others.
A runtime with `checked` set runs every step.

Invariants: a step writes only to its outputs' views, its workspace region or fresh arrays; a
bound call is used only for the very input arrays it was checked for; a
value kept outside the arena (a graph output, an EDO-shaped tensor, a subgraph's values) never
aliases the arena once its storage may be reused (it is copied out); a binding that violates an
assumption never runs.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from sod2 import cache
from sod2.analysis.facts import Assumption, TensorFact
from sod2.analysis.rdp import RDPResult, propagate
from sod2.backend.planned import bind_symbols, bindable_symbols
from sod2.backend.reference import ReferenceInterpreter, bind_inputs, check_result
from sod2.errors import Sod2Error
from sod2.ir.dims import Dim
from sod2.ir.graph import Graph, Node, Tensor
from sod2.ir.model import Model
from sod2.ops.fused import is_fused
from sod2.ops.registry import KernelContext, Value, lookup_node
from sod2.opt.evaluator import Evaluator, EvaluatorError
from sod2.opt.fusion import CHAIN_STAGE_OPS, copy_node
from sod2.opt.memory_plan import ConcretePlan, GraphPlan, MemoryPlan, PlanOptions, plan_memory
from sod2.opt.workspace import Lifetimes, occupancy, widest_gap, workspace_regions

if TYPE_CHECKING:
    from sod2.backend.kernels import Workspace

Env = dict[Tensor, Value] | ChainMap
"""Values by tensor: a dict for the top graph, a ChainMap (innermost first) in subgraphs."""


class AssumptionError(Sod2Error):
    """The inputs violate a relation the compiled model relies on (a recorded assumption)."""


WORKSPACE_BYTES = 6 << 20
"""`CompileOptions.workspace`'s default cap. At paper scale it keeps yolov6's and dgnet's arenas
under 0.6x onnxruntime's peak for a few percent of yolov6's time; 8 MiB bought no speed elsewhere
(`benchmarks/workspace.py` measures what each setting costs and saves, docs/performance.md)."""


@dataclass(frozen=True)
class CompileOptions:
    """What `compile_model` may do; switching parts off gives the ablation of the benchmarks."""

    fusion: bool = True
    """Fuse elementwise chains and heavy-op epilogues into generated loop nests."""
    chains: bool = True
    """With fusion: run a convolution whose result only another convolution reads together with
    that one, in bands of rows, so the result never takes arena memory (`sod2.opt.fusion`)."""
    sep: bool = True
    """Search the execution order for a lower memory peak (else the model's own order)."""
    dmp: bool = True
    """Run in one planned arena (else every tensor is allocated by numpy as it is made)."""
    mvc: bool = True
    """Fast kernels and specialized loop-nest versions (else reference kernels only)."""
    threads: int | None = None
    """Threads for Numba's parallel loops (None: Numba's default)."""
    ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Ranges of the input symbols the memory plan must be good over (zoo models: their own)."""
    plan_validation: int = 512
    """Bindings the plan's versions are validated on (`PlanOptions.validation`; the memory
    benchmark uses 4096): fewer make compiling faster, never the plan invalid."""
    workspace: int | None = WORKSPACE_BYTES
    """The most bytes the memory plan sets aside for the scratch of one step's kernels: what
    their default block budgets take (`sod2.backend.scratch`), capped at this. Placed with the
    tensors, it becomes the step's region, or the widest free gap there where that is wider
    (`sod2.opt.workspace`). Kernels fit their blocks to their region, so less saves memory
    for some speed. None (or fast kernels off): no workspace in the plan, kernels keep
    buffers of their own."""
    cache: bool = True
    """Keep the analysed model of a file in the compile cache, and load it from there while
    the file, sod2 and these options are unchanged (`compile_model`)."""


FIXED_MAX_BYTES = 1 << 20
"""The most bytes of values a binding keeps for the steps its shapes alone fix beyond shape
arithmetic (`CompiledModel._fixed_program`); the steps past it run at every call."""


@dataclass
class _Frame:
    """What one binding of the input symbols fixes: arena views and shapes."""

    concrete: ConcretePlan | None
    views: dict[Tensor, np.ndarray]
    shapes: dict[Tensor, tuple[int, ...]]
    regions: list[Workspace | None] = field(default_factory=list)
    """Per top-level step, its workspace region in the arena (None: the kernels' own buffers);
    empty without any."""
    inner_regions: dict[Node, Workspace] = field(default_factory=dict)
    """The workspace regions of the steps of control-flow bodies, by node."""
    bound: dict[_Step, _Bound] = field(default_factory=dict)
    """Steps whose kernels were checked once at this binding, with their calls (`_Bound`)."""
    known: dict[Tensor, np.ndarray] = field(default_factory=dict)
    """The values of the tensors the binding alone fixes (`CompiledModel._value_program`),
    read-only: the steps that compute them are not run."""
    program: list[tuple[_Step, Workspace | None]] = field(default_factory=list)
    """The top-level steps that run at this binding, each with its workspace region (None:
    the kernels' own buffers)."""


class _Bound:
    """A step's computation over fixed arrays, checked once: where the step's inputs are the
    same arrays again (arena views and constants are, at every run of a binding), `call()`
    computes its outputs `outs` without looking at shapes, types or overlaps again (a kernel's
    checks read only those, never the elements). A None `call`: the kernels did not bind those
    arrays, and the step computes them unbound."""

    __slots__ = ("call", "outs", "values")

    def __init__(
        self, values: list[Value], call: Callable[[], None] | None, outs: list[Any]
    ) -> None:
        self.values = values
        self.call = call
        self.outs = outs

    def fits(self, values: list[Value]) -> bool:
        """Whether `values` are the arrays this call was checked for."""
        return all(map(operator.is_, values, self.values))


@dataclass(frozen=True)
class WorkspaceStep:
    """One step's kernel workspace at one binding (`CompiledModel.workspace_steps`), in bytes."""

    step: int
    node: str
    op: str
    offset: int
    """Where its region starts in the arena."""
    region_bytes: int
    """The region: its workspace storage widened to the free bytes around it."""
    planned_bytes: int
    """The workspace storage the memory plan placed for the step."""
    used_bytes: int
    """The most its kernels took from the region at once, over the runs so far."""
    live_bytes: int
    """What the planned storages alive at the step take."""
    live_top: int
    """Where the highest of them ends."""


@dataclass(frozen=True)
class StepTime:
    """One step of a profiled binding (`CompiledModel.profile`)."""

    step: int
    """Its place in the schedule (`CompiledModel.steps`)."""
    node: str
    op: str
    """The node's op type; for a fused group, its kind and the ops of its body."""
    kind: str
    """How the step computes (`step_kind`): fused, epilogue, chain, fast, reference, view..."""
    shapes: tuple[tuple[int, ...], ...]
    """The shapes of its outputs at this binding (an output that is not an array: ())."""
    seconds: float
    """The least time the step took over the profiled runs."""


def step_kind(step: _Step) -> str:
    """How `step` computes, in a word: its class's name ("fused", "epilogue", "view"...), or
    "fast" for a catalogue op with a kernel writing into its output (`sod2.backend.kernels`)."""
    if isinstance(step, _ReferenceStep) and step.fast is not None:
        return "fast"
    return type(step).__name__.strip("_").replace("Step", "").lower()


def _op_label(node: Node) -> str:
    """`node`'s op type, or for a fused group "Fused[kind: Op+Op+...]" (at most six ops)."""
    if not is_fused(node):
        return node.op_type
    ops = [n.op_type for n in node.attr("body").nodes]
    shown = "+".join(ops[:6]) + ("+..." if len(ops) > 6 else "")
    return f"Fused[{node.attr('kind', 'elementwise')}: {shown}]"


# -- steps -------------------------------------------------------------------------------------


class _Step:
    """One node of the schedule: reads its inputs from the environment, writes its outputs."""

    __slots__ = ("inputs", "node", "outputs")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.inputs = tuple(node.inputs)
        self.outputs = tuple(node.outputs)

    def values(self, env: Env) -> list[Value]:
        return [None if t is None else env[t] for t in self.inputs]

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        raise NotImplementedError

    def bindable(self, frame: _Frame, runtime: CompiledModel) -> bool:
        """Whether every input is steady (`_steady`) and every output has its arena view: only
        then may a `_Bound` call of the step be kept (it holds those arrays between runs)."""
        return all(_steady(t, frame, runtime) for t in self.inputs) and all(
            t is None or t in frame.views for t in self.outputs
        )

    def reused(self, frame: _Frame, values: list[Value]) -> _Bound | None:
        """The step's `_Bound` call of an earlier run of `frame`'s binding, where `values` are
        the arrays it was checked for."""
        bound = frame.bound.get(self)
        return bound if bound is not None and bound.fits(values) else None

    def keep(
        self,
        frame: _Frame,
        runtime: CompiledModel,
        values: list[Value],
        outs: list[Any],
        binder: Callable[[list[Value], list[Any]], Callable[[], None] | None],
    ) -> Callable[[], None] | None:
        """`binder(values, outs)`, the step's call bound now, kept in `frame` where the step is
        `bindable`; None where it is not, or the kernels do not bind these arrays (that too is
        kept: later runs then compute unbound at once, without trying again)."""
        if not self.bindable(frame, runtime):
            return None
        call = binder(values, outs)
        frame.bound[self] = _Bound(values, call, outs)
        return call

    def planned_outputs(self, frame: _Frame, dtypes: Sequence[np.dtype]) -> list[np.ndarray] | None:
        """The arrays the outputs are to be written into (arena views, or fresh arrays of the
        shapes the binding fixes); None inside a subgraph whose shapes only running gives."""
        if self.outputs[0] not in frame.shapes:
            return None
        return [_out(t, frame, d) for t, d in zip(self.outputs, dtypes, strict=True)]  # type: ignore[arg-type]


def _out(tensor: Tensor, frame: _Frame, dtype: np.dtype) -> np.ndarray:
    """The array `tensor` is to be written into: its arena view, or a fresh one."""
    view = frame.views.get(tensor)
    if view is not None:
        return view
    return np.empty(frame.shapes[tensor], dtype=dtype)


class _ReferenceStep(_Step):
    """A catalogue kernel (or a fast kernel when every output's view is known); results are
    copied into their arena views."""

    __slots__ = ("context", "dtypes", "fast", "kernel")

    def __init__(self, node: Node, opset: int, fast: Any, dtypes: list[np.dtype | None]) -> None:
        super().__init__(node)
        self.kernel = lookup_node(node, opset).kernel
        self.context = KernelContext(node, opset)
        self.fast = fast
        self.dtypes = dtypes

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        values = self.values(env)
        bound = self.reused(frame, values)
        if bound is not None:
            if bound.call is not None:
                bound.call()
            else:
                self.fast(values, bound.outs)
            self._publish(env, bound.outs)
            return
        if self.fast is not None and all(t is None or t in frame.shapes for t in self.outputs):
            outs = [
                None if t is None else _out(t, frame, self.dtypes[i])  # type: ignore[arg-type]
                for i, t in enumerate(self.outputs)
            ]
            call = self.keep(frame, runtime, values, outs, self.fast.bind)
            if call is not None:
                call()
            else:
                self.fast(values, outs)
            self._publish(env, outs)
            return
        results = list(self.kernel(self.context, values))
        results += [None] * (len(self.outputs) - len(results))
        for tensor, result in zip(self.outputs, results, strict=True):
            if tensor is None:
                continue
            if runtime.checked:
                check_result(self.node, tensor, result)
            env[tensor] = runtime.place(tensor, result, frame)

    def _publish(self, env: Env, outs: Sequence[Any]) -> None:
        for tensor, array in zip(self.outputs, outs, strict=True):
            if tensor is not None:
                env[tensor] = array


VIEW_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
"""Ops whose output is their first input's elements in C order under another shape."""


class _ViewStep(_ReferenceStep):
    """A `VIEW_OPS` node whose output shape the binding fixes: the input's elements under that
    shape, in the output's arena view (nothing to do where the plan put the output in the
    input's own bytes); an output the plan does not place (a view of a graph input, say) is
    the input itself under that shape, where the input is not the arena's (else the catalogue
    kernel's result is copied out of it, `CompiledModel.place`). Its other operands (Reshape's
    shape, the axes) are not read: RDP proved the shape they give. Anything else (a checked
    run, an input of another size) takes the catalogue kernel, which names what is wrong."""

    __slots__ = ()

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        x = env[self.inputs[0]]  # type: ignore[index]
        out = self.outputs[0]
        bound = self.reused(frame, [x])
        if bound is not None:
            if bound.call is not None:
                bound.call()
            env[out] = bound.outs[0]  # type: ignore[index]
            return
        view = frame.views.get(out)  # type: ignore[arg-type]
        if view is None and not runtime.checked and self._unplanned(x, env, frame, runtime):
            return
        if (
            runtime.checked
            or view is None
            or not isinstance(x, np.ndarray)
            or x.dtype != view.dtype
            or x.size != view.size
        ):
            super().run(env, frame, runtime)
            return
        call = None
        if not (x.flags.c_contiguous and _address(x) == _address(view)):
            call = functools.partial(_reshape_into, view, x)
            call()
        if _steady(self.inputs[0], frame, runtime):
            frame.bound[self] = _Bound([x], call, [view])  # type: ignore[arg-type]
        env[out] = view  # type: ignore[index]

    def _unplanned(self, x: Value, env: Env, frame: _Frame, runtime: CompiledModel) -> bool:
        """`x` under the output's shape into `env` where the binding fixes that shape and `x`,
        of as many elements, is not the arena's (an unplanned output may outlive its input's
        storage): True; False, having done nothing, otherwise."""
        out = self.outputs[0]
        shape = frame.shapes.get(out)  # type: ignore[arg-type]
        if shape is None or min(shape, default=0) < 0 or not isinstance(x, np.ndarray):
            return False  # (a negative dim: one that only running the model gives)
        if x.size != math.prod(shape):
            return False
        if runtime.arena.size and np.may_share_memory(x, runtime.arena):
            return False
        env[out] = x.reshape(shape)  # type: ignore[index]
        return True


class _SplitStep(_ReferenceStep):
    """A Split whose outputs' shapes the binding fixes: each output's part of the input (the
    parts follow one another along the axis, in the sizes those shapes give) copied into its
    arena view. The sizes operand is not read: RDP proved the shapes it gives. Anything else
    takes the catalogue kernel, as `_ViewStep`."""

    __slots__ = ()

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        x = env[self.inputs[0]]  # type: ignore[index]
        bound = self.reused(frame, [x])
        if bound is not None:
            bound.call()  # type: ignore[misc]
            self._publish(env, bound.outs)
            return
        outs = [None if t is None else frame.views.get(t) for t in self.outputs]
        calls = None if runtime.checked else _split_calls(x, outs, int(self.node.attr("axis", 0)))
        if calls is None:
            super().run(env, frame, runtime)
            return
        from sod2.backend.kernels import sequence

        call = sequence(calls)
        call()
        if _steady(self.inputs[0], frame, runtime):
            frame.bound[self] = _Bound([x], call, outs)
        self._publish(env, outs)


def _split_calls(x: Value, outs: list[Any], axis: int) -> list[Callable[[], None]] | None:
    """The copies of `x`'s parts along `axis` into `outs` (None where they are not its parts:
    a missing output or view, another type, shapes that do not add up to x's)."""
    if not isinstance(x, np.ndarray) or any(o is None for o in outs):
        return None
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        return None
    calls = []
    start = 0
    for out in outs:
        if out.dtype != x.dtype or out.ndim != x.ndim:
            return None
        if out.shape[:axis] != x.shape[:axis] or out.shape[axis + 1 :] != x.shape[axis + 1 :]:
            return None
        part = x[(slice(None),) * axis + (slice(start, start + out.shape[axis]),)]
        start += out.shape[axis]
        calls.append(functools.partial(np.copyto, out, part))
    return calls if start == x.shape[axis] else None


def _steady(tensor: Tensor | None, frame: _Frame, runtime: CompiledModel) -> bool:
    """Whether `tensor`'s value is the same array at every run of `frame`'s binding: an arena
    view, a value the binding fixes (`_Frame.known`) or a constant of the model (or an omitted
    input)."""
    return (
        tensor is None
        or tensor in frame.views
        or tensor in frame.known
        or tensor in runtime._constants
    )


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _reshape_into(view: np.ndarray, x: np.ndarray) -> None:
    """`x`'s elements in C order into `view` (same size, another shape)."""
    np.copyto(view, x.reshape(view.shape))


class _ControlStep(_Step):
    """If / Loop / Scan: the catalogue kernel, its subgraphs run by their compiled programs."""

    __slots__ = ("kernel", "opset")

    def __init__(self, node: Node, opset: int) -> None:
        super().__init__(node)
        self.kernel = lookup_node(node, opset).kernel
        self.opset = opset

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        def run_graph(graph: Graph, inputs: Sequence[Value]) -> list[Value]:
            return runtime.run_subgraph(graph, inputs, env, frame)

        context = KernelContext(self.node, self.opset, run_graph=run_graph)
        results = list(self.kernel(context, self.values(env)))
        results += [None] * (len(self.outputs) - len(results))
        for tensor, result in zip(self.outputs, results, strict=True):
            if tensor is not None:
                check_result(self.node, tensor, result)
                env[tensor] = runtime.place(tensor, result, frame)


class _FusedStep(_Step):
    """A fused elementwise group: one generated loop nest writing every output."""

    __slots__ = ("dtypes", "kernel")

    def __init__(self, node: Node, kernel: Any, dtypes: list[np.dtype]) -> None:
        super().__init__(node)
        self.kernel = kernel
        self.dtypes = dtypes

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        values = self.values(env)
        bound = self.reused(frame, values)
        call = None
        if bound is not None:
            outs, call = bound.outs, bound.call
        else:
            outs = self.planned_outputs(frame, self.dtypes)  # type: ignore[assignment]
            if outs is None:  # inside a subgraph: the iteration shape is the inputs' broadcast
                shape = _broadcast(self.node, values)
                outs = [np.empty(shape, dtype=d) for d in self.dtypes]
            else:
                call = self.keep(frame, runtime, values, outs, self.kernel.bind)
        if call is not None:
            call()
        else:
            self.kernel(values, outs)
        for tensor, array in zip(self.outputs, outs, strict=True):
            env[tensor] = array  # type: ignore[index]


class _Stage:
    """A heavy op and the generated epilogue applied in place to each block of rows its kernel
    finishes: the computing part of an epilogue step, and each half of a chain."""

    __slots__ = ("anchor", "anchor_inputs", "constants", "epilogue", "others", "reference")

    def __init__(
        self,
        anchor: Any,
        anchor_inputs: list[int],
        epilogue: Any,
        others: list[int],
        reference: Callable[[list[Value]], np.ndarray],
        constants: Mapping[int, Value] | None = None,
    ) -> None:
        self.anchor = anchor
        self.anchor_inputs = anchor_inputs
        self.epilogue = epilogue
        self.others = others
        self.reference = reference
        self.constants = dict(constants or {})

    def operands(self, values: Sequence[Value], first: Value = None) -> list[Value]:
        """The anchor's inputs among the node's `values` (position -2: `first`, the value a
        chain hands from one stage to the next; -3: a constant of the body, in `constants`)."""
        return [
            first if i == -2 else values[i] if i >= 0 else self.constants.get(k)
            for k, i in enumerate(self.anchor_inputs)
        ]

    def run(
        self,
        values: Sequence[Value],
        outs: list[np.ndarray] | None,
        dtypes: Sequence[np.dtype],
        first: Value = None,
    ) -> list[np.ndarray]:
        """The anchor into `outs[0]` (fresh arrays of the anchor's result shape when None), the
        epilogue over it into every out; returns the outs."""
        anchor_values = self.operands(values, first)
        computed = None
        if outs is None:  # (inside a subgraph, unplanned: the anchor's result gives the shape)
            computed = self.reference(anchor_values)
            outs = [np.empty(computed.shape, dtype=d) for d in dtypes]
        target = outs[0]
        finish = _RowFinisher(self.epilogue, [values[i] for i in self.others], outs)
        if computed is None and self.anchor is not None:
            self.anchor(anchor_values, [target], finish)
        else:
            np.copyto(target, self.reference(anchor_values) if computed is None else computed)
            finish(0, target.shape[0] if target.ndim else 1)
        return outs

    def bind(self, values: Sequence[Value], outs: list[np.ndarray]) -> Callable[[], None] | None:
        """`run(values, outs, ...)` as a call without arguments, checked now, where the anchor's
        kernel can bind these operands (`sod2.backend.kernels.Bindable`); else None."""
        binder = getattr(self.anchor, "bind", None)
        if binder is None:
            return None
        finish = _RowFinisher(self.epilogue, [values[i] for i in self.others], outs)
        return binder(self.operands(values), [outs[0]], finish)  # type: ignore[no-any-return]


class _RowFinisher:
    """`finish(lo, hi)`: the epilogue (None: nothing) over rows [lo, hi) of the first output,
    which the anchor wrote, into those rows of every output; `bound(lo, hi)`, the same as a
    call without arguments, checked now (for a bound anchor, `sod2.backend.kernels.Bindable`)."""

    __slots__ = ("epilogue", "others", "outs", "rows")

    def __init__(self, epilogue: Any, others: list[Value], outs: list[np.ndarray]) -> None:
        self.epilogue = epilogue
        self.others = others
        self.outs = outs
        self.rows = outs[0].shape[0] if outs[0].ndim else 1

    def __call__(self, lo: int, hi: int) -> None:
        if self.epilogue is not None:
            self.epilogue(*self._operands(lo, hi))

    def bound(self, lo: int, hi: int) -> Callable[[], None] | None:
        if self.epilogue is None:
            return None
        call = self.epilogue.bind(*self._operands(lo, hi))
        return call if call is not None else functools.partial(self, lo, hi)

    def _operands(self, lo: int, hi: int) -> tuple[list[Value], list[np.ndarray]]:
        target, outs = self.outs[0], self.outs
        if target.ndim == 0 or (lo == 0 and hi == self.rows):
            return [target, *self.others], outs
        blocks = [_rows(v, lo, hi, target.ndim, self.rows) for v in self.others]  # type: ignore[arg-type]
        return [target[lo:hi], *blocks], [o[lo:hi] for o in outs]


class _EpilogueStep(_Step):
    """A heavy op writing into the group's first output, then the generated epilogue applied in
    place to each block of rows the heavy kernel finishes."""

    __slots__ = ("dtypes", "stage")

    def __init__(self, node: Node, stage: _Stage, dtypes: list[np.dtype]) -> None:
        super().__init__(node)
        self.stage = stage
        self.dtypes = dtypes

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        values = self.values(env)
        bound = self.reused(frame, values)
        if bound is not None:
            planned, call = bound.outs, bound.call
        else:
            planned = self.planned_outputs(frame, self.dtypes)  # type: ignore[assignment]
            call = None
            if planned is not None:
                call = self.keep(frame, runtime, values, planned, self.stage.bind)
        if call is not None:
            call()
            outs = planned
        else:
            outs = self.stage.run(values, planned, self.dtypes)
        for tensor, array in zip(self.outputs, outs, strict=True):
            env[tensor] = array  # type: ignore[index]


class _ChainStep(_Step):
    """Stages (Conv or Resize, each with its epilogue), each reading the one before's result
    alone: run as a `BandChain`, band by band, so those results never exist whole; where the
    chain has no loop for the inputs (or with fast kernels off), the stages run one after the
    other on whole values."""

    __slots__ = ("chain", "dtypes", "stages")

    def __init__(
        self, node: Node, stages: list[_Stage], chain: Any, dtypes: list[np.dtype]
    ) -> None:
        super().__init__(node)
        self.stages = stages
        self.chain = chain
        self.dtypes = dtypes

    def run(self, env: Env, frame: _Frame, runtime: CompiledModel) -> None:
        values = self.values(env)
        outs = self.planned_outputs(frame, self.dtypes)
        if outs is None or self.chain is None or not self._banded(values, outs):
            middle = None
            for stage in self.stages[:-1]:
                middle = stage.run(values, None, [_F32], middle)[0]
            # (fresh arrays: the output may share its bytes with an epilogue operand)
            made = self.stages[-1].run(values, None, self.dtypes, middle)
            if outs is None:
                outs = made
            else:
                for out, value in zip(outs, made, strict=True):
                    np.copyto(out, value)
        for tensor, array in zip(self.outputs, outs, strict=True):
            env[tensor] = array  # type: ignore[index]

    def _banded(self, values: Sequence[Value], outs: list[np.ndarray]) -> bool:
        finish = [_band_finisher(stage, values) for stage in self.stages[:-1]]
        last = self.stages[-1]
        target = outs[0]
        others = [values[i] for i in last.others]
        epilogue = last.epilogue
        finish_rows = _RowFinisher(epilogue, others, outs)
        operands = [stage.operands(values) for stage in self.stages]
        params = [ops[1:] for ops in operands]
        overwritten = [
            v for v in others if isinstance(v, np.ndarray) and np.may_share_memory(v, target)
        ]
        if epilogue is None or len(outs) != 1 or not overwritten:
            return bool(self.chain(operands[0][0], params, target, finish, finish_rows))
        # the output is written over an operand of the epilogue: block by block, each block
        # finished from that operand's rows before they are overwritten
        from sod2.backend.kernels import staged

        def finish_block(block: np.ndarray, n: int, r0: int, r1: int, upto: int) -> None:
            rows = [_block_rows(v, n, r0, r1, target.shape) for v in others]
            # the first operand whose rows are not contiguous (a band of X's) is copied into the
            # scratch that held the block's input rows (its first stage has read them); the
            # generated epilogue copies any other itself
            at = next((i for i, v in enumerate(rows) if _strided(v)), None)
            if at is not None:
                rows[at] = staged(rows[at])
            epilogue([block, *rows], [block])
            target[n : n + 1, :, r0:upto] = block[:, :, : upto - r0]

        return bool(self.chain(operands[0][0], params, target, finish, None, finish_block))


def _strided(value: Any) -> bool:
    return isinstance(value, np.ndarray) and not value.flags.c_contiguous


def _block_rows(value: Any, n: int, r0: int, r1: int, shape: tuple[int, ...]) -> Any:
    """Rows [r0, r1) of image n of an operand that broadcasts to the 4-D `shape` (an axis it
    broadcasts along is kept whole)."""
    if not isinstance(value, np.ndarray) or value.ndim < 2:
        return value
    index: list[slice] = [slice(None)] * value.ndim
    if value.ndim == 4 and value.shape[0] == shape[0] != 1:
        index[0] = slice(n, n + 1)
    if value.shape[-2] == shape[2] != 1:
        index[-2] = slice(r0, r1)
    return value[tuple(index)]


_F32 = np.dtype(np.float32)
"""The element type of the values inside a chain (fusion chains float32 values only)."""


def _band_finisher(stage: _Stage, values: Sequence[Value]) -> Callable[[np.ndarray], None] | None:
    """The stage's epilogue over a band of its output, in place (None without one)."""
    epilogue = stage.epilogue
    if epilogue is None:
        return None
    others = [values[i] for i in stage.others]

    def finish(band: np.ndarray) -> None:
        epilogue([band, *others], [band])

    return finish


def _broadcast(node: Node, values: Sequence[Value]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*(np.shape(v) for v in values)))
    except ValueError:
        shapes = ", ".join(str(list(np.shape(v))) for v in values)
        raise Sod2Error(
            f"node {node.name!r} (fused): input shapes {shapes} do not broadcast"
        ) from None


def _rows(value: np.ndarray, lo: int, hi: int, rank: int, rows: int) -> np.ndarray:
    """Rows [lo, hi) of an epilogue operand along the output's first axis (a broadcast operand,
    whose first axis is missing or 1, is the same for every block)."""
    if value.ndim == rank and value.shape[0] == rows and rows != 1:
        return value[lo:hi]
    return value


# -- the compiled model ------------------------------------------------------------------------


class CompiledModel:
    """A model compiled for every binding of its symbols; `run(feeds)` executes it."""

    def __init__(
        self,
        model: Model,
        rdp: RDPResult,
        plan: MemoryPlan | None,
        options: CompileOptions,
        compile_seconds: float,
        groups: int,
        derived: Derived | None = None,
    ) -> None:
        self.model = model
        self.rdp = rdp
        self.plan = plan
        self.options = options
        self.groups = groups
        self.derived: Derived = {} if derived is None else derived
        """What the kernels derived from constant weights as the steps were built (`_prepare`)."""
        self.checked = False
        graph = model.graph
        order = list(plan.top.order) if plan is not None else graph.topological_order()
        self.steps = [self._step(node) for node in order]
        self._programs: dict[Graph, list[_Step]] = {}
        orders = _plan_orders(plan.top) if plan is not None else {}
        for sub in graph.subgraphs():
            if sub.parent is not None and not is_fused(sub.parent):
                order = orders.get(sub) or sub.topological_order()
                self._programs[sub] = [self._step(n) for n in order]
        self._symbols = [s.name for s in rdp.input_symbols()]
        self._shape_tensors, self._shape_eval, self._dim_index = self._shape_program()
        self._known_steps, self._known_eval, self._known_values = self._value_program()
        self._bodies: ReferenceInterpreter | None = None
        self._fixed = self._fixed_program()
        self._assumptions = self._assumption_checks(rdp.assumptions)
        self._frames: dict[tuple[int, ...], _Frame] = {}
        self.arena = np.zeros(0, dtype=np.uint8)
        self._lifetimes: dict[Graph, Lifetimes] = {}
        from sod2.backend.kernels import Workspace, use_workspace

        self._use_workspace = use_workspace
        self._workspace = Workspace
        self._constants = {t: t.const_value for t in graph.constants}
        self.compile_seconds = compile_seconds + 0.0
        self.from_cache = False
        """Whether the analysis was loaded from the compile cache (`compile_model`)."""

    # -- building ----------------------------------------------------------------------------

    def _step(self, node: Node) -> _Step:
        opset = self.model.opset(node.domain)
        if is_fused(node):
            step = _fused_step(
                node, self.model.opset(""), self.rdp, self.options, self.derived, self._least_rows
            )
            if step is not None:
                return step
            return _ReferenceStep(node, opset, None, self._dtypes(node))
        if node.subgraphs:
            return _ControlStep(node, opset)
        if node.domain in ("", "ai.onnx") and self.options.mvc:
            if node.op_type in VIEW_OPS:
                return _ViewStep(node, opset, None, self._dtypes(node))
            if node.op_type == "Split":
                return _SplitStep(node, opset, None, self._dtypes(node))
        fast = _fast_kernel(node, opset) if self.options.mvc else None
        sole = len(node.inputs) > 1 and _only_reader(node.inputs[1])
        first = node.inputs[0] if node.inputs else None
        _prepare(fast, node.inputs, sole, self.derived, self._least_rows(node, first))
        return _ReferenceStep(node, opset, fast, self._dtypes(node))

    def _least_rows(self, node: Node, a: Tensor | None) -> int | None:
        """The fewest rows a MatMul's or Gemm's product can have (`node`'s first operand `a`,
        as the graph outside any fused body sees it), or a Conv's output positions per image
        (`ConvKernel.least_rows`): the count with every symbol at the lowest value of its range
        (the planner's ranges, else `CompileOptions.ranges`, else 1). None where it is not such
        a node or the count is not known."""
        if node.op_type == "Conv":
            a = node.outputs[0] if node.outputs else None
        elif node.op_type not in ("MatMul", "Gemm"):
            return None
        if a is None:
            return None
        fact = self.rdp.facts.get(a)
        dims = None if fact is None else fact.shape.dims
        if dims is None or not dims:
            return None
        if node.op_type == "Conv":
            rows: Any = math.prod(dims[2:])
        elif node.op_type == "Gemm":
            rows = dims[1] if node.attr("transA", 0) else dims[0]
        else:
            rows = math.prod(dims[:-1]) if len(dims) > 1 else 1
        if isinstance(rows, int):
            return rows
        ranges = self.plan.options.ranges if self.plan is not None else self.options.ranges
        lowest = {s: ranges.get(s.name, (1, 1))[0] for s in rows.free_symbols}
        least = rows.subs(lowest)
        return int(least) if least.is_Integer else None

    def _dtypes(self, node: Node) -> list[np.dtype | None]:
        return [
            _numpy_dtype(self.rdp.facts.get(t)) if t is not None else None for t in node.outputs
        ]

    def _shape_program(
        self,
    ) -> tuple[list[Tensor], Evaluator | _SympyEvaluator | None, list[list[int]]]:
        """One generated evaluator of the dims of every tensor whose shape the inputs fix."""
        tensors: list[Tensor] = []
        exprs: dict[sympy.Expr, int] = {}
        indices: list[list[int]] = []
        symbols = self._bindable_symbols()
        for tensor, fact in self.rdp.facts.items():
            graph = tensor.graph
            if graph is None or fact.shape.dims is None:
                continue
            if graph.parent is not None and is_fused(graph.parent):
                continue  # fused bodies live in registers
            if not all(self.rdp.is_resolved(d) for d in fact.shape.dims):
                continue
            if any(s.name not in symbols for s in _free_symbols(fact.shape.dims)):
                continue  # a sequence element's symbol: known only per element
            row = []
            for dim in fact.shape.dims:
                if isinstance(dim, int):
                    row.append(-1 - dim)
                else:
                    row.append(exprs.setdefault(dim, len(exprs)))
            tensors.append(tensor)
            indices.append(row)
        if not exprs:
            return tensors, None, indices
        return tensors, _integer_evaluator(list(symbols.values()), list(exprs)), indices

    def _bindable_symbols(self) -> dict[str, sympy.Symbol]:
        """The input symbols `bind_symbols` reads off the inputs' shapes, by name."""
        bindable = bindable_symbols(self.model, self.rdp)
        return {s.name: s for s in self.rdp.input_symbols() if s.name in bindable}

    def _value_program(
        self,
    ) -> tuple[set[_Step], Callable[[Mapping[str, int]], list[int]] | None, list[_KnownValue]]:
        """The top-level steps whose every output's value the binding alone fixes (shape
        arithmetic: Shape, and the Gather, Add, Mul, Div, Concat... over it), and one evaluator of
        those values. RDP proved each such output's elements as integer expressions over the
        input symbols, and its shape; `_prepare` evaluates them once per binding, and the steps
        never run. Not folded: control flow, graph outputs (the caller owns those), outputs of
        a floating-point type (their values may be fractions RDP does not track)."""
        symbols = self._bindable_symbols()
        shaped = set(self._shape_tensors)
        outputs = set(self.model.graph.outputs)
        exprs: dict[sympy.Expr, int] = {}
        steps: set[_Step] = set()
        values: list[_KnownValue] = []
        for step in self.steps:
            if isinstance(step, _ControlStep):
                continue
            found = []
            for tensor in step.outputs:
                if tensor is None:
                    continue
                fact = self.rdp.facts.get(tensor)
                dtype = _numpy_dtype(fact)
                if (
                    fact is None
                    or fact.value is None
                    or dtype is None
                    or dtype.kind not in "iub"
                    or tensor in outputs
                    or tensor not in shaped
                    or any(v is None or not self.rdp.is_resolved(v) for v in fact.value)
                    or any(s.name not in symbols for s in _free_symbols(fact.value))  # type: ignore[arg-type]
                ):
                    break
                row = [v if isinstance(v, int) else 0 for v in fact.value]  # type: ignore[union-attr]
                slots = [
                    (i, exprs.setdefault(v, len(exprs)))
                    for i, v in enumerate(fact.value)  # type: ignore[arg-type]
                    if not isinstance(v, int)
                ]
                found.append(_KnownValue(tensor, dtype, row, slots))
            else:
                if found:
                    steps.add(step)
                    values.extend(found)
        if not steps:
            return steps, None, values
        if not exprs:
            return steps, lambda binding: [], values
        evaluator = _integer_evaluator(list(symbols.values()), list(exprs))
        return steps, lambda binding: evaluator(binding).tolist(), values

    def _known(
        self, binding: Mapping[str, int], shapes: Mapping[Tensor, tuple[int, ...]]
    ) -> dict[Tensor, np.ndarray]:
        """The folded tensors' values at `binding` (`_value_program`), read-only; none where
        an expression cannot be evaluated there (a division by zero, say: the steps then run
        and their kernels say what is wrong)."""
        if self._known_eval is None:
            return {}
        try:
            evaluated = self._known_eval(binding)
        except (ArithmeticError, ValueError, TypeError):
            return {}
        known: dict[Tensor, np.ndarray] = {}
        for value in self._known_values:
            elements = list(value.row)
            for position, index in value.slots:
                elements[position] = evaluated[index]
            shape = shapes[value.tensor]
            if math.prod(shape) != len(elements):
                return {}  # (facts that disagree: compute rather than guess)
            array = np.array(elements, dtype=value.dtype).reshape(shape)
            array.flags.writeable = False
            known[value.tensor] = array
        return known

    def _fixed_program(self) -> list[tuple[_Step, Any, KernelContext]]:
        """The top-level steps, in schedule order, beyond `_value_program`'s, whose every input
        is a constant, a folded value or an output of such a step, each with the catalogue
        kernel and context that compute it: their outputs depend on the binding alone, so
        `_fix` computes them once per binding. A fused group's kernel runs its body with the
        reference interpreter (one evaluation per binding: no loop nest is compiled for it).
        Not among them: control flow, an op whose results vary between runs (random ones, also
        inside a fused body), a step with no input (its values are its attributes': constant
        folding's), or one writing a graph output (the caller owns it)."""
        outputs = set(self.model.graph.outputs)
        fixed_tensors = set(self.model.graph.constants) | {
            t for step in self._known_steps for t in step.outputs if t is not None
        }
        found: list[tuple[_Step, Any, KernelContext]] = []
        for step in self.steps:
            node = step.node
            fused = is_fused(node)
            if not (fused or isinstance(step, _ReferenceStep)) or step in self._known_steps:
                continue
            inputs = [t for t in step.inputs if t is not None]
            if not inputs or any(t not in fixed_tensors for t in inputs):
                continue
            if any(t in outputs for t in step.outputs):
                continue
            body = list(node.attr("body").walk()) if fused else [node]
            if not all(lookup_node(n, self.model.opset(n.domain)).deterministic for n in body):
                continue
            opset = self.model.opset(node.domain)
            if fused:
                context = KernelContext(node, opset, run_graph=self._run_body)
                found.append((step, lookup_node(node, opset).kernel, context))
            else:
                assert isinstance(step, _ReferenceStep)
                found.append((step, step.kernel, step.context))
            fixed_tensors.update(t for t in step.outputs if t is not None)
        return found

    def _run_body(self, graph: Graph, inputs: Sequence[Value]) -> list[Value]:
        """A fused body's outputs on `inputs`, by the reference interpreter (`_fix`)."""
        if self._bodies is None:
            self._bodies = ReferenceInterpreter(self.model)
        return self._bodies.run_subgraph(graph, inputs, ChainMap())

    def _fix(self, known: dict[Tensor, np.ndarray]) -> set[_Step]:
        """Compute `_fixed_program`'s steps in order from `known` (the folded values) and the
        constants, adding their outputs to `known`, read-only, while they take FIXED_MAX_BYTES
        at most; the steps done. A step that fails, whose result is not an array or would pass
        that size, is not done: it runs with the others (its kernel then says what is wrong),
        and so do the steps that read its outputs."""
        done: set[_Step] = set()
        if not self._fixed:
            return done
        values: ChainMap[Tensor, Any] = ChainMap(known, self._constants)
        total = 0
        for step, kernel, context in self._fixed:
            operands = [None if t is None else values.get(t) for t in step.inputs]
            if any(v is None for v, t in zip(operands, step.inputs, strict=True) if t is not None):
                continue  # (a value this binding could not fold: the step runs)
            try:
                results = list(kernel(context, operands))
            except (Sod2Error, ArithmeticError, ValueError, TypeError, IndexError):
                continue
            results += [None] * (len(step.outputs) - len(results))
            outputs = [(t, r) for t, r in zip(step.outputs, results, strict=True) if t is not None]
            if not all(isinstance(r, np.ndarray) for _, r in outputs):
                continue
            size = sum(r.nbytes for _, r in outputs)
            if total + size > FIXED_MAX_BYTES:
                continue
            total += size
            for tensor, result in outputs:
                array = np.array(result)  # (its own: a kernel may return a view of a constant)
                array.flags.writeable = False
                known[tensor] = array
            done.add(step)
        return done

    def _assumption_checks(
        self, assumptions: Sequence[Assumption]
    ) -> list[tuple[Assumption, Callable[..., bool], list[str]]]:
        checks = []
        inputs = {s.name for s in self.rdp.input_symbols()}
        seen: set[sympy.Basic] = set()
        for assumption in assumptions:
            symbols = sorted(assumption.holds.free_symbols, key=lambda s: s.name)  # type: ignore[attr-defined]
            names = [s.name for s in symbols]
            if not set(names) <= inputs or assumption.holds in seen:
                continue  # involves values only execution knows: the kernels check those
            seen.add(assumption.holds)
            # the expression's own symbols as arguments: renaming them would rebuild (and
            # re-simplify) every Max and Min in it
            function = sympy.lambdify(symbols, assumption.holds, "math")
            checks.append((assumption, function, names))
        return checks

    # -- running -----------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs by name for `feeds` (input name -> array)."""
        env, frame = self._start(feeds)
        for step, region in frame.program:
            if region is None:
                step.run(env, frame, self)
            else:
                self._run_in(region, step, env, frame)
        return {t.name: self._release(env[t]) for t in self.model.graph.outputs}

    __call__ = run

    def _start(self, feeds: Mapping[str, Any]) -> tuple[dict[Tensor, Value], _Frame]:
        """The environment of a run on `feeds` (inputs, constants, the binding's fixed values)
        and the binding's frame, prepared at its first run."""
        bound = bind_inputs(self.model.graph, feeds)
        binding = bind_symbols(self.model, self.rdp, feeds)
        key = tuple(binding.get(name, -1) for name in self._symbols)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._prepare(binding, key)
        env: dict[Tensor, Value] = dict(self._constants)
        env.update(bound)
        env.update(frame.known)
        return env, frame

    def profile(self, feeds: Mapping[str, Any], repeat: int = 5) -> list[StepTime]:
        """Time each step `feeds`' binding runs, in schedule order: one run first (it prepares
        the binding and binds its steps, as any first run does), then `repeat` runs timed step
        by step, each step's least time kept. The steps' times leave out the per-call work
        around them (binding the symbols, handing the outputs out)."""
        self.run(feeds)
        best: dict[_Step, float] = {}
        clock = time.perf_counter
        env: dict[Tensor, Value] = {}
        for _ in range(max(1, repeat)):
            env, frame = self._start(feeds)
            for step, region in frame.program:
                began = clock()
                if region is None:
                    step.run(env, frame, self)
                else:
                    self._run_in(region, step, env, frame)
                elapsed = clock() - began
                best[step] = min(best.get(step, elapsed), elapsed)
        index = {step: i for i, step in enumerate(self.steps)}
        return [
            StepTime(
                index[step],
                step.node.name,
                _op_label(step.node),
                step_kind(step),
                tuple(tuple(np.shape(env[t])) for t in step.outputs if t is not None),
                seconds,
            )
            for step, seconds in best.items()
        ]

    def _run_in(self, region: Workspace, step: _Step, env: Env, frame: _Frame) -> None:
        """Run `step` with its kernels' scratch served from its workspace `region`."""
        self._use_workspace(region)
        try:
            step.run(env, frame, self)
        finally:
            self._use_workspace(None)

    def arena_bytes(self, feeds: Mapping[str, Any]) -> int:
        """The arena's size for the binding `feeds` make (0 without a memory plan)."""
        if self.plan is None:
            return 0
        binding = bind_symbols(self.model, self.rdp, feeds)
        return self.plan.top.instantiate(binding).arena_bytes

    def workspace_steps(self, feeds: Mapping[str, Any]) -> list[WorkspaceStep]:
        """Where each step's kernel workspace lies at the binding `feeds` make, what the planned
        storages alive there take, and the most of it the kernels used in the runs of that
        binding so far (`run(feeds)` first). Empty without workspace regions."""
        binding = bind_symbols(self.model, self.rdp, feeds)
        frame = self._frames.get(tuple(binding.get(name, -1) for name in self._symbols))
        if frame is None:
            raise Sod2Error("workspace_steps: run these feeds first (their binding has no frame)")
        if not frame.regions or frame.concrete is None:
            return []
        steps = [i for i, region in enumerate(frame.regions) if region is not None]
        lifetimes = self._lifetimes_of(self.plan.top)  # type: ignore[union-attr]
        sizes = frame.concrete.sizes(binding)
        live = occupancy(lifetimes, frame.concrete.offsets, sizes, steps)
        base = self.arena.ctypes.data
        found = []
        for i in steps:
            region = frame.regions[i]
            assert region is not None
            node = self.steps[i].node
            floats = region.floats
            offset = floats.ctypes.data - base
            used = 4 * region.high
            planned = int(sizes[lifetimes.workspace[i]])
            found.append(
                WorkspaceStep(
                    i, node.name, node.op_type, offset, floats.nbytes, planned, used, *live[i]
                )
            )
        return found

    def run_subgraph(
        self, graph: Graph, inputs: Sequence[Value], outer: Env, frame: _Frame
    ) -> list[Value]:
        """Run a control-flow body with its inputs bound, seeing the values of `outer`."""
        if len(inputs) != len(graph.inputs):
            raise Sod2Error(
                f"subgraph {graph.name!r} takes {len(graph.inputs)} inputs, got {len(inputs)}"
            )
        env = ChainMap(dict(zip(graph.inputs, inputs, strict=True)), outer)
        for tensor in graph.constants:
            env[tensor] = tensor.const_value
        program = self._programs.get(graph)
        if program is None:
            program = self._programs[graph] = [self._step(n) for n in graph.topological_order()]
        regions = frame.inner_regions
        for step in program:
            region = regions.get(step.node) if regions else None
            if region is None:
                step.run(env, frame, self)
            else:
                self._run_in(region, step, env, frame)
        return [env[t] for t in graph.outputs]

    def _prepare(self, binding: dict[str, int], key: tuple[int, ...]) -> _Frame:
        """Check the assumptions, instantiate the plan, make every planned tensor's view."""
        for assumption, check, names in self._assumptions:
            if not check(*(binding[n] for n in names)):
                values = ", ".join(f"{n}={binding[n]}" for n in names)
                raise AssumptionError(
                    f"the inputs violate an assumption the model relies on: "
                    f"{assumption.describe()} with {values}"
                )
        shapes: dict[Tensor, tuple[int, ...]] = {}
        dims = self._shape_eval(binding).tolist() if self._shape_eval is not None else []
        for tensor, row in zip(self._shape_tensors, self._dim_index, strict=True):
            shapes[tensor] = tuple(-1 - i if i < 0 else dims[i] for i in row)
        views: dict[Tensor, np.ndarray] = {}
        concrete = None
        frame_regions: list[Workspace | None] = []
        inner: dict[Node, Workspace] = {}
        if self.plan is not None:
            top = self.plan.top
            concrete = top.instantiate(binding)
            if self.arena.nbytes < concrete.arena_bytes:
                self.arena = np.empty(concrete.arena_bytes, dtype=np.uint8)
                self._frames.clear()
            self._add_views(top, concrete, 0, binding, shapes, views, inner)
            if inner:
                frame_regions = [inner.pop(step.node, None) for step in self.steps]
                if not any(frame_regions):
                    frame_regions = []
        known = {} if self.checked else self._known(binding, shapes)
        folded = bool(known)
        fixed = set() if self.checked else self._fix(known)
        regions = frame_regions or [None] * len(self.steps)
        program = [
            (step, region)
            for step, region in zip(self.steps, regions, strict=True)
            if not (folded and step in self._known_steps) and step not in fixed
        ]
        frame = _Frame(concrete, views, shapes, frame_regions, inner, known=known, program=program)
        if len(self._frames) >= 64:
            self._frames.clear()
        self._frames[key] = frame
        return frame

    def _lifetimes_of(self, plan: GraphPlan) -> Lifetimes:
        found = self._lifetimes.get(plan.graph)
        if found is None:
            found = self._lifetimes[plan.graph] = Lifetimes.of(plan.storages)
        return found

    def _add_regions(
        self,
        plan: GraphPlan,
        concrete: ConcretePlan,
        base: int,
        sizes: np.ndarray,
        regions: dict[Node, Workspace],
        outer: tuple[int, int],
    ) -> None:
        """The workspace region of each step of `plan`'s graph that has one (`sod2.opt.workspace`),
        its plan placed at `base` in the arena: its own, or `outer` (an arena offset and bytes
        free while the graph runs, see `_add_views`) where that is wider."""
        lifetimes = self._lifetimes_of(plan)
        if not lifetimes.workspace:
            return
        found = workspace_regions(lifetimes, concrete.offsets, sizes, concrete.arena_bytes)
        order = plan.order
        for step, (offset, nbytes) in found.items():
            at = base + offset
            if outer[1] > nbytes:
                at, nbytes = outer
            floats = np.frombuffer(self.arena, dtype=np.float32, count=nbytes // 4, offset=at)
            regions[order[step]] = self._workspace(floats)

    def _add_views(
        self,
        plan: GraphPlan,
        concrete: ConcretePlan,
        base: int,
        binding: Mapping[str, int],
        shapes: Mapping[Tensor, tuple[int, ...]],
        views: dict[Tensor, np.ndarray],
        regions: dict[Node, Workspace],
        outer: tuple[int, int] = (0, 0),
    ) -> None:
        """The arena view of every planned tensor of `plan`'s graph whose shape the binding
        fixes, at `base`, and the workspace region of every step that has one (`regions`);
        control-flow bodies get theirs inside their node's scratch storage.

        A body's steps may also take, for their kernels' scratch, the widest gap that the
        storages alive at their control-flow node's step leave in the graph around it (or
        around any graph further out: `outer`, an arena offset and bytes): nothing there is
        read or written while the body runs, and the body's own scratch storage, sized for its
        values, is often far narrower than the arena around it at a small binding."""
        values = plan.binding_values(binding)
        for tensor, (index, inner) in plan.addresses.items():
            shape = shapes.get(tensor)
            dtype = _numpy_dtype(self.rdp.facts.get(tensor))
            if shape is None or dtype is None or not plan.storages[index].planned:
                continue
            if not isinstance(inner, int):
                if not all(s.name in binding for s in inner.free_symbols):  # type: ignore[union-attr]
                    continue  # the offset needs a value only execution gives
                inner = int(inner.subs({s: values[s.name] for s in inner.free_symbols}))  # type: ignore[union-attr]
            address = base + int(concrete.offsets[index]) + inner
            count = int(np.prod(shape, dtype=np.int64))
            views[tensor] = np.frombuffer(
                self.arena, dtype=dtype, count=count, offset=address
            ).reshape(shape)
        sizes = concrete.sizes(binding)
        self._add_regions(plan, concrete, base, sizes, regions, outer)
        for node, subplans in plan.subplans.items():
            if node.op_type == "If" and node.domain in ("", "ai.onnx"):
                self._alias_branch_results(node, subplans, shapes, views)
            scratch = [i for i, s in enumerate(plan.storages) if s.scratch_of is node]
            if not scratch:
                continue
            at = base + int(concrete.offsets[scratch[0]])
            offset, width = widest_gap(
                self._lifetimes_of(plan),
                concrete.offsets,
                sizes,
                concrete.arena_bytes,
                plan.storages[scratch[0]].start,
            )
            around = (base + offset, width) if width > outer[1] else outer
            for subplan in subplans.values():
                inner_plan = subplan.instantiate(binding)
                if inner_plan.arena_bytes <= int(sizes[scratch[0]]):
                    self._add_views(
                        subplan, inner_plan, at, binding, shapes, views, regions, around
                    )

    def _alias_branch_results(
        self,
        node: Node,
        subplans: Mapping[str, GraphPlan],
        shapes: Mapping[Tensor, tuple[int, ...]],
        views: dict[Tensor, np.ndarray],
    ) -> None:
        """Each result a branch of If `node` computes itself gets the view of the If's output
        it becomes, so the branch writes it there instead of into a fresh array that the If
        would copy. Safe: that storage is alive from the If's step on and holds nothing else
        then, while the branch's own values sit in the If's scratch storage and the values it
        reads are alive at that step too (so none of them shares its bytes).

        A result the branch's plan writes over a residual (`liveness(results_in_place=True)`)
        shares its storage with that residual, which the view then holds too: the residual is
        computed in the If's output and overwritten there by the result. And where every branch
        writes an output over an outer value that dies at the If (`branch_overwrites`), the
        output's storage is that value's: each branch's result then overwrites the value it
        reads, which its kernel allows (an elementwise group, a chain's write-behind)."""
        for name, branch in node.subgraphs:
            subplan = subplans.get(name)
            storage_of = subplan.liveness.storage_of if subplan is not None else {}
            taken: set[Tensor] = set()
            for result, output in zip(branch.outputs, node.outputs, strict=False):
                view = views.get(output) if output is not None else None
                if (
                    view is None
                    or result in taken
                    or result in views
                    or result.graph is not branch
                    or result.producer is None
                    or shapes.get(result) != view.shape
                    or _numpy_dtype(self.rdp.facts.get(result)) != view.dtype
                ):
                    continue
                taken.add(result)
                views[result] = view
                storage = storage_of.get(result)
                for partner in () if storage is None else storage.tensors:
                    if partner is result or partner in views:
                        continue
                    shape = shapes.get(partner)
                    if (
                        shape is None
                        or _numpy_dtype(self.rdp.facts.get(partner)) != view.dtype
                        or math.prod(shape) != view.size
                    ):
                        continue
                    views[partner] = view.reshape(shape)

    def place(self, tensor: Tensor, value: Value, frame: _Frame) -> Value:
        """`value` stored at `tensor`'s arena view when it has one (no copy when the kernel
        already returned that memory, as a view op does); else `value` itself, copied out of
        the arena if it aliases it (its storage may be reused)."""
        view = frame.views.get(tensor)
        if isinstance(value, np.ndarray):
            if view is not None and view.shape == value.shape and view.dtype == value.dtype:
                if value.__array_interface__["data"][0] != view.__array_interface__["data"][0]:
                    np.copyto(view, value)
                return view
            if self.arena.size and np.may_share_memory(value, self.arena):
                return value.copy()
        return value

    def _release(self, value: Value) -> Value:
        """An output handed to the caller never aliases the arena."""
        if (
            isinstance(value, np.ndarray)
            and self.arena.size
            and np.may_share_memory(value, self.arena)
        ):
            return value.copy()
        return value

    def describe(self) -> str:
        """A few lines: steps by kind, fused groups, the plan."""
        kinds: dict[str, int] = {}
        for step in self.steps:
            name = step_kind(step)
            kinds[name] = kinds.get(name, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        if self.plan is None:
            memory = "no memory plan (numpy allocates every intermediate)"
        else:
            top = self.plan.top
            memory = (
                f"memory plan: {len(top.storages)} storages in one arena, "
                f"{len(top.versions)} version(s)"
            )
        return (
            f"{len(self.steps)} steps ({parts}); {self.groups} fused groups; {memory}; "
            f"compiled in {self.compile_seconds:.2f} s"
            + (" (analysis from the compile cache)" if self.from_cache else "")
        )


def _free_symbols(dims: Sequence[Dim]) -> set[sympy.Symbol]:
    found: set[sympy.Symbol] = set()
    for dim in dims:
        if not isinstance(dim, int):
            found |= dim.free_symbols  # type: ignore[arg-type]
    return found


def _plan_orders(plan: GraphPlan) -> dict[Graph, list[Node]]:
    """The planned execution order of every control-flow body (their plans assume it)."""
    orders: dict[Graph, list[Node]] = {}
    for subplans in plan.subplans.values():
        for subplan in subplans.values():
            orders[subplan.graph] = list(subplan.order)
            orders.update(_plan_orders(subplan))
    return orders


@dataclass(frozen=True)
class _KnownValue:
    """A tensor the binding alone fixes: its element type, its elements that are constants
    (`row`, 0 at the others), and the others as (position, i): the i-th value of
    `CompiledModel._value_program`'s evaluator."""

    tensor: Tensor
    dtype: np.dtype
    row: list[int]
    slots: list[tuple[int, int]]


def _integer_evaluator(
    symbols: list[sympy.Symbol], exprs: list[sympy.Expr]
) -> Evaluator | _SympyEvaluator:
    """One call that evaluates every integer expression of `exprs` at a binding of `symbols`
    (by name) into an int64 array: generated code, or sympy where that cannot express one."""
    names = [f"e{i}" for i in range(len(exprs))]
    try:
        return Evaluator(symbols, list(zip(names, exprs, strict=True)), names)
    except EvaluatorError:
        return _SympyEvaluator(symbols, exprs)


class _SympyEvaluator:
    """A fallback for dims the generated evaluator cannot express (slow, exact)."""

    def __init__(self, symbols: list[sympy.Symbol], exprs: list[sympy.Expr]) -> None:
        self.symbols = symbols
        self.function = sympy.lambdify(symbols, exprs, "math")

    def __call__(self, binding: Mapping[str, int]) -> np.ndarray:
        return np.array(
            [int(v) for v in self.function(*(binding[s.name] for s in self.symbols))],
            dtype=np.int64,
        )


def _numpy_dtype(fact: TensorFact | None) -> np.dtype | None:
    if fact is None or fact.dtype is None:
        return None
    try:
        return np.dtype(fact.dtype.numpy)
    except (TypeError, AttributeError):
        return None


def _fast_kernel(node: Node, opset: int) -> Any:
    from sod2.backend.kernels import fast_kernel

    return fast_kernel(node, opset)


Derived = dict[Tensor, np.ndarray]
"""Arrays kernels computed from constant weights at compile time (Winograd's transformed
filters), by weight: kept with the analysis in the compile cache, so a warm compile reuses them."""


def _prepare(
    fast: Any,
    inputs: Sequence[Tensor | None],
    sole_reader: bool,
    derived: Derived,
    least_rows: int | None = None,
) -> None:
    """Let a kernel lay out its constant weights (input 1: a Conv's W, a MatMul's or Gemm's B)
    once, at compile time. A kernel that reads them fastest in another layout of the same values
    returns that array (`MatMulKernel.prepare`); where the kernel is the weights' only reader
    (`sole_reader`), the constant then holds that layout instead, so that the model keeps its
    weights once. Elsewhere the kernel reads the weights as they are. A kernel that derives an
    array from them (`ConvKernel.transformed`) is handed the one in `derived`, where an earlier
    compile kept it, and its own is kept there."""
    body = getattr(fast, "body", None)
    prepare = getattr(body, "prepare", None)
    weight = inputs[1] if len(inputs) > 1 else None
    if prepare is None or weight is None or weight.const_value is None:
        return
    if hasattr(body, "least_rows"):  # a product's kernel: the fewest rows it will see
        body.least_rows = least_rows
    transformed = getattr(body, "transformed", None)
    if transformed is not None:
        prepare(weight.const_value, derived.get(weight))
        made = transformed()
        if made is not None and weight.is_constant:
            derived[weight] = made
        return
    laid_out = prepare(weight.const_value)
    if laid_out is not None and sole_reader and weight.is_constant:
        weight.const_value = laid_out


def _only_reader(tensor: Tensor | None) -> bool:
    """True when one node input reads `tensor` (no other node, slot or graph output)."""
    return tensor is not None and len(tensor.uses) == 1


def _fused_step(
    node: Node,
    opset: int,
    rdp: RDPResult,
    options: CompileOptions,
    derived: Derived,
    least_rows: Callable[[Node, Tensor | None], int | None] | None = None,
) -> _Step | None:
    """The step of a fused node: a generated loop nest, a heavy kernel plus one, or a chain
    (`least_rows`, as `CompiledModel._least_rows`, bounds a product's rows)."""
    from sod2.backend.codegen import compile_group

    body: Graph = node.attr("body")
    dtypes = [_numpy_dtype(rdp.facts.get(t)) for t in node.outputs]
    if any(d is None for d in dtypes):
        return None
    kind = node.attr("kind", "elementwise")
    if kind == "elementwise":
        return _FusedStep(node, compile_group(body, opset, name=node.name), dtypes)  # type: ignore[arg-type]
    order = body.topological_order()
    if kind != "chain":
        stage = _stage(
            node.name,
            body,
            order[0],
            order[1:],
            list(body.outputs),
            opset,
            options,
            derived,
            outer=node.inputs,
            least_rows=least_rows,
        )
        return _EpilogueStep(node, stage, dtypes)  # type: ignore[arg-type]
    from sod2.backend.kernels import band_chain

    anchors = [n for n in order if n.op_type in CHAIN_STAGE_OPS]
    stages = []
    done: set[Node] = set()
    for k, anchor in enumerate(anchors):
        if k + 1 < len(anchors):
            middle = anchors[k + 1].inputs[0]
            assert middle is not None
            outputs, members = [middle], _ancestors(middle, body) - done
        else:
            outputs, members = list(body.outputs), set(order) - done
        done |= members
        rest = [n for n in order if n in members and n is not anchor]
        handed = anchor.inputs[0] if k else None
        stages.append(
            _stage(
                f"{node.name}_{k}",
                body,
                anchor,
                rest,
                outputs,
                opset,
                options,
                derived,
                handed,
                node.inputs,
                least_rows,
            )
        )
    chain = band_chain([s.anchor for s in stages]) if options.mvc else None
    return _ChainStep(node, stages, chain, dtypes)  # type: ignore[arg-type]


def _ancestors(tensor: Tensor, body: Graph) -> set[Node]:
    """The nodes of `body` that `tensor` is computed from (its producer included)."""
    found: set[Node] = set()
    stack = [tensor.producer]
    while stack:
        node = stack.pop()
        if node is None or node in found or node.graph is not body:
            continue
        found.add(node)
        stack.extend(t.producer for t in node.inputs if t is not None)
    return found


def _stage(
    name: str,
    body: Graph,
    anchor: Node,
    rest: Sequence[Node],
    outputs: list[Tensor],
    opset: int,
    options: CompileOptions,
    derived: Derived,
    middle: Tensor | None = None,
    outer: Sequence[Tensor | None] | None = None,
    least_rows: Callable[[Node, Tensor | None], int | None] | None = None,
) -> _Stage:
    """A heavy op `anchor` of a fused body with the elementwise nodes `rest` after it, which
    compute `outputs`; `middle`, a value of the body that the anchor reads, is handed to it by
    the stage before (position -2); `outer` are the fused node's inputs (constant weights are
    laid out once, `_prepare`)."""
    from sod2.backend.codegen import compile_group

    epilogue = None
    others: list[int] = []
    if rest:
        epilogue_body, others = _epilogue_body(body, anchor, rest, outputs)
        epilogue = compile_group(epilogue_body, opset, name=name + "_epilogue")
    positions = {t: i for i, t in enumerate(body.inputs)}
    anchor_inputs: list[int] = []
    constants: dict[int, Value] = {}
    for k, tensor in enumerate(anchor.inputs):
        if tensor is None:
            anchor_inputs.append(-1)
        elif tensor is middle:
            anchor_inputs.append(-2)
        elif tensor in positions:
            anchor_inputs.append(positions[tensor])
        else:  # a constant of the body (a chain's Resize scales)
            anchor_inputs.append(-3)
            constants[k] = tensor.const_value
    fast = _fast_kernel(anchor, opset) if options.mvc else None
    if outer is not None:  # the anchor's inputs as the fused node sees them
        seen = [outer[i] if i >= 0 else None for i in anchor_inputs]
        sole = len(seen) > 1 and _only_reader(seen[1]) and _only_reader(anchor.inputs[1])
        rows = None if least_rows is None or not seen else least_rows(anchor, seen[0])
        _prepare(fast, seen, sole, derived, rows)
    reference = lookup_node(anchor, opset).kernel
    context = KernelContext(anchor, opset)

    def run_anchor(values: list[Value]) -> np.ndarray:
        return reference(context, values)[0]

    return _Stage(fast, anchor_inputs, epilogue, others, run_anchor, constants)


def _epilogue_body(
    body: Graph, anchor: Node, rest: Sequence[Node], outputs: Sequence[Tensor]
) -> tuple[Graph, list[int]]:
    """A standalone graph of the elementwise nodes after `anchor` computing `outputs` (values of
    `body`): input 0 is the anchor's output, then the body inputs they read (their positions in
    the fused node's inputs are returned)."""
    graph = Graph(body.name + "_epilogue")
    mapped: dict[Tensor, Tensor] = {}
    anchor_out = anchor.outputs[0]
    mapped[anchor_out] = graph.add_input("anchor", anchor_out.type)  # type: ignore[index,union-attr]
    positions = {t: i for i, t in enumerate(body.inputs)}
    others: list[int] = []
    for node in rest:
        for tensor in node.inputs:
            if tensor is not None and tensor not in mapped:
                mapped[tensor] = graph.add_input(graph.fresh_name(tensor.name), tensor.type)
                others.append(positions[tensor])
        copy_node(graph, node, mapped)
    graph.set_outputs([mapped[t] for t in outputs])
    return graph, others


# -- compiling ---------------------------------------------------------------------------------


COMPILED = "compiled"
"""The cache kind (`sod2.cache`) of analysed models, one entry per file and options."""


@dataclass
class _Analysis:
    """The ahead-of-time product `CompiledModel` is built from (what the compile cache keeps)."""

    model: Model
    rdp: RDPResult
    plan: MemoryPlan | None
    groups: int
    derived: Derived = field(default_factory=dict)
    """Filled as the steps are built (`CompiledModel.derived`), before the entry is stored."""


def compile_model(
    model: Model | str | Path, options: CompileOptions | None = None
) -> CompiledModel:
    """Compile `model` (a Model, which is not modified, or an ONNX file) for every binding.

    The analysis of a file (import, RDP, fusion, memory plan) is kept in sod2's cache
    (`$SOD2_CACHE_DIR/compiled`) and loaded from there by a later compile of the same file with
    the same analysis options, while neither the file (nor its external data) nor sod2's source
    changed: a warm start skips straight to building the steps, whose kernels Numba's disk cache
    holds. A file modified in the last two seconds is not cached (`sod2.cache.settled`).
    `CompileOptions(cache=False)` always analyses afresh."""
    from sod2.ir import load
    from sod2.ir.onnx_export import to_onnx
    from sod2.ir.onnx_import import from_onnx

    began = time.perf_counter()
    options = options or CompileOptions()
    ranges = dict(options.ranges)
    if options.threads is not None:
        import numba

        numba.set_num_threads(max(1, min(options.threads, numba.config.NUMBA_NUM_THREADS)))
    analysis = None
    hit = False
    entry: tuple[str, dict[str, Any]] | None = None
    if isinstance(model, (str, Path)):
        path = Path(model)
        ranges = {**zoo_ranges(path), **ranges}
        name = _cache_name(path, options, ranges) if options.cache else None
        if name is not None:
            analysis = cache.load_object(COMPILED, name, _fresh)
            hit = analysis is not None
        if analysis is None:
            # (settled and stamped before reading: a change while reading makes a new stamp)
            stamp = _stamp(path) if name is not None and cache.settled(path) else None
            external: list[Path] = []
            analysis = _analyse(load(path, external=external), options, ranges)
            if stamp is not None and all(map(cache.settled, external)):
                stamps = [stamp, *(_stamp(p) for p in external)]
                if None not in stamps:
                    entry = name, {"code": cache.code_fingerprint(), "files": stamps}
    else:
        analysis = _analyse(from_onnx(to_onnx(model)), options, ranges)
    compiled = CompiledModel(
        analysis.model, analysis.rdp, analysis.plan, options, 0.0, analysis.groups, analysis.derived
    )
    if entry is not None:
        # stored once the steps are built: constants they laid out for their kernels
        # (`_prepare`) are kept in that layout, and a warm compile need not lay them out again
        cache.store_object(COMPILED, entry[0], entry[1], analysis, _REDUCERS)
    compiled.from_cache = hit
    compiled.compile_seconds = time.perf_counter() - began
    return compiled


def _analyse(
    model: Model, options: CompileOptions, ranges: Mapping[str, tuple[int, int]]
) -> _Analysis:
    """Clean-up, RDP, fusion (written-out normalizations first made one op, then RDP again)
    and the memory plan of `model` (modified)."""
    from sod2.opt.fusion import fuse
    from sod2.opt.standardize import standardize

    _clean(model)
    if options.fusion:
        standardize(model)
    rdp = propagate(model)
    groups = 0
    if options.fusion:
        groups = len(fuse(model, rdp, chains=options.chains))
        if groups:
            rdp = propagate(model)
    plan = None
    symbols = {s.name for s in rdp.input_symbols()}
    if options.dmp and symbols <= bindable_symbols(model, rdp):
        # (symbols of sequence elements vary per element: such a model runs unplanned)
        plan_options = PlanOptions(
            ranges={k: v for k, v in ranges.items() if k in symbols},
            search_order=options.sep,
            validation=options.plan_validation,
        )
        workspace = None
        if options.workspace is not None and options.mvc:
            from sod2.backend.scratch import workspace_bytes

            cap = options.workspace
            facts = rdp.facts

            def workspace(node: Node) -> Dim | None:
                return workspace_bytes(node, facts, cap)

        plan = plan_memory(model, rdp, plan_options, workspace)
    return _Analysis(model, rdp, plan, groups)


def _unevaluated(cls: type, args: tuple[Any, ...]) -> sympy.Basic:
    return cls(*args, evaluate=False)


def _reduce_unevaluated(expr: sympy.Basic) -> tuple[Any, ...]:
    return _unevaluated, (type(expr), expr.args)


_REDUCERS = {
    kind: _reduce_unevaluated
    for kind in (sympy.Max, sympy.Min, sympy.floor, sympy.ceiling, sympy.Mod)
}
"""The plan's offsets are Max and Min kept unevaluated (`memory_plan._max`), and its sizes hold
floor and ceiling over them (kernel workspace rounded to lines, `sod2.backend.scratch`). Pickled
as sympy pickles them, each would be evaluated again when loaded, which costs seconds (yolov6 at
paper scale: 2.6 s of a warm compile). An expression that was stored is already in the form
evaluation gives, so it is rebuilt as it is."""


def _cache_name(
    path: Path, options: CompileOptions, ranges: Mapping[str, tuple[int, int]]
) -> str | None:
    """The compile-cache entry of a file analysed with `options`: by its resolved path and the
    options the analysis depends on (not `threads`, which only the steps use; `mvc` only as far
    as the plan holds the fast kernels' workspace)."""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return None  # load names the missing file
    key = (
        str(resolved),
        options.fusion,
        options.chains,
        options.sep,
        options.dmp,
        options.plan_validation,
        options.workspace if options.mvc else None,
        sorted(ranges.items()),
    )
    return f"{resolved.name.split('.')[0]}-{cache.digest(repr(key))}"


def _stamp(path: Path) -> tuple[str, str] | None:
    try:
        return str(path), cache.file_stamp(path)
    except OSError:
        return None


def _fresh(header: Any) -> bool:
    """Whether a compile-cache entry was made by this code from the files as they are now."""
    return (
        isinstance(header, dict)
        and header.get("code") == cache.code_fingerprint()
        and all(_stamp(Path(p)) == (p, stamp) for p, stamp in header.get("files", []))
    )


def _clean(model: Model) -> None:
    """Constant folding, BatchNorm folding and dead-code elimination before analysis."""
    from sod2.passes import PassManager

    PassManager.parse("fold-constants,fold-batchnorm,fold-constants,dce").run(model)


def zoo_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """The symbol ranges of the zoo model a file is (by its name: NAME.onnx, NAME.paper.onnx)."""
    from sod2.zoo import REGISTRY

    entry = REGISTRY.get(path.name.split(".")[0])
    return {} if entry is None else {s.name: (s.low, s.high) for s in entry.symbols}
