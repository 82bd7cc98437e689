import io

from sod2.cli import main
from sod2.demo import run_demo


def test_demo_tours_the_shipped_model():
    out = io.StringIO()
    run_demo(out)
    text = out.getvalue()
    assert "symbols: H, W" in text
    assert "control flow: If x7" in text
    assert "then_branch:" in text and "else_branch:" in text
    assert "fold-constants" in text and "total" in text
    assert text.count("-> logits [1, 10]") == 2


def test_demo_command(capsys):
    assert main(["demo"]) == 0
    assert "Reference runs" in capsys.readouterr().out
