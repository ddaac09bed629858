"""Image helpers shared by every stage: float→uint8, grids, PNG/JPEG encoding (numpy, ISA-L, Pillow)."""

from __future__ import annotations

import io
import os

import numpy as np

from runtime.files import atomic_write_bytes
from runtime.png import encode_png


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Map generator output in [-1, 1] to uint8: round(clip((x + 1) * 127.5, 0, 255)).

    Args:
        x: float array, any shape. Rounding is half-to-even, as ONNX `Round` and `torch.round` do.
    """
    y = (x.astype(np.float32) + np.float32(1.0)) * np.float32(127.5)
    return np.round(np.clip(y, 0.0, 255.0)).astype(np.uint8)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N, H, W, C), contiguous."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def images_from_float(x: np.ndarray) -> np.ndarray:
    """Generator output, float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C) images."""
    return to_uint8(nchw_to_nhwc(x))


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2,
              pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one (rows*(H+p)+p, cols*(W+p)+p, C) contact sheet.

    Args:
        images: uint8 array (N, H, W, C) with C in {1, 3}.
        ncols: images per row; default ceil(sqrt(N)).
        padding: pixels between and around images.
        pad_value: uint8 value of the padding.
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or max(1, int(np.ceil(np.sqrt(n))))
    nrows = max(1, -(-n // ncols))
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for k in range(n):
        r, col = divmod(k, ncols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = images[k]
    return grid


def encode_image(image: np.ndarray, fmt: str = "png") -> bytes:
    """Encode one uint8 (H, W, C) image as PNG (runtime/png.py) or JPEG (Pillow, quality 95) bytes."""
    if fmt == "png":
        return encode_png(image)
    if fmt not in ("jpg", "jpeg"):
        raise ValueError(f"unknown image format {fmt!r}; expected png or jpg")
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def save_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = True) -> None:
    """Encode `image` by the file's suffix (.png, .jpg) and write it atomically."""
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    atomic_write_bytes(path, encode_image(image, fmt), overwrite=overwrite)
