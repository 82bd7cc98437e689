"""The zoo works without torch for everything but building: importing it, listing, metadata,
inputs, shipped files. Checked in a fresh interpreter in which `import torch` fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None
    sys.modules["onnxscript"] = None
    import sod2.zoo
    from sod2.zoo.cli import describe
    from sod2.zoo.errors import TorchUnavailableError
    for name in sod2.zoo.names():
        entry = sod2.zoo.get(name)
        describe(entry)
        point = entry.sweep[0]
        entry.make_inputs(point.values(), point.seed)
        assert entry.existing_path().is_file()
    try:
        sod2.zoo.get("ranet").build("small", "unused.onnx")
    except TorchUnavailableError as error:
        print("refused:", error)
    """
)


def test_zoo_needs_no_torch_except_to_build(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "refused: building zoo models needs torch" in result.stdout
    assert not (tmp_path / "unused.onnx").exists()
