"""`runtime.Generator`: batched, reproducible DCGAN image generation without torch."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.backend import Backend
from runtime.backends import BACKENDS, auto_backend, create_backend
from runtime.errors import ArtifactError
from runtime.latents import MAX_INDEX, MAX_SEED, latents, lerp, slerp
from runtime.manifest import Manifest, onnx_manifest, read_manifest
from runtime.optional import import_onnxruntime

log = logging.getLogger(__name__)

DEFAULT_BATCH = 64
MAX_IMAGES = 65536  # per generate()/from_latents() call (0.8 GB of RGB); iter_batches streams any count


class Generator:
    """Generate 64x64 images from an exported DCGAN artifact.

    Thread-safe: one Generator may be shared by many threads; every call returns exactly what
    it would return alone. Image i under seed s is the same, byte for byte, for any batch size,
    start offset or shard, on one backend.

    Example:
        >>> from runtime import Generator
        >>> with Generator.load("artifacts/dcgan") as gen:
        ...     images = gen.generate(16, seed=0)   # uint8 (16, 64, 64, 3)
    """

    def __init__(self, backend: Backend, manifest: Manifest):
        self.backend = backend
        self.manifest = manifest

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", device: int = 0,
             precision: str | None = None, spin_wait: bool = True) -> Generator:
        """Open an artifact and start a backend.

        Args:
            path: an artifact directory, its manifest.json, or a bare .onnx file (metadata is
                read from the model).
            backend: "auto" (trt where an engine for this GPU exists, else ort-cuda where CUDA
                works, else ort-cpu), or one of "ort-cpu", "ort-cuda", "trt".
            device: CUDA device index for GPU backends.
            precision: "fp32", "fp16" or "int8" to pick a model file; default: fp32 where
                present. int8 (ort-cpu only) is about 2x faster on CPUs with AVX-512 VNNI and
                within its own tolerance of the reference (export/verify.py).
            spin_wait: let ort-cpu's threads spin a moment after each call, waiting for the next
                (the lowest latency for one caller). A service turns it off: between batches its
                event loop needs those cores (benchmarks/results/serve-oip.md).

        Raises:
            ArtifactError: missing/invalid manifest, unknown format version, sha256 mismatch.
            BackendUnavailable: the backend cannot run here; the message says what to install.
        """
        path = Path(path)
        if path.suffix == ".onnx":
            manifest = _onnx_file_manifest(path)
            precision = precision or manifest.files()[0].precision  # the one file there is
        else:
            manifest = read_manifest(path)
        return cls.from_manifest(manifest, backend, device, precision, spin_wait)

    @classmethod
    def from_manifest(cls, manifest: Manifest, backend: str = "auto", device: int = 0,
                      precision: str | None = None, spin_wait: bool = True) -> Generator:
        """`load` for a manifest already in hand (export checks its files through one before
        writing it)."""
        if backend == "auto":
            return cls(auto_backend(manifest, device, precision, spin_wait), manifest)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected auto or one of {', '.join(BACKENDS)}")
        return cls(create_backend(backend, manifest, device, precision, spin_wait).activate(),
                   manifest)

    # -- what the model is --------------------------------------------------------------------
    @property
    def info(self) -> dict:
        """The artifact's manifest (a dict: model, tensors, files, verification results)."""
        return self.manifest.data

    @property
    def nz(self) -> int:
        return self.manifest.nz

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def model_file(self):
        """The manifest's entry (a FileEntry: name, sha256, precision) of the model file this
        Generator runs."""
        return self.backend.entry

    @property
    def max_batch(self) -> int | None:
        """Largest batch one backend call takes (TensorRT's profile max), or None."""
        return self.backend.max_batch

    # -- latents ------------------------------------------------------------------------------
    def latents(self, n: int, seed: int, start: int = 0) -> np.ndarray:
        """float32 (n, nz): the latents of images start .. start+n-1 under `seed`."""
        n, start, seed = _count(n, "n"), _count(start, "start"), _seed(seed)
        _check_range(start, n)
        return latents(seed, start, n, self.nz, self.manifest.latent)

    # -- images -------------------------------------------------------------------------------
    def from_latents(self, z: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 (n, H, W, C) images for float32 latents `z` of shape (n, nz)."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.nz:
            raise ValueError(f"z must have shape (n, {self.nz}), got {z.shape}")
        if not np.issubdtype(z.dtype, np.floating):
            raise ValueError(f"z must be a float array (float32 expected), got {z.dtype}")
        if z.shape[0] > MAX_IMAGES:
            raise ValueError(f"{z.shape[0]} latents in one call is above the limit of {MAX_IMAGES} — "
                             "split the call")
        with np.errstate(over="ignore"):  # an overflow is reported below, as a ValueError
            z = z.astype(np.float32, copy=False)
        if not np.all(np.isfinite(z)):  # after the cast: 1e300 in float64 is inf in float32
            raise ValueError("z contains NaN or inf (as float32); expected finite latents")
        batch = self._batch_size(batch_size)
        size, c = self.manifest.image_size, self.manifest.channels
        out = np.empty((z.shape[0], size, size, c), np.uint8)
        for i in range(0, z.shape[0], batch):
            out[i:i + batch] = self.backend.infer(z[i:i + batch])
        return out

    def generate(self, n: int, seed: int | None = None, batch_size: int | None = None,
                 start: int = 0) -> np.ndarray:
        """uint8 (n, H, W, C) images start .. start+n-1 under `seed`.

        Args:
            n: number of images (>= 0).
            seed: 0 <= seed < 2**128; None draws a fresh random seed (not reproducible).
            batch_size: images per backend call; default 64 (capped at the engine's max).
            start: global index of the first image.
        """
        n = _count(n, "n")
        if n > MAX_IMAGES:
            raise ValueError(f"n={n} is above the limit of {MAX_IMAGES} images per call (they are "
                             "returned in one array) — use iter_batches() to stream any number")
        seed = secrets.randbits(63) if seed is None else seed
        out = np.empty((n, self.manifest.image_size, self.manifest.image_size,
                        self.manifest.channels), np.uint8)
        for first, images in self.iter_batches(n, seed, batch_size, start):
            out[first - start:first - start + len(images)] = images
        return out

    def iter_batches(self, n: int, seed: int, batch_size: int | None = None,
                     start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (global index of the first image, uint8 images) batch by batch, for streaming."""
        n, start, seed = _count(n, "n"), _count(start, "start"), _seed(seed)
        _check_range(start, n)
        batch = self._batch_size(batch_size)
        for first in range(start, start + n, batch):
            count = min(batch, start + n - first)
            yield first, self.backend.infer(latents(seed, first, count, self.nz, self.manifest.latent))

    def interpolate(self, z0: np.ndarray, z1: np.ndarray, steps: int,
                    method: str = "slerp") -> np.ndarray:
        """Images along the path from z0 to z1 (endpoints included): the paper's latent walk.

        Returns uint8 (steps, H, W, C). `method` is "slerp" (default) or "linear".
        """
        if method not in ("slerp", "linear"):
            raise ValueError(f"method must be 'slerp' or 'linear', got {method!r}")
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (both endpoints), got {steps}")
        for name, z in (("z0", z0), ("z1", z1)):
            if np.shape(z) != (self.nz,):
                raise ValueError(f"{name} must have shape ({self.nz},), got {np.shape(z)}")
        t = np.linspace(0.0, 1.0, steps)
        path = (slerp if method == "slerp" else lerp)(z0, z1, t)
        return self.from_latents(path)

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return min(DEFAULT_BATCH, self.max_batch or DEFAULT_BATCH)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if self.max_batch is not None and batch_size > self.max_batch:
            raise ValueError(f"batch_size {batch_size} is above the engine's max batch "
                             f"{self.max_batch}; use <= {self.max_batch} or re-export with a larger "
                             "--max-batch")
        return int(batch_size)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the backend's session or engine. The Generator cannot be used afterwards."""
        self.backend.deactivate()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Generator(backend={self.backend_name!r}, nz={self.nz}, "
                f"latent={self.manifest.latent!r}, root={str(self.manifest.root)!r})")


# The validators return a plain int: a numpy integer would overflow silently in the latents'
# counter arithmetic ((start + k) << 128 is 0 for np.int64), so it never gets past the API.
def _count(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def _check_range(start: int, n: int) -> None:
    if start + n > MAX_INDEX + 1:
        raise ValueError(f"images {start}..{start + n - 1} go past the last index 2**128 - 1")


def _seed(seed) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**128), got {seed!r}")
    return int(seed)


def _onnx_file_manifest(path: Path) -> Manifest:
    """Read nz, latent distribution, image size and channels from a bare model's metadata."""

    if not path.is_file():
        raise ArtifactError(f"{path} does not exist — pass an artifact directory or a .onnx file")
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ArtifactError(f"{path} is not a loadable ONNX model ({type(e).__name__})") from e
    meta = session.get_modelmeta().custom_metadata_map
    try:
        return onnx_manifest(path, int(meta["nz"]), meta["latent"], int(meta["image_size"]),
                             int(meta["channels"]), session.get_inputs()[0].name,
                             session.get_outputs()[0].name, meta.get("precision", "fp32"))
    except KeyError as e:
        raise ArtifactError(f"{path} has no dcgan metadata ({e.args[0]}) — export it with "
                            "dcgan-export, or load its artifact directory") from e
    finally:
        del session
