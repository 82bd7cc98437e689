"""benchmarks/op_profile.py on a small zoo model: both profiles add up, labels name op types, and
the runtime's step classes are left as they were."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "op_profile.py"


@pytest.fixture(scope="module")
def op_profile():
    spec = importlib.util.spec_from_file_location("op_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profiles_cover_the_run_and_restore_the_steps(op_profile):
    import sod2.zoo

    entry = sod2.zoo.get("sam_mask_decoder")
    _, feeds = entry.sweep_inputs("small")[0]
    before = {cls: cls.run for cls in op_profile.STEP_CLASSES}
    total, shares = op_profile.profile_sod2(str(entry.path("small")), feeds, 1, 2)
    assert {cls: cls.run for cls in op_profile.STEP_CLASSES} == before
    assert "ConvTranspose" in shares and any(k.endswith("+epilogue") for k in shares)
    assert 0 < sum(shares.values()) <= total
    ort_total, ort_shares = op_profile.profile_ort(str(entry.path("small")), feeds, 1, 2)
    assert ort_total > 0 and "ConvTranspose" in ort_shares


def test_the_command_names_a_point_out_of_range(op_profile, capsys):
    with pytest.raises(SystemExit):
        op_profile.main(["sam_mask_decoder", "--point", "99"])
    assert "--point must be in [0, 6)" in capsys.readouterr().err
