"""The backend interface: one small class per inference engine (the shape of Polygraphy's runners).

The constructor only stores what it needs; `activate()` acquires the session or engine;
`infer(z)` maps float32 (n, nz) latents to uint8 (n, H, W, C) images; `deactivate()` frees.
The base class checks state and input once; each backend implements `_activate`, `_infer`,
`_deactivate`. Every `infer` is safe to call from several threads at once.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from runtime.manifest import FileEntry, Manifest


class Backend:
    name = "base"

    def __init__(self, manifest: Manifest, entry: FileEntry, device: int = 0):
        self.manifest, self.entry, self.device = manifest, entry, device
        self.max_batch: int | None = None  # None: any batch size
        self.active = False
        self._lock = threading.Lock()

    def activate(self) -> Backend:
        with self._lock:
            if not self.active:
                self._activate(self.manifest.checked_path(self.entry))
                self.active = True
        return self

    def infer(self, z: np.ndarray) -> np.ndarray:
        if not self.active:
            raise RuntimeError(f"backend {self.name} is not active — call activate() first")
        return self._infer(np.ascontiguousarray(z, dtype=np.float32))

    def deactivate(self) -> None:
        with self._lock:
            if self.active:
                self._deactivate()
                self.active = False

    def __enter__(self) -> Backend:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def _activate(self, model_path: Path) -> None:
        raise NotImplementedError

    def _infer(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError
