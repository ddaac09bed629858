"""Writing an analysis's outputs: PNG figures and one JSON of its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.files import atomic_write_text
from runtime.images import make_grid, save_image


def save_rows(path: Path, rows: list[np.ndarray]) -> None:
    """A grid whose rows are the given uint8 (k, H, W, C) image sequences (equal lengths)."""
    ncols = len(rows[0])
    save_image(path, make_grid(np.concatenate(rows), ncols=ncols))


def save_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
