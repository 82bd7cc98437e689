"""The registry of zoo models: every entry by name, and `get(name)` with a helpful error.

The entries come from one module per architecture family; importing them needs numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sod2.zoo import (
    blockdrop,
    codebert,
    conformer,
    convnet_aig,
    dgnet,
    ranet,
    segment_anything,
    skipnet,
    stable_diffusion,
    yolov6,
)
from sod2.zoo.errors import UnknownModelError
from sod2.zoo.spec import ZooModel

FAMILY_MODULES = (
    stable_diffusion,
    segment_anything,
    conformer,
    codebert,
    yolov6,
    skipnet,
    dgnet,
    convnet_aig,
    ranet,
    blockdrop,
)


def _collect() -> dict[str, ZooModel]:
    entries: dict[str, ZooModel] = {}
    for module in FAMILY_MODULES:
        for entry in module.ENTRIES:
            if entry.name in entries:
                raise ValueError(f"zoo model {entry.name!r} is defined twice")
            entries[entry.name] = entry
    return entries


REGISTRY: Mapping[str, ZooModel] = MappingProxyType(_collect())


def names() -> list[str]:
    """The names of all zoo models, in registry order."""
    return list(REGISTRY)


def get(name: str) -> ZooModel:
    """The zoo model called `name`; `UnknownModelError` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown zoo model {name!r}; known models: {', '.join(REGISTRY)}"
        ) from None
