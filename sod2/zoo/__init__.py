"""sod2's model zoo: the ten dynamic networks of the SoD2 paper, rebuilt in PyTorch from their
published descriptions with seeded random weights and exported to ONNX with their dynamism intact.

Each entry (`ZooModel`) carries its symbols and their ranges, a sweep of input bindings that takes
every branch of every `If`, and an input generator. Small-scale ONNX files ship with the package;
paper-scale ones are built on demand. Importing this package, listing models, reading metadata,
making inputs and finding shipped files need numpy and onnx only; building needs torch.
"""

from sod2.zoo.locations import SCALES, cache_dir
from sod2.zoo.registry import REGISTRY, get, names
from sod2.zoo.spec import SweepPoint, SymbolRange, TensorSpec, ZooModel

__all__ = [
    "REGISTRY",
    "SCALES",
    "SweepPoint",
    "SymbolRange",
    "TensorSpec",
    "ZooModel",
    "cache_dir",
    "get",
    "names",
]
