"""Generated images as a Ray Data source: `images_dataset()` returns a `ray.data.Dataset` of
{"index", "image"} rows, for training or evaluation straight from the generator, or for Ray
Data's own writers (`write_images`, `write_webdataset`), with no round trip through files.

Rows come from an actor pool of `Generator`s (`map_batches` with `ray.data.ActorPoolStrategy`):
each actor loads the artifact once and turns ranges of indices into images, so the model is
not loaded per batch. Each row's image is the runtime's image for that index, byte for byte
(the latent of image i depends only on the seed and i, never on the batch).

    import ray
    from runtime.ray_data import images_dataset

    ds = images_dataset("artifacts/dcgan", 100_000, seed=0, actors=4)
    for batch in ds.iter_batches(batch_size=256):   # {"index": (B,), "image": (B, 64, 64, 3)}
        ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.generator import MAX_IMAGES
from runtime.latents import MAX_SEED
from runtime.optional import import_ray_data

MAX_DATASET_INDEX = 2**63 - 1  # the index column is int64
BLOCK_IMAGES = 16384  # images per input block at most: the unit of work an actor takes at once


class GeneratorActor:
    """One actor of the pool: a `Generator`, loaded once, that turns each row [first, count] of
    its batch into `count` rows {"index", "image"}, images first .. first+count-1."""

    def __init__(self, artifact: str, seed: int, backend: str, precision: str | None):
        from runtime.generator import Generator

        self.seed = seed
        self.gen = Generator.load(artifact, backend=backend, precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ranges = batch["data"]  # (rows, 2) int64: first index, count
        index = np.concatenate([np.arange(a, a + c, dtype=np.int64) for a, c in ranges])
        images = np.concatenate([self.gen.generate(int(c), self.seed, start=int(a)) for a, c in ranges])
        return {"index": index, "image": images}


def images_dataset(artifact: str | Path, n: int, *, seed: int = 0, start: int = 0, actors: int = 2,
                   batch_size: int = 64, backend: str = "auto", precision: str | None = None,
                   num_cpus: float = 1, num_gpus: float = 0):
    """A `ray.data.Dataset` of images start .. start+n-1 under `seed`, one row per image.

    Args:
        artifact: the artifact directory, at a path every node that runs an actor sees.
        n: number of images (rows).
        seed: 0 <= seed < 2**128; row `index` holds the image `Generator.generate` gives there.
        start: index of the first image; start + n must stay within int64.
        actors: Generators in the pool (each holds `num_cpus`/`num_gpus`).
        batch_size: images per map_batches call: one `Generator.generate` call of an actor
            (inference in batches of 64, or the engine's max batch).
        backend, precision: as `Generator.load` (on a GPU actor, device 0 is the GPU Ray gave it).
        num_cpus, num_gpus: Ray resources each actor holds.

    Returns:
        A lazy Dataset with columns "index" (int64) and "image" (uint8, H x W x C). Ray Data does
        not keep row order unless asked (`DataContext.get_current().execution_options.
        preserve_order = True`): the index says which image a row is.

    Raises:
        BackendUnavailable: ray[data] is not installed (pip install 'dcgan[ray]').
        ValueError: n, start or seed out of range.

    Example:
        >>> ds = images_dataset("artifacts/dcgan", 1000, seed=0)
        >>> ds.write_images("out/", column="image", file_format="png")
    """
    data = import_ray_data()
    for name, value in (("n", n), ("start", start), ("seed", seed)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if seed > MAX_SEED:
        raise ValueError(f"seed must be below 2**128, got {seed}")
    if start + n - 1 > MAX_DATASET_INDEX:
        raise ValueError(f"images {start}..{start + n - 1} go past the int64 index column — use "
                         "dcgan-generate for indices from 2**63")
    if actors < 1 or not 1 <= batch_size <= MAX_IMAGES:
        raise ValueError(f"actors must be >= 1 and batch_size in 1..{MAX_IMAGES}, got {actors} and "
                         f"{batch_size}")
    # The source is the list of [first, count] ranges, put in the object store by this process:
    # reading it takes no task, so every CPU can go to the actors (a read task that waits for
    # a CPU the pool holds would wait for ever).
    firsts = np.arange(start, start + n, batch_size, dtype=np.int64)
    ranges = np.stack([firsts, np.minimum(batch_size, start + n - firsts)], axis=1)
    blocks = max(1, min(len(ranges), max(4 * actors, -(-n // BLOCK_IMAGES))))
    return data.from_numpy(np.array_split(ranges, blocks)).map_batches(
        GeneratorActor,
        fn_constructor_kwargs={"artifact": str(Path(artifact).resolve()), "seed": int(seed),
                               "backend": backend, "precision": precision},
        batch_size=1, batch_format="numpy", compute=data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus, num_gpus=num_gpus)
