"""sod2: statically optimizing dynamic neural networks.

An ONNX model whose shapes depend on its input is imported into a typed IR (`sod2.ir`), analysed
ahead of time (`sod2.analysis`), optimized with what the analyses prove (`sod2.opt`) through a pass
manager (`sod2.passes`), and run by generated code (`sod2.backend`).
"""

from sod2.errors import Sod2Error
from sod2.ir import Graph, Model, load, save, verify

__version__ = "0.1.0"

__all__ = ["Graph", "Model", "Sod2Error", "__version__", "load", "save", "verify"]
