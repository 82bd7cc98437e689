"""`sod2 plan`: the figures of a memory plan at a binding, as text, JSON and a picture."""

import json

import pytest

import sod2.zoo
from sod2.cli import main

SKIPNET = str(sod2.zoo.get("skipnet").path())


def test_plan_prints_every_figure(capsys):
    assert main(["plan", SKIPNET, "--bind", "H=96", "--bind", "W=128"]) == 0
    text = capsys.readouterr().out
    for key in (
        "order_peak_bytes",
        "default_order_peak_bytes",
        "arena_bytes",
        "greedy_by_size_bytes",
        "online_best_fit_bytes",
        "no_reuse_bytes",
        "instantiate_us",
    ):
        assert key in text


def test_plan_json_and_exact_optimum(capsys):
    assert main(["plan", SKIPNET, "--bind", "H=64", "--bind", "W=64", "--json", "--exact"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["binding"] == {"H": 64, "W": 64}
    assert figures["order_peak_bytes"] <= figures["arena_bytes"] <= figures["no_reuse_bytes"]
    assert figures["sep_peak_bytes"] <= figures["sep_default_peak_bytes"]
    if figures["optimal_order_peak_bytes"] is not None:
        assert figures["optimal_order_peak_bytes"] <= figures["sep_peak_bytes"]


def test_plan_plot_writes_a_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "plan.png"
    assert main(["plan", SKIPNET, "--bind", "H=64", "--bind", "W=96", "--plot", str(picture)]) == 0
    assert picture.stat().st_size > 1000
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_plan_names_a_missing_symbol(capsys):
    assert main(["plan", SKIPNET, "--bind", "H=64"]) == 1
    assert "W" in capsys.readouterr().err


def test_plan_rejects_a_malformed_range(capsys):
    assert main(["plan", SKIPNET, "--bind", "H=64", "--bind", "W=64", "--range", "H=1-9"]) == 1
    assert "SYMBOL=LOW:HIGH" in capsys.readouterr().err
