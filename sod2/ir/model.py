"""A model: a top-level graph plus what ONNX records around it.

The opset imports say which version of each operator domain the graph's nodes follow; the op
catalogue reads them to pick an operator's rules. Everything else (producer, metadata) is carried
through import and export unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sod2.errors import Sod2Error
from sod2.ir.graph import Graph

STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass(eq=False)
class Model:
    """A graph with its opset imports and metadata. An entity: compared by identity."""

    graph: Graph
    opset_imports: dict[str, int] = field(default_factory=lambda: {"": 21})
    ir_version: int = 10
    producer_name: str = "sod2"
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def opset(self, domain: str = "") -> int:
        """The imported version of `domain` ("" and "ai.onnx" are the standard domain)."""
        for key in (domain, *STANDARD_DOMAINS) if domain in STANDARD_DOMAINS else (domain,):
            if key in self.opset_imports:
                return self.opset_imports[key]
        raise Sod2Error(
            f"model imports no opset for domain {domain!r}; it imports "
            f"{', '.join(repr(d) for d in self.opset_imports) or 'none'}"
        )

    def __repr__(self) -> str:
        opsets = ", ".join(f"{d or 'ai.onnx'}:{v}" for d, v in self.opset_imports.items())
        return f"Model({self.graph.name!r}, {len(self.graph)} nodes, opsets {opsets})"
