"""dcgan-generate: reproducible batched 64x64 images from an exported artifact (no torch)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from tqdm import tqdm

from runtime.backend import physical_cores
from runtime.backends import BACKENDS, MODEL_PRECISIONS
from runtime.cli_support import Debug, check_choice, default_input, new_app, run_app
from runtime.errors import DcganError
from runtime.files import atomic_write_text
from runtime.generator import Generator
from runtime.images import make_grid, save_image
from runtime.latents import MAX_INDEX, MAX_SEED
from runtime.outdir import claimed, contents, refuse_to_replace
from runtime.writer import FORMATS, ImageWriter, file_name, index_width

log = logging.getLogger("dcgan-generate")
app = new_app(__doc__)
DEFAULT_ARTIFACT = Path("artifacts/dcgan")
GRID_IMAGES = 64


def parse_shard(shard: str) -> tuple[int, int]:
    """'i/k' -> (i, k) with 0 <= i < k."""
    try:
        i, k = (int(part) for part in shard.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--shard must look like i/k (e.g. 0/4), got {shard!r}") from None
    if not (k >= 1 and 0 <= i < k):
        raise typer.BadParameter(f"--shard {shard}: need 0 <= i < k")
    return i, k


def shard_range(start: int, n: int, i: int, k: int) -> tuple[int, int]:
    """Shard i of k of the index range [start, start+n): contiguous, sizes differ by at most 1."""
    base, extra = divmod(n, k)
    first = start + i * base + min(i, extra)
    return first, base + (1 if i < extra else 0)


@app.command()
def main_command(
    artifact: Annotated[Path | None, typer.Argument(
        help=f"Artifact directory (or manifest.json / .onnx) [default: {DEFAULT_ARTIFACT}].",
        show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", "--count", min=0, help="Number of images (before "
                                   "sharding).")] = 64,
    out: Annotated[Path, typer.Option(help="Output directory.")] = ...,
    seed: Annotated[int, typer.Option(min=0, help="Seed: image i of seed s is always the same.")] = 0,
    start: Annotated[int, typer.Option(min=0, help="Global index of the first image.")] = 0,
    shard: Annotated[str | None, typer.Option(help="i/k: write only part i (0-based) of k of the "
                                              "index range, for splitting across machines.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = 64,
    backend: Annotated[str, typer.Option(help=f"auto, {', '.join(BACKENDS)}.")] = "auto",
    device: Annotated[int, typer.Option(min=0, help="CUDA device for GPU backends.")] = 0,
    precision: Annotated[str | None, typer.Option(
        help="fp32, fp16 or int8 model file [default: fp32]. int8 runs on ort-cpu, about 2x "
             "faster on CPUs with AVX-512 VNNI, pixels ~1.6 uint8 levels from fp32 on average.",
        show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="png, jpg or npy (uint8 HWC).")] = "png",
    grid: Annotated[Path | None, typer.Option(help=f"Also write a contact sheet of the first "
                                              f"{GRID_IMAGES} images to this PNG.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Image-encoding threads.")] = max(2, physical_cores()),
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty --out, replacing files "
                                                 "of the same names.")] = False,
    debug: Debug = False,
) -> None:
    """Generate images: OUT/000000.png ... and OUT/manifest.json (how to regenerate any of them).

    With no ARTIFACT, reads artifacts/dcgan/ (what dcgan-export writes by default).
    """
    check_choice(format, FORMATS, "--format")
    check_choice(backend, ("auto", *BACKENDS), "--backend")
    if precision is not None:
        check_choice(precision, MODEL_PRECISIONS, "--precision")
    if seed > MAX_SEED:
        raise typer.BadParameter(f"--seed must be below 2**128, got {seed}")
    if start + n > MAX_INDEX + 1:
        raise typer.BadParameter(f"--start + -n must stay within 2**128 image indices, got {start + n}")
    first, count = shard_range(start, n, *parse_shard(shard)) if shard else (start, n)
    artifact = default_input(artifact, DEFAULT_ARTIFACT, "artifact", "dcgan-export", "artifacts/dcgan/")
    if out.exists() and not out.is_dir():
        raise DcganError(f"--out {out} is a file — give a directory")
    refuse_to_replace(out, [artifact])
    if grid is not None and grid.exists() and not overwrite:
        raise DcganError(f"{grid} exists — pass --overwrite to replace it")
    if contents(out) and not overwrite:  # checked again under the lock; this saves a model load
        raise DcganError(f"{out} is not empty — pass --overwrite to write into it, or pick another --out")

    with Generator.load(artifact, backend=backend, device=device, precision=precision) as gen:
        if gen.max_batch is not None and batch_size > gen.max_batch:
            raise typer.BadParameter(f"--batch-size {batch_size} is above the engine's max batch "
                                     f"{gen.max_batch}")
        out.mkdir(parents=True, exist_ok=True)
        with claimed(out, "dcgan-generate"):
            _check_out(out, overwrite)
            record, seconds = _generate(gen, artifact, out, seed, first, count, shard, batch_size,
                                        format, workers, grid)
    rate = count / seconds if seconds > 0 else float("inf")
    typer.echo(f"{count} images in {seconds:.2f} s ({rate:.1f} images/s), backend "
               f"{record['backend']} -> {out}{os.sep}")


def _check_out(out: Path, overwrite: bool) -> None:
    """An --out that holds files is written into only with --overwrite, and never when it holds
    something other than dcgan-generate output (an artifact, a training run, ...)."""
    held = contents(out)
    if not held:
        return
    if not overwrite:
        raise DcganError(f"{out} is not empty — pass --overwrite to write into it, or pick another --out")
    manifest = out / "manifest.json"
    ours = manifest.exists() and '"regenerate"' in manifest.read_text(errors="replace")
    foreign = [p.name for p in held if p.is_dir()] + (["manifest.json"] if manifest.exists() and not ours
                                                       else [])
    if foreign:
        raise DcganError(f"{out} holds something other than dcgan-generate output "
                         f"({', '.join(foreign[:3])}) — --overwrite only replaces an earlier "
                         "dcgan-generate run; pick another --out")


def _generate(gen: Generator, artifact: Path, out: Path, seed: int, first: int, count: int,
              shard: str | None, batch_size: int, format: str, workers: int,
              grid: Path | None) -> tuple[dict, float]:
    """Write the images and the run's manifest.json; returns (the manifest, seconds)."""
    width = index_width(first + max(count, 1) - 1)
    grid_images = []
    t0 = time.perf_counter()
    with ImageWriter(out, format, width, workers=workers, max_pending=2 * workers) as writer, \
            tqdm(total=count, unit="img", desc="generating", disable=count == 0) as bar:
        for index, images in gen.iter_batches(count, seed, batch_size, first):
            writer.submit(index, images)
            if len(grid_images) < GRID_IMAGES:
                grid_images.extend(images[:GRID_IMAGES - len(grid_images)])
            bar.update(len(images))
    seconds = time.perf_counter() - t0
    model_file = gen.backend.entry
    record = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "artifact": str(artifact), "model_file": model_file.name,
        "model_sha256": model_file.sha256, "precision": model_file.precision,
        "backend": gen.backend_name, "seed": seed,
        "first_index": first, "count": count, "shard": shard, "latent": gen.manifest.latent,
        "nz": gen.nz, "format": format, "file_pattern": file_name(first, width, format),
        "batch_size": batch_size,
        "regenerate": f"dcgan-generate {artifact} --seed {seed} --start INDEX -n 1 "
                      f"--backend {gen.backend_name} --precision {model_file.precision} --out DIR",
    }
    atomic_write_text(out / "manifest.json", json.dumps(record, indent=2) + "\n")
    if grid is not None and grid_images:
        save_image(grid, make_grid(np.stack(grid_images)))
    return record, seconds


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-generate"))


if __name__ == "__main__":
    main()
