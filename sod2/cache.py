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

Objects (the analysed model of a compile, `sod2.backend.runtime`) are kept as pickles:
`store_object(kind, name, header, body)` writes a small header, then the body, so that
`load_object` can reject a stale entry by its header without reading the body. A folder keeps
at most `OBJECT_LIMIT` entries, the least recently used going first. Like Numba's cache, these
pickles are trusted: the cache folder must be the user's own.

An entry's large buffers (a model's weights: numpy arrays of OUT_OF_BAND_BYTES or more) are
pickled out of band (pickle protocol 5) and written after the body, each at a multiple of
BUFFER_ALIGN bytes. `load_object` maps the file copy-on-write and hands the unpickler views of
the mapping: the arrays come back without being copied, their pages shared with the page cache
(and mapped at once, where the system can, so that their first reads do not count as memory
that inference takes); writing one copies only the pages written. A warm compile of a model of
350 MB thus reads its weights in milliseconds instead of a third of a second.

    entry = header pickle | MAGIC | the body pickle's length | buffer count | their sizes
            | body pickle | padding | buffer 0 | padding | buffer 1 ...
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import hashlib
import importlib.util
import io
import mmap
import os
import pickle
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

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


SETTLED_SECONDS = 2.0
"""How long ago a file must have been modified for its stamp to identify its contents."""


def settled(path: Path) -> bool:
    """Whether the file at `path` was last modified over `SETTLED_SECONDS` ago. A file system
    keeps modification times in ticks (milliseconds), so a file rewritten within the tick of its
    last change, at the same size, keeps its stamp: a cache keyed by the stamp of an unsettled
    file could serve the old contents (git calls such entries "racily clean")."""
    try:
        return time.time() - path.stat().st_mtime > SETTLED_SECONDS
    except OSError:
        return False


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


class Rebuilt:
    """An object whose compiled functions are not pickled: the attributes named in `TRANSIENT`
    are left out, and `rebuild()`, which the constructor calls too, makes them again from the
    rest of the state (from source, or from Numba's disk cache)."""

    TRANSIENT: tuple[str, ...] = ()

    def rebuild(self) -> None:
        """Set the `TRANSIENT` attributes from the rest of the state."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self.TRANSIENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.rebuild()


OBJECT_LIMIT = 32
"""Entries a folder of pickled objects keeps (least recently used dropped first)."""

OBJECT_BYTES = 4 << 30
"""Bytes a folder of pickled objects keeps at most, beside its newest entry (least recently
used dropped first): an analysed model holds its weights."""

DEEP_STACK = 1 << 29
"""Stack bytes of the thread that pickles: an IR graph is a chain as deep as the model is long,
and the pickler recurses along it (the pages are reserved, only those used are committed)."""


def _deep(function: Callable[[], T]) -> T:
    """`function()` in a thread with a deep stack and a high recursion limit (module docstring)."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:  # handed back to the caller's thread
            outcome.append((False, error))

    limit = sys.getrecursionlimit()
    size = threading.stack_size()
    threading.stack_size(DEEP_STACK)
    try:
        sys.setrecursionlimit(max(limit, 200_000))
        worker = threading.Thread(target=target, name="sod2-pickle")
        worker.start()
        worker.join()
    finally:
        threading.stack_size(size)
        sys.setrecursionlimit(limit)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


OUT_OF_BAND_BYTES = 1 << 16
"""Buffers this large are written out of band (module docstring); smaller ones stay in the
pickle, where a view each would cost more than the copy."""

BUFFER_ALIGN = 64
"""Out-of-band buffers start at a multiple of this many bytes of the entry (a cache line, and
any element's alignment)."""

MAGIC = b"sod2oob1"
"""Marks the layout of an entry's body (module docstring); another layout is a miss."""

_MADV_POPULATE_READ = 22
"""Linux's madvise advice that maps a range's pages at once, for reading (since 5.14)."""


def _out_of_band(buffers: list[pickle.PickleBuffer]) -> Callable[[pickle.PickleBuffer], bool]:
    """A pickler's buffer callback that keeps the buffers of OUT_OF_BAND_BYTES or more (and
    contiguous) in `buffers`, out of band, and has the others pickled in band."""

    def keep(buffer: pickle.PickleBuffer) -> bool:
        try:
            size = buffer.raw().nbytes
        except BufferError:  # not contiguous
            return True  # (a true value: in band)
        if size < OUT_OF_BAND_BYTES:
            return True
        buffers.append(buffer)
        return False

    return keep


