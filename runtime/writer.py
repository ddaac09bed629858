"""Write generated images: one file per image (png, jpg), WebDataset-style tar shards, or one
.npy array. Encoding overlaps inference on a bounded thread pool (Pillow releases the GIL while
it compresses), so memory stays flat however many images a run writes.

Every file appears under its final name only when it is complete (a temporary name, then a
rename), and its sha256 goes into the run's checksums (runtime/run_record.py) right after, so an
interrupted run can be resumed: `pending()` says which index ranges still need writing, and the
caller first drops any file whose bytes no longer match its hash. Durability is one sync at the
end of the run (`sync_directory`), not an fsync per image: a file a power loss damaged fails its
hash on resume and is written again.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import tarfile
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.files import atomic_open, write_bulk_file
from runtime.images import encode_image
from runtime.run_record import NPY_NAME, Checksums, file_name, shard_name, shard_starts

FORMATS = ("png", "jpg", "tar", "npy")


def index_width(last_index: int) -> int:
    """Zero-padding width: at least 6 digits, more when the indices need them."""
    return max(6, len(str(last_index)))


def sync_directory(directory: Path) -> None:
    """Make what was written under `directory` durable: one syncfs of its file system (os.sync
    where syncfs is missing), then an fsync of the directory itself for the renames."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) != 0:
                os.sync()
        except (OSError, AttributeError):
            os.sync()
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporaries(directory: Path) -> int:
    """Delete temporary files an interrupted run left (never a final name); returns how many."""
    removed = 0
    for p in directory.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed += 1
    return removed


class _Pool:
    """At most `max_pending` encoding jobs in flight; results come back in submission order."""

    def __init__(self, workers: int, max_pending: int):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="encode")
        self.pending: deque[Future] = deque()
        self.max_pending = max(1, max_pending)

    def submit(self, fn, *args) -> list:
        """Queue fn(*args); return the results of the jobs that had to finish to make room."""
        done = []
        while len(self.pending) >= self.max_pending:
            done.append(self.pending.popleft().result())
        self.pending.append(self.pool.submit(fn, *args))
        return done

    def drain(self) -> list:
        done = []
        while self.pending:
            done.append(self.pending.popleft().result())
        return done

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


class Writer:
    """Base: `submit(first_index, images)` per batch, in index order; `pending()` before a run
    says which ranges are missing; `finish()` returns the manifest fields of what was written.
    Use as a context manager: on an exception nothing half-written is left under a final name."""

    def __init__(self, out: Path, fmt: str, first: int, count: int, width: int,
                 checksums: Checksums, workers: int = 2, max_pending: int = 4):
        self.out, self.fmt, self.first, self.count, self.width = out, fmt, first, count, width
        self.checksums, self.workers, self.max_pending = checksums, workers, max_pending

    def pending(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    def submit(self, first: int, images: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileWriter(Writer):
    """One png or jpg file per image, named by its global index."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = _Pool(self.workers, self.max_pending)

    def pending(self) -> list[tuple[int, int]]:
        missing = [i for i in range(self.first, self.first + self.count)
                   if not (self.out / file_name(i, self.width, self.fmt)).exists()]
        return _ranges(missing)

    def _write_batch(self, first: int, images: np.ndarray) -> list[tuple[str, str]]:
        written = []
        for k, image in enumerate(images):
            name, data = file_name(first + k, self.width, self.fmt), encode_image(image, self.fmt)
            write_bulk_file(self.out / name, data)
            written.append((name, hashlib.sha256(data).hexdigest()))
        return written

    def _record(self, batches: list[list[tuple[str, str]]]) -> None:
        for batch in batches:
            for name, digest in batch:
                self.checksums.add(name, digest)

    def submit(self, first: int, images: np.ndarray) -> None:
        self._record(self.pool.submit(self._write_batch, first, images))

    def finish(self) -> dict:
        self._record(self.pool.drain())
        return {"file_pattern": file_name(self.first, self.width, self.fmt)}

    def close(self) -> None:
        self.pool.close()


def tar_member(name: str, payload: bytes) -> bytes:
    """One USTAR member: tarfile's own header, the payload, NUL padding to the 512-byte block.
    mtime 0, mode 0644, no owner: the same bytes on every machine and every run."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    return header + payload + b"\0" * (-len(payload) % tarfile.BLOCKSIZE)


def tar_end(size: int) -> bytes:
    """What closes a tar of `size` bytes of members, as tarfile writes it: two zero blocks, then
    zeros up to a whole record."""
    size += 2 * tarfile.BLOCKSIZE
    return b"\0" * (2 * tarfile.BLOCKSIZE + (-size % tarfile.RECORDSIZE))


class TarWriter(Writer):
    """WebDataset-style tar shards of `shard_size` images: members NNNNNN.png and NNNNNN.json
    ({"seed", "index"}) per image, each shard written to a temporary file and renamed when whole.
    The encoding threads build whole tar members (runtime/png.py, `tar_member`); this thread only
    appends their bytes, in index order."""

    def __init__(self, *args, shard_size: int, seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.shard_size, self.seed = shard_size, seed
        self.pool = _Pool(self.workers, self.max_pending)
        self.shard: BinaryIO | None = None  # the open shard's temporary file
        self.tmp: Path | None = None
        self.shard_first: int | None = None
        self.shard_bytes = 0
        self.digest = None  # of the open shard's bytes so far

    def _shard_of(self, index: int) -> int:
        return self.first + (index - self.first) // self.shard_size * self.shard_size

    def pending(self) -> list[tuple[int, int]]:
        missing = []
        for start in shard_starts(self.first, self.count, self.shard_size):
            if not (self.out / shard_name(start, self.width)).exists():
                end = min(start + self.shard_size, self.first + self.count)
                missing.extend(range(start, end))
        return _ranges(missing)

    def _members(self, first: int, images: np.ndarray) -> tuple[int, int, bytes]:
        members = []
        for k, image in enumerate(images):
            key = f"{first + k:0{self.width}d}"
            meta = json.dumps({"seed": self.seed, "index": first + k}).encode()
            members += [tar_member(f"{key}.png", encode_image(image, "png")),
                        tar_member(f"{key}.json", meta)]
        return first, len(images), b"".join(members)

    def submit(self, first: int, images: np.ndarray) -> None:
        # a batch never spans two shards: the caller cuts batches at shard boundaries
        for done in self.pool.submit(self._members, first, images):
            self._append(*done)

    def _append(self, first: int, count: int, members: bytes) -> None:
        shard = self._shard_of(first)
        if shard != self.shard_first:
            self._close_shard()
            self.shard_first, self.shard_bytes = shard, 0
            self.tmp = self.out / f".{shard_name(shard, self.width)}.{uuid.uuid4().hex[:12]}.tmp"
            self.shard, self.digest = open(self.tmp, "wb"), hashlib.sha256()
        self.shard.write(members)
        self.digest.update(members)
        self.shard_bytes += len(members)
        if first + count == min(shard + self.shard_size, self.first + self.count):
            self._close_shard()

    def _close_shard(self) -> None:
        if self.shard is not None:
            end = tar_end(self.shard_bytes)
            self.shard.write(end)
            self.digest.update(end)
            self.shard.close()
            name = shard_name(self.shard_first, self.width)
            os.replace(self.tmp, self.out / name)
            self.checksums.add(name, self.digest.hexdigest())
            self.shard, self.tmp, self.shard_first = None, None, None

    def finish(self) -> dict:
        for done in self.pool.drain():
            self._append(*done)
        self._close_shard()
        shards = []
        for start in shard_starts(self.first, self.count, self.shard_size):
            name = shard_name(start, self.width)
            end = min(start + self.shard_size, self.first + self.count)
            shards.append({"file": name, "first_index": start, "count": end - start,
                           "sha256": self.checksums.entries[name]})
        return {"shard_size": self.shard_size, "shards": shards}

    def close(self) -> None:
        self.pool.close()
        if self.shard is not None:  # interrupted mid-shard: the partial shard is not kept
            self.shard.close()
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            self.shard = None


class NpyWriter(Writer):
    """One uint8 (N, H, W, C) array, images.npy: the .npy header, then each batch appended as it
    comes (batches arrive in index order), hashed on the way, in a temporary file renamed when
    complete. A resumed run writes it again from the start."""

    def __init__(self, *args, shape: tuple[int, int, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.shape, self.tmp, self.file, self.digest = shape, None, None, None
        self.written = 0

    def pending(self) -> list[tuple[int, int]]:
        return [] if (self.out / NPY_NAME).exists() else _ranges(range(self.first, self.first + self.count))

    def _write(self, data: bytes | np.ndarray) -> None:
        self.file.write(data)
        self.digest.update(data)

    def submit(self, first: int, images: np.ndarray) -> None:
        if self.file is None:
            self.tmp = self.out / f".{NPY_NAME}.{uuid.uuid4().hex[:12]}.tmp"
            self.file, self.digest = open(self.tmp, "wb"), hashlib.sha256()
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (self.count, *self.shape)})
            self._write(header.getvalue())
        if first != self.first + self.written or images.shape[1:] != self.shape:
            raise ValueError(f"npy batches must come in index order with shape {self.shape}")
        self._write(np.ascontiguousarray(images, np.uint8))
        self.written += len(images)

    def finish(self) -> dict:
        if self.file is None and not (self.out / NPY_NAME).exists():  # nothing was generated (n=0)
            data = _npy_bytes(np.zeros((self.count, *self.shape), np.uint8))
            with atomic_open(self.out / NPY_NAME, durable=False) as f:
                f.write(data)
            self.checksums.add(NPY_NAME, hashlib.sha256(data).hexdigest())
        if self.file is not None:
            self.file.close()
            os.replace(self.tmp, self.out / NPY_NAME)
            self.checksums.add(NPY_NAME, self.digest.hexdigest())
            self.file, self.tmp = None, None
        return {"file": NPY_NAME, "sha256": self.checksums.entries[NPY_NAME]}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
            self.file = None


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _ranges(indices) -> list[tuple[int, int]]:
    """Sorted indices -> [(first, count), ...] of consecutive runs."""
    out: list[list[int]] = []
    for i in indices:
        if out and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return [(a, n) for a, n in out]
