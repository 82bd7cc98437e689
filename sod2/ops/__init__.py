"""The operator catalogue: per ONNX operator, what sod2 knows about it.

Importing this package registers every family module, so `lookup` sees the whole catalogue.
"""

from sod2.ops import elementwise, shape  # noqa: F401  (importing registers the kernels)
from sod2.ops.registry import (
    KernelContext,
    OpDef,
    Value,
    catalogue,
    lookup,
    lookup_node,
    register,
)

__all__ = ["KernelContext", "OpDef", "Value", "catalogue", "lookup", "lookup_node", "register"]
