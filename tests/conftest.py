"""Test-wide settings.

Hypothesis: no per-example deadline (symbolic algebra and onnxruntime sessions vary in speed, and
a timing is not a property). Under CI (CI=true) examples are derandomized so a run is repeatable;
set HYPOTHESIS_PROFILE=thorough for a longer search.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)
