import pytest

from sod2.errors import PipelineError
from sod2.opt.constant_folding import FoldConstants
from sod2.passes import PassManager, parse_steps, register_pass, registered_passes

from .conftest import AddRelu


def test_names_and_options_parse_into_typed_passes():
    manager = PassManager.parse(" dce , fold-constants{ max_bytes = 0x100 }, toposort ")
    assert [p.name for p in manager.passes] == ["dce", "fold-constants", "toposort"]
    assert manager.passes[1] == FoldConstants(max_bytes=256)
    assert manager.spec() == "dce,fold-constants{max_bytes=256},toposort"


def test_spec_round_trips():
    text = "fold-constants{max_bytes=64},dce"
    assert PassManager.parse(PassManager.parse(text).spec()).spec() == text


def test_quoted_values_and_empty_braces():
    steps = parse_steps('a{k="x,y}"},b{}')
    assert steps[0].options == (("k", "x,y}"),) and steps[1].options == ()


def test_bool_options_accept_common_spellings():
    register_pass(AddRelu)
    for text, expected in [("true", True), ("on", True), ("0", False), ("no", False)]:
        (built,) = PassManager.parse(f"test-add-relu{{preserve_count={text}}}").passes
        assert built.preserve_count is expected
    with pytest.raises(PipelineError, match="expected true or false"):
        PassManager.parse("test-add-relu{preserve_count=maybe}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "column 1: expected a pass name"),
        ("dce,,toposort", "column 5: expected a pass name"),
        ("dce toposort", "expected ',' between passes"),
        ("fold-constants{max_bytes}", "expected '=' after option 'max_bytes'"),
        ("fold-constants{max_bytes=}", "option 'max_bytes' has no value"),
        ("fold-constants{max_bytes=1", "expected ',' or '}'"),
        ('fold-constants{max_bytes="1}', "unterminated quoted value"),
    ],
)
def test_syntax_errors_point_at_the_column(text, message):
    with pytest.raises(PipelineError, match=message):
        PassManager.parse(text)


def test_unknown_pass_suggests_close_names():
    with pytest.raises(
        PipelineError, match="unknown pass 'fold-constant'; did you mean 'fold-constants'"
    ):
        PassManager.parse("fold-constant")


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(
        PipelineError,
        match=r"pass 'fold-constants' has no option 'size' \(its options: max_bytes\)",
    ):
        PassManager.parse("fold-constants{size=3}")


def test_wrong_option_type_names_pass_and_option():
    with pytest.raises(
        PipelineError, match="pass 'fold-constants', option 'max_bytes': expected an integer"
    ):
        PassManager.parse("fold-constants{max_bytes=big}")


def test_repeated_option_is_an_error():
    with pytest.raises(PipelineError, match="given twice"):
        PassManager.parse("fold-constants{max_bytes=1,max_bytes=2}")


def test_registry_refuses_a_second_pass_with_a_taken_name():
    class Impostor(AddRelu):
        pass

    Impostor.name = "dce"
    with pytest.raises(PipelineError, match="pass name 'dce' is taken"):
        register_pass(Impostor)


def test_builtin_passes_are_registered():
    assert {"dce", "fold-constants", "toposort"} <= set(registered_passes())
