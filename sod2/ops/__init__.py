"""The operator catalogue: per ONNX operator, what sod2 knows about it.

Each operator family lives in its own module here (`elementwise`, `shape`, `control_flow` ...) and
registers its entries when imported. Importing this package imports every family module, so
`lookup` always sees the whole catalogue; a new family is a new module, nothing else to edit.
"""

import importlib
import pkgutil

from sod2.ops.registry import (
    KernelContext,
    OpClass,
    OpDef,
    ShapeDef,
    Value,
    catalogue,
    lookup,
    lookup_node,
    lookup_shape_rule,
    register,
    shape_rule,
    shape_rules,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "KernelContext",
    "OpClass",
    "OpDef",
    "ShapeDef",
    "Value",
    "catalogue",
    "lookup",
    "lookup_node",
    "lookup_shape_rule",
    "register",
    "shape_rule",
    "shape_rules",
]
