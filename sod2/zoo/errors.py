"""The errors the model zoo raises; each derives from `Sod2Error`, so the CLI prints it as one line.

Every message names the model or file at fault and says what to do next: which names exist, which
command builds a missing file, which packages a build needs.
"""

from __future__ import annotations

from sod2.errors import Sod2Error

INSTALL_HINT = "pip install torch==2.13.0 onnxscript (or the extra: pip install 'sod2[zoo]')"


class ZooError(Sod2Error):
    """Base class of the zoo's errors."""


class UnknownModelError(ZooError):
    """A zoo model name that the registry does not know."""


class UnknownScaleError(ZooError):
    """A scale other than `small` or `paper`."""


class InvalidBindingError(ZooError):
    """A symbol binding that misses a symbol, names an unknown one, or leaves a symbol's range."""


class ModelNotBuiltError(ZooError):
    """The ONNX file of a model at a scale does not exist yet."""


class TorchUnavailableError(ZooError):
    """Building a model needs torch and onnxscript, and one of them cannot be imported."""


class ExportError(ZooError):
    """torch could not export a zoo model to ONNX, or the exported file broke the zoo's contract."""
