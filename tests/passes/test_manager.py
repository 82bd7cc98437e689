import io

import pytest

from sod2.errors import PassContractError, VerificationError
from sod2.passes import (
    DumpIRInstrument,
    PassContext,
    PassManager,
    TimingInstrument,
    VerifyInstrument,
)

from .conftest import AddRelu, BreaksTheIR, LiesAboutChanges


def test_report_says_which_passes_changed_the_graph(model):
    report = PassManager.parse("toposort,dce").run(model)
    assert [(spec, r.changed) for spec, r in report.results] == [("toposort", False), ("dce", True)]
    assert report.changed


def test_a_pass_that_hides_an_edit_is_caught(model):
    with pytest.raises(PassContractError, match=r"test-liar.*reported it unchanged"):
        PassManager([LiesAboutChanges()]).run(model)


def test_verify_instrument_names_the_pass_that_broke_the_ir(model):
    context = PassContext.with_instruments([VerifyInstrument()])
    with pytest.raises(VerificationError, match="after pass 'test-breaker'"):
        PassManager([AddRelu(), BreaksTheIR()]).run(model, context)


def test_verify_instrument_checks_the_input_too(model):
    model.graph.inputs[0]._uses.clear()
    with pytest.raises(VerificationError, match="before the first pass"):
        PassManager.parse("dce").run(model, PassContext.with_instruments([VerifyInstrument()]))


def test_timing_instrument_records_every_pass(model):
    timing = TimingInstrument()
    PassManager.parse("dce,toposort").run(model, PassContext.with_instruments([timing]))
    assert [t.spec for t in timing.timings] == ["dce", "toposort"]
    assert all(t.seconds >= 0 for t in timing.timings)
    report = timing.report()
    assert "dce" in report and "total" in report


def test_dump_instrument_prints_after_named_passes_only(model):
    stream = io.StringIO()
    dump = DumpIRInstrument(after=frozenset({"dce"}), stream=stream)
    PassManager.parse("toposort,dce").run(model, PassContext.with_instruments([dump]))
    text = stream.getvalue()
    assert text.count("// IR after") == 1 and "// IR after dce" in text
    assert "Neg" not in text  # dce removed the unused node before the dump


def test_dump_instrument_writes_files(model, tmp_path):
    dump = DumpIRInstrument(directory=tmp_path)
    PassManager.parse("toposort,dce").run(model, PassContext.with_instruments([dump]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-toposort.ir", "02-dce.ir"]
