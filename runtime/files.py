"""Atomic file writes and checksums: a crash never leaves a truncated file under its final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, overwrite: bool = True,
                durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file beside `path` for binary writing and move it into place on success.

    Args:
        path: the final file name.
        overwrite: if False, raise FileExistsError when `path` already exists.
        durable: fsync the file before the rename. Bulk writers pass False and make the whole
            run durable with one sync at its end (runtime/writer.py).

    The temporary file lives in the same directory, so `os.replace` is atomic; on any exception it
    is removed and `path` is untouched.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists — pass --overwrite to replace it")
    # os.open with 0o666 honours the umask (mkstemp would make every file 0600)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with _renamed_into_place(tmp, path), os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())


@contextlib.contextmanager
def _renamed_into_place(tmp: str | os.PathLike, path: str | os.PathLike) -> Iterator[None]:
    """Rename `tmp` over `path` when the block succeeds (after the file in it is closed); remove
    `tmp` when the block fails, leaving `path` untouched."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bulk_file(path: str | os.PathLike, data: bytes) -> None:
    """Bulk writers' atomic write of one small file: a temporary name beside `path`, one write,
    then a rename over it. Four system calls and no fsync: a bulk writer makes its whole run
    durable with one sync at the end (runtime/writer.py), and owns its directory while it writes
    (runtime/outdir.py), so the process and thread id make the temporary name unique."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with _renamed_into_place(tmp, path):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    """Write `data` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path, overwrite=overwrite) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    """Write UTF-8 `text` to `path` atomically (see `atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
