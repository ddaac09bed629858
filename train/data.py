"""Training data: the `shapes` default, image folders and LSUN lmdb databases, behind one Dataset.

Every source is decoded (or, for shapes, rendered) once into a uint8 memmap cache
(N, 64, 64, C); every epoch after that reads the memmap. The cache is keyed by the source and
rebuilt when its fingerprint (paths, sizes, mtimes; for shapes, the renderer's version) changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from runtime.errors import DcganError
from runtime.files import atomic_write_text
from train import shapes

log = logging.getLogger(__name__)

# Part of the fingerprint of decoded data (folders, lmdb): a change in how files are decoded
# (2: 16-bit grey scaled to 8 bits, no longer clipped white) rebuilds their caches.
DECODER_VERSION = "decode2"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_SHAPES_LENGTH = 50_000
CACHE_FORMAT = 2  # 2: transparent images composited over white


class DataError(DcganError):
    """The data source is missing, empty or unreadable."""


@dataclass
class Source:
    """An image source to cache: `count` encoded items, each read by `read(i) -> (bytes, label)`."""

    kind: str
    path: Path
    count: int
    read: Callable[[int], tuple[bytes, int]]
    describe: Callable[[int], str]  # a name for item i, for warnings
    classes: list[str]
    fingerprint: str
    decoded: bool = False  # read(i) gives a uint8 (64, 64, 3) array, not encoded bytes


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dcgan"


def folder_source(root: Path) -> Source:
    """Recursive image folder; files in first-level subfolders take that subfolder as class."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root} — "
                        "point --data at a folder of images")
    rel = [p.relative_to(root) for p in files]
    labelled = all(len(r.parts) > 1 for r in rel)
    classes = sorted({r.parts[0] for r in rel}) if labelled else []
    labels = [classes.index(r.parts[0]) if labelled else -1 for r in rel]
    digest = hashlib.sha256(DECODER_VERSION.encode())
    for r, p in zip(rel, files):
        st = p.stat()
        digest.update(f"{r.as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return Source("folder", root, len(files), lambda i: (files[i].read_bytes(), labels[i]),
                  lambda i: str(files[i]), classes, digest.hexdigest())


def lmdb_source(root: Path) -> Source:
    """An LSUN-style lmdb database: values are encoded images, no labels."""
    try:
        import lmdb
    except ImportError as e:
        raise DataError("reading lmdb data needs the lmdb package — pip install 'dcgan[lmdb]'") from e
    env = lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor()]
    if not keys:
        raise DataError(f"the lmdb database {root} is empty — check the path given to --data")
    digest = hashlib.sha256(DECODER_VERSION.encode())
    for name in ("data.mdb", "lock.mdb"):
        if (root / name).exists():
            st = (root / name).stat()
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    def read(i: int) -> tuple[bytes, int]:
        with env.begin() as txn:
            return bytes(txn.get(keys[i])), -1

    return Source("lmdb", root, len(keys), read, lambda i: f"{root}:{keys[i].decode(errors='replace')}",
                  [], digest.hexdigest())


def shapes_source(seed: int, length: int) -> Source:
    """The built-in shapes, rendered once into the cache: a data-loader worker then copies an
    image instead of rendering it (0.4 ms), and training gets that CPU back. The cache holds
    exactly what `shapes.render` draws, so a run trains on the same bytes either way."""
    return Source("shapes", Path(f"shapes-seed{seed}-n{length}"), length,
                  lambda i: shapes.render(seed, i), lambda i: f"shapes image {i} of seed {seed}",
                  list(shapes.CLASSES), f"shapes:{seed}:{length}:render{shapes.RENDER_VERSION}",
                  decoded=True)


