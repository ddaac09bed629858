"""Reading the uint8 memmap cache vs decoding a folder of JPEGs every epoch.

    python -m benchmarks.data_cache [--images 2000] [--size 178x218]

Makes a folder of JPEGs (shapes rendered and upscaled to CelebA's 178x218), then times one
pass of decode + resize + centre-crop over the files (what every epoch would cost without a
cache) against one pass over the cache through the training Dataset, in one run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from runtime.cli_support import new_app, run_app
from train import shapes
from train.data import folder_source, open_dataset, prepare_image


def make_jpegs(root: Path, count: int, size: tuple[int, int]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, _ = shapes.render(0, i)
        Image.fromarray(image).resize(size, Image.Resampling.BILINEAR).save(root / f"{i:06d}.jpg", quality=90)


app = new_app(__doc__)


@app.command()
def main_command(
    images: Annotated[int, typer.Option(min=1, help="JPEGs to make and read.")] = 2000,
    size: Annotated[str, typer.Option(help="JPEG width x height.")] = "178x218",
) -> None:
    """Time decoding JPEG folders against reading the memmap cache."""
    size = tuple(int(v) for v in size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "jpegs", Path(tmp) / "cache"
        make_jpegs(root, images, size)
        source = folder_source(root)
        t0 = time.perf_counter()
        for i in range(source.count):
            prepare_image(source.read(i)[0], nc=3)
        decode = source.count / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        dataset = open_dataset(str(root), cache_dir=cache)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch = np.stack([dataset[i][0] for i in range(len(dataset))])
        cached = len(dataset) / (time.perf_counter() - t0)
    assert batch.shape == (images, 64, 64, 3)
    print(f"{images} JPEGs of {size[0]}x{size[1]}: decode+resize {decode:.0f} images/s; "
          f"cache build {build:.1f} s once; reading the cache {cached:.0f} images/s "
          f"({cached / decode:.0f}x)")


def main() -> None:
    raise SystemExit(run_app(app, prog="data_cache"))


if __name__ == "__main__":
    main()