def _aligned(offset: int) -> int:
    """`offset` rounded up to a multiple of BUFFER_ALIGN."""
    return -(-offset // BUFFER_ALIGN) * BUFFER_ALIGN


def store_object(
    kind: str,
    name: str,
    header: Any,
    body: Any,
    reducers: Mapping[type, Callable[[Any], tuple[Any, ...]]] | None = None,
) -> bool:
    """Pickle `header` then `body` as entry `name` of `kind` (module docstring), replacing an
    older one; False (and nothing written) when the cache cannot be written or `body` cannot be
    pickled. `reducers` pickle objects of the given exact types their own way (`copyreg`
    reducers)."""
    directory = cache_dir(kind)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    except OSError:
        return False
    try:
        with os.fdopen(handle, "wb") as file:
            table = {**copyreg.dispatch_table, **(reducers or {})}
            buffers: list[pickle.PickleBuffer] = []
            pickled = io.BytesIO()
            for part, into in ((header, file), (body, pickled)):  # `load_object` reads them apart
                callback = _out_of_band(buffers) if part is body else None
                pickler = pickle.Pickler(into, 5, buffer_callback=callback)
                pickler.dispatch_table = table
                _deep(lambda: pickler.dump(part))  # noqa: B023 (called at once)
            sizes = [buffer.raw().nbytes for buffer in buffers]
            file.write(MAGIC + struct.pack(f"<QQ{len(sizes)}Q", pickled.tell(), len(sizes), *sizes))
            file.write(pickled.getbuffer())
            for buffer in buffers:
                file.write(bytes(_aligned(file.tell()) - file.tell()))
                file.write(buffer.raw())
        os.replace(temporary, directory / f"{name}.pkl")
    except (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError):
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False
    _prune(directory)
    return True


def load_object(kind: str, name: str, accept: Callable[[Any], bool]) -> Any | None:
    """The body of entry `name` of `kind` if there is one whose header `accept`s; else None. An
    entry that is rejected or cannot be read is removed. Its out-of-band buffers are views of
    the file mapped copy-on-write (module docstring)."""
    path = cache_dir(kind) / f"{name}.pkl"
    try:
        file = path.open("rb")
    except OSError:
        return None
    with file:
        try:
            if not accept(pickle.load(file)):
                raise ValueError("stale entry")
            body = _deep(lambda: _read_body(file))
        except Exception:  # stale, truncated, or written by incompatible code: a miss
            with contextlib.suppress(OSError):
                path.unlink()
            return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used
    return body


def _read_body(file: Any) -> Any:
    """The body of an entry whose header `file` has just been read past (module docstring)."""
    if file.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an entry of this layout")
    length, count = struct.unpack("<QQ", file.read(16))
    sizes = struct.unpack(f"<{count}Q", file.read(8 * count))
    pickled = file.read(length)
    if len(pickled) != length:
        raise ValueError("truncated entry")
    at = file.tell()
    views = []
    if count:
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            mapping.madvise(_MADV_POPULATE_READ)  # (else each page is mapped on its first read)
        whole = memoryview(mapping)
        for size in sizes:
            at = _aligned(at)
            if at + size > len(whole):
                raise ValueError("truncated entry")
            views.append(whole[at : at + size])
            at += size
    return pickle.loads(pickled, buffers=views)


def _prune(directory: Path) -> None:
    """Drop the least recently used entries beyond `OBJECT_LIMIT` entries or `OBJECT_BYTES`
    bytes (the most recent entry always stays)."""
    with contextlib.suppress(OSError):
        stats = [(p, p.stat()) for p in directory.glob("*.pkl")]
        stats.sort(key=lambda item: item[1].st_mtime_ns, reverse=True)  # newest first
        total = 0
        for rank, (path, stat) in enumerate(stats):
            total += stat.st_size
            if rank and (rank >= OBJECT_LIMIT or total > OBJECT_BYTES):
                path.unlink()


@functools.cache
def code_fingerprint() -> str:
    """A key that changes whenever sod2's own source files or the versions of the libraries
    whose objects it caches may have (a cached analysis is only valid for the code that made it)."""
    import networkx
    import numpy
    import onnx
    import sympy

    versions = [sys.version, numpy.__version__, sympy.__version__, networkx.__version__]
    return source_fingerprint(Path(__file__).resolve().parent, [*versions, onnx.__version__])


def source_fingerprint(root: Path, salt: Sequence[str] = ()) -> str:
    """A key that changes whenever a `.py` file under `root` may have (its path, size and
    modification time), or `salt` does."""
    parts = list(salt)
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        parts.append(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return digest("|".join(parts))