def to_grey(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> (H, W, 1): ITU-R 601 luma, as Pillow's "L" conversion."""
    return np.round(image @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None].astype(np.uint8)


def prepare_image(data: bytes, nc: int, size: int = 64) -> np.ndarray:
    """Decode, resize the shorter side to `size` and centre-crop: uint8 (size, size, nc).
    Images with transparency are composited over white first."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            # transparent pixels (icons, cut-outs) over white, not whatever colour they hide
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        if im.mode.startswith("I"):  # 16-bit grey: convert("L") would clip 32768 to 255 (white)
            wide = np.asarray(im, dtype=np.float64)
            im = Image.fromarray(np.clip(np.round(wide / 257), 0, 255).astype(np.uint8), "L")
        im = im.convert("RGB" if nc == 3 else "L")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return arr.reshape(size, size, nc)


def build_cache(source: Source, cache_dir: Path, nc: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Return (images memmap (N, 64, 64, nc), labels (N,), meta), building the cache if stale."""
    where = source.path if source.kind == "shapes" else source.path.resolve()  # shapes: no file
    key = hashlib.sha256(f"{source.kind}:{where}:{nc}".encode()).hexdigest()[:20]
    images_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    fingerprint = f"{CACHE_FORMAT}:{source.fingerprint}"
    if meta_path.exists() and images_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint:
            log.info("reading cached images from %s", images_path)
            images = np.load(images_path, mmap_mode="r")[: meta["count"]]  # skipped rows at the end
            return images, np.asarray(meta["labels"], np.int64), meta
        log.info("%s changed since it was cached; rebuilding the cache", source.path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = images_path.with_name(f".{images_path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(source.count, 64, 64, nc))
    labels, skipped = [], []
    try:
        for i in tqdm(range(source.count), desc=f"caching {source.path.name}", unit="img"):
            data, label = source.read(i)
            if source.decoded:
                out[len(labels)] = data if nc == 3 else to_grey(data)
                labels.append(label)
                continue
            try:
                out[len(labels)] = prepare_image(data, nc)
            except Exception:  # any decoder failure: the file is unreadable, skip and count it
                skipped.append(source.describe(i))
                continue
            labels.append(label)
        out.flush()
        del out
        if skipped:
            log.warning("skipped %d unreadable image(s), first: %s", len(skipped), ", ".join(skipped[:5]))
        if not labels:
            raise DataError(f"none of the {source.count} images in {source.path} could be read")
        os.replace(tmp, images_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    meta = {"fingerprint": fingerprint, "source": str(source.path), "kind": source.kind,
            "count": len(labels), "skipped": len(skipped), "classes": source.classes,
            "labels": labels}
    atomic_write_text(meta_path, json.dumps(meta))  # written last: marks the cache complete
    images = np.load(images_path, mmap_mode="r")[: len(labels)]
    return images, np.asarray(labels, np.int64), meta


class ImageDataset(Dataset):
    """Items are (uint8 (64, 64, nc) image, int label); label is -1 where the source has none."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str],
                 fingerprint: str):
        self.images, self.labels, self.classes = images, labels, classes
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.array(self.images[i]), int(self.labels[i])


def open_dataset(spec: str, nc: int = 3, cache_dir: Path | None = None,
                 shapes_seed: int = 0) -> ImageDataset:
    """`shapes`, `shapes:N`, an image folder, or an lmdb directory (or `lmdb:PATH`)."""
    if spec == "shapes" or spec.startswith("shapes:"):
        try:
            length = int(spec.split(":", 1)[1]) if ":" in spec else DEFAULT_SHAPES_LENGTH
        except ValueError:
            raise DataError(f"bad --data {spec!r} — use shapes or shapes:N with N a whole number") from None
        if length < 1:
            raise DataError(f"--data {spec} asks for {length} images — N must be at least 1")
        images, labels, meta = build_cache(shapes_source(shapes_seed, length),
                                           cache_dir or default_cache_dir(), nc)
        # the run's data identity is the spec, not the cache format: resuming stays possible
        return ImageDataset(images, labels, meta["classes"], f"shapes:{shapes_seed}:{length}")
    path = Path(spec[len("lmdb:"):] if spec.startswith("lmdb:") else spec).expanduser()
    if not path.exists():
        raise DataError(f"--data {path} does not exist — give an image folder, an lmdb "
                        "directory, or shapes")
    is_lmdb = spec.startswith("lmdb:") or (path / "data.mdb").exists()
    source = lmdb_source(path) if is_lmdb else folder_source(path)
    images, labels, meta = build_cache(source, cache_dir or default_cache_dir(), nc)
    return ImageDataset(images, labels, meta["classes"], meta["fingerprint"])


def to_unit_range(images):
    """uint8 images -> float32 in [-1, 1] (the inverse of runtime.images.to_uint8), same layout;
    numpy arrays and torch tensors alike."""
    return images.astype(np.float32) / np.float32(127.5) - 1 if isinstance(images, np.ndarray) \
        else images.float() / 127.5 - 1


def collate_uint8(batch: list[tuple[np.ndarray, int]]):
    """Stack items into (B, 64, 64, C) uint8 and (B,) labels; scaling happens on the device."""
    import torch

    images = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = torch.as_tensor([b[1] for b in batch], dtype=torch.int64)
    return images, labels
