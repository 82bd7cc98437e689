"""Analyses: facts about graphs, computed on demand and cached by the pass manager."""

from sod2.analysis.reachability import LiveNodes, OpHistogram

__all__ = ["LiveNodes", "OpHistogram"]
