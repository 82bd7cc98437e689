"""`sod2 zoo list | build | path`, driven through a parser that `add_zoo_parser` extends."""

from __future__ import annotations

import argparse
import sys

import pytest

from sod2.zoo import get, names
from sod2.zoo.cli import add_zoo_parser
from sod2.zoo.errors import ModelNotBuiltError, TorchUnavailableError, UnknownModelError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sod2")
    add_zoo_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_list_names_every_model_with_symbols_and_sweep(capsys):
    assert run(["zoo", "list"]) == 0
    text = capsys.readouterr().out
    for name in names():
        assert name in text
    assert "symbol L in [2, 512]" in text and "sweep" in text and "small: " in text


def test_path_prints_the_shipped_file(capsys):
    assert run(["zoo", "path", "skipnet"]) == 0
    assert capsys.readouterr().out.strip() == str(get("skipnet").path())


def test_path_of_unbuilt_paper_model_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SOD2_CACHE", str(tmp_path))
    with pytest.raises(ModelNotBuiltError, match="sod2 zoo build codebert --scale paper"):
        run(["zoo", "path", "codebert", "--scale", "paper"])


def test_paper_builds_go_to_the_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SOD2_CACHE", str(tmp_path))
    assert get("yolov6").path("paper") == tmp_path / "yolov6.paper.onnx"


def test_unknown_model_is_an_error_naming_the_known_ones():
    with pytest.raises(UnknownModelError, match="known models"):
        run(["zoo", "path", "nope"])


def test_build_without_torch_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(TorchUnavailableError, match=r"pip install torch==2\.13\.0 onnxscript"):
        run(["zoo", "build", "skipnet", "-o", str(tmp_path / "skipnet.onnx")])
