"""Write generated images to a directory: encoding overlaps inference in a bounded thread pool,
every file is written atomically and named by its global index."""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from runtime.files import atomic_write_bytes
from runtime.images import encode_image

FORMATS = ("png", "jpg", "npy")


def file_name(index: int, width: int, fmt: str) -> str:
    return f"{index:0{width}d}.{fmt}"


def index_width(last_index: int) -> int:
    """Zero-padding width: at least 6 digits, more when the indices need them."""
    return max(6, len(str(last_index)))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, image)
        return buf.getvalue()
    return encode_image(image, fmt)


class ImageWriter:
    """Encode and write batches on `workers` threads, with at most `max_pending` batches queued
    (so memory stays bounded when inference outpaces encoding). PNG/JPEG encoding in Pillow
    releases the GIL, so the threads run beside inference.

    Use as a context manager; `submit(first_index, images)` per batch. The first failure is
    raised from `submit` or on exit, and no further batches are started.
    """

    def __init__(self, out_dir: Path, fmt: str, width: int, workers: int = 2, max_pending: int = 4):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.out_dir, self.fmt, self.width = out_dir, fmt, width
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="encode")
        self.pending: deque[Future] = deque()
        self.max_pending = max_pending
        self.written = 0

    def _write_batch(self, first: int, images: np.ndarray) -> int:
        for k, image in enumerate(images):
            path = self.out_dir / file_name(first + k, self.width, self.fmt)
            atomic_write_bytes(path, _encode(image, self.fmt))
        return len(images)

    def submit(self, first: int, images: np.ndarray) -> None:
        while len(self.pending) >= self.max_pending:
            self.written += self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write_batch, first, images))

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                while self.pending:
                    self.written += self.pending.popleft().result()
        finally:
            for future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)
