"""sod2's on-disk caches: generated source files imported as modules, so Numba can cache them.

Numba's `cache=True` keeps a function's machine code beside the file that defines it, keyed by
that file's path and modification time. Code that sod2 generates (memory-plan evaluators, fused
loop nests) is therefore written to a file once, named by the hash of its text, and imported from
there: a second process that generates the same text imports the same file and loads machine
code instead of compiling.

Layout: `$SOD2_CACHE_DIR/<kind>/` (default `~/.cache/sod2/<kind>/`), one module per distinct
source. Invariants: a file is never rewritten once it exists with the right text (that would
invalidate Numba's index); a new file is written under a temporary name and renamed, so
concurrent processes never import half a file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

CACHE_ENV = "SOD2_CACHE_DIR"
"""The environment variable naming sod2's cache root (default `~/.cache/sod2`)."""


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached code: `$SOD2_CACHE_DIR/<kind>`, else
    `~/.cache/sod2/<kind>`."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "sod2") / kind


def digest(text: str) -> str:
    """A short stable hash of `text` (16 hex digits)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def import_source(source: str, directory: Path, prefix: str) -> ModuleType:
    """`source` written once to `directory` as `<prefix>_<hash>.py`, imported as a module.
    Raises OSError when the folder cannot be written."""
    name = f"{prefix}_{digest(source)}"
    path = directory / f"{name}.py"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path) and path.exists():
        return loaded
    if not path.exists() or path.read_text() != source:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            file.write(source)
        os.replace(temporary, path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot import the generated module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module  # Numba finds a cached function's globals by its module's name
    return module


def file_stamp(path: Path, salt: str = "") -> str:
    """A key that changes whenever the file at `path` may have: its resolved path, device, inode,
    size and modification time (nanoseconds), plus `salt` (a tool's version)."""
    resolved = path.resolve()
    stat = resolved.stat()
    return digest(
        f"{resolved}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{salt}"
    )


def has_mark(kind: str, key: str) -> bool:
    """Whether `mark(kind, key)` was called before (by any process using this cache)."""
    return (cache_dir(kind) / key).exists()


def mark(kind: str, key: str) -> None:
    """Record `key` under `kind` (an empty file); a cache that cannot be written is skipped."""
    try:
        directory = cache_dir(kind)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / key).touch()
    except OSError:
        pass
