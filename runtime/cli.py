"""dcgan-generate: reproducible batched 64x64 images from an exported artifact (no torch)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from runtime.backends import BACKENDS
from runtime.cli_support import Debug, check_choice, default_input, new_app, run_app
from runtime.cores import physical_cores
from runtime.errors import DcganError
from runtime.generator import Generator
from runtime.images import make_grid, save_image
from runtime.latents import MAX_INDEX, MAX_SEED
from runtime.manifest import FILE_PRECISIONS
from runtime.outdir import claimed, contents, refuse_to_replace
from runtime.run_record import DATASET_KEYS, RANGE_KEYS, RECORD_NAME, Checksums, RecordError, RunRecord
from runtime.writer import (
    FORMATS,
    FileWriter,
    NpyWriter,
    TarWriter,
    index_width,
    remove_temporaries,
    sync_directory,
)

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


def shard_range(start: int, n: int, i: int, k: int, unit: int = 1) -> tuple[int, int]:
    """Shard i of k of the index range [start, start+n): contiguous, cut only at multiples of
    `unit` images from start (a tar shard's size: the parts then merge into the very shards one
    run writes), sizes differing by at most one unit."""
    base, extra = divmod(-(-n // unit), k)
    a, b = i * base + min(i, extra), (i + 1) * base + min(i + 1, extra)
    return start + min(n, a * unit), min(n, b * unit) - min(n, a * unit)


@app.command()
def generate_command(
    artifact: Annotated[Path | None, typer.Argument(
        help=f"Artifact directory (or manifest.json / .onnx) [default: {DEFAULT_ARTIFACT}].",
        show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", "--count", min=0, help="Number of images (before "
                                   "sharding).")] = 64,
    out: Annotated[Path, typer.Option(help="Output directory.")] = ...,
    seed: Annotated[int, typer.Option(min=0, help="Seed: image i of seed s is always the same.")] = 0,
    start: Annotated[int, typer.Option(min=0, help="Global index of the first image.")] = 0,
    shard: Annotated[str | None, typer.Option(help="i/k: write only part i (0-based) of k of the "
                                              "index range, for splitting across machines (tar: "
                                              "cut at whole tar shards).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = 64,
    backend: Annotated[str, typer.Option(help=f"auto, {', '.join(BACKENDS)}.")] = "auto",
    device: Annotated[int, typer.Option(min=0, help="CUDA device for GPU backends.")] = 0,
    precision: Annotated[str | None, typer.Option(
        help="fp32, fp16 or int8 model file [default: fp32]. int8 runs on ort-cpu, about 2x "
             "faster on CPUs with AVX-512 VNNI, pixels ~1.6 uint8 levels from fp32 on average.",
        show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="png or jpg (one file per image), tar "
                                        "(WebDataset shards of PNGs), npy (one uint8 (N, H, W, C) "
                                        "array).")] = "png",
    shard_size: Annotated[int, typer.Option(min=1, help="Images per tar shard (--format tar).")
                          ] = 10000,
    grid: Annotated[Path | None, typer.Option(help=f"Also write a contact sheet of the first "
                                              f"{GRID_IMAGES} images to this PNG.")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="Image-encoding threads [default: 1 beside ort-cpu, whose inference keeps "
                    "every core busy; one per physical core beside a GPU backend].",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty --out, replacing files "
                                                 "of the same names.")] = False,
    resume: Annotated[bool, typer.Option(help="Finish an interrupted run in --out: same "
                                              "artifact, seed and range; writes only what is "
                                              "missing.")] = False,
    debug: Debug = False,
) -> None:
    """Generate images: OUT/000000.png ... (or tar shards, or one .npy) and OUT/manifest.json
    (how to regenerate any of them; "status": "complete" once everything is written and synced).

    With no ARTIFACT, reads artifacts/dcgan/ (what dcgan-export writes by default). An
    interrupted run leaves only whole files; --resume finishes it, byte-identical to a run that
    was never interrupted.
    """
    check_choice(format, FORMATS, "--format")
    check_choice(backend, ("auto", *BACKENDS), "--backend")
    if precision is not None:
        check_choice(precision, FILE_PRECISIONS, "--precision")
    if seed > MAX_SEED:
        raise typer.BadParameter(f"--seed must be below 2**128, got {seed}")
    if start + n > MAX_INDEX + 1:
        raise typer.BadParameter(f"--start + -n must stay within 2**128 image indices, got {start + n}")
    unit = shard_size if format == "tar" else 1
    first, count = shard_range(start, n, *parse_shard(shard), unit) if shard else (start, n)
    artifact = default_input(artifact, DEFAULT_ARTIFACT, "artifact", "dcgan-export", "artifacts/dcgan/")
    if out.exists() and not out.is_dir():
        raise DcganError(f"--out {out} is a file — give a directory")
    refuse_to_replace(out, [artifact])
    if grid is not None:
        if out.resolve() in grid.resolve().parents:
            raise DcganError(f"--grid {grid} is inside --out, which holds only the run's own files "
                             "— write the grid elsewhere")
        if grid.exists() and not overwrite:
            raise DcganError(f"{grid} exists — pass --overwrite to replace it")
    if contents(out) and not (overwrite or resume):  # checked again under the lock
        raise DcganError(f"{out} is not empty — pass --overwrite to write into it, --resume to "
                         "finish an interrupted run, or pick another --out")
    if resume and not (out / RECORD_NAME).exists():
        raise DcganError(f"--resume: {out} holds no dcgan-generate run — drop --resume")

    with Generator.load(artifact, backend=backend, device=device, precision=precision) as gen:
        if gen.max_batch is not None and batch_size > gen.max_batch:
            raise typer.BadParameter(f"--batch-size {batch_size} is above the engine's max batch "
                                     f"{gen.max_batch}")
        out.mkdir(parents=True, exist_ok=True)
        model_file = gen.model_file
        run = RunRecord(
            artifact=str(artifact), model_file=model_file.name, model_sha256=model_file.sha256,
            precision=model_file.precision, backend=gen.backend_name, seed=seed, first_index=first,
            count=count, shard=shard, latent=gen.manifest.latent, nz=gen.nz, format=format,
            # one zero-padding width for every part of the whole range, so parts merge by name
            index_width=index_width(start + max(n, 1) - 1), batch_size=batch_size,
            shard_size=shard_size if format == "tar" else None)
        with claimed(out, "dcgan-generate"):
            checksums = Checksums(out)
            if resume:
                _check_resumable(out, run)
                checksums.load()
                _drop_unverified(out, run, checksums)
            else:
                _clear_earlier_run(out, overwrite)
            remove_temporaries(out)
            run.write(out)
            t0 = time.perf_counter()
            run.writer, written = _generate(gen, out, run, checksums,
                                            workers or encoder_threads(gen.backend_name))
            seconds = time.perf_counter() - t0
            checksums.finish(run.names())
            sync_directory(out)  # everything durable before the record says so
            run.status = "complete"
            run.write(out)
        if grid is not None and count:
            save_image(grid, make_grid(gen.generate(min(GRID_IMAGES, count), seed=seed, start=first)))
    rate = written / seconds if seconds > 0 else float("inf")
    typer.echo(f"{written} images in {seconds:.2f} s ({rate:.1f} images/s), backend "
               f"{run.backend} -> {out}{os.sep}" + (f" ({count - written} were already there)"
                                                     if resume else ""))


def encoder_threads(backend: str) -> int:
    """Encoding threads that fit beside `backend`: ort-cpu already runs one slice of every batch
    per physical core, so a second encoder would only take turns with inference (and the GIL);
    on a GPU the cores are free. One thread encodes PNGs several times faster than the CPU infers
    (benchmarks/results/generate.md)."""
    return 1 if backend == "ort-cpu" else physical_cores()


def _check_resumable(out: Path, run: RunRecord) -> None:
    held = RunRecord.read(out, "start a new run in another --out")
    if held.parts is not None:
        raise DcganError(f"--resume: {out} holds a merged data set, not a run to finish — pick "
                         "another --out")
    different = held.difference(run, DATASET_KEYS + RANGE_KEYS)
    if different:
        raise DcganError(f"--resume: {out} holds another run ({different}) — resume with the same "
                         "artifact, seed, range and format, or pick another --out")


def _drop_unverified(out: Path, run: RunRecord, checksums: Checksums) -> None:
    """Delete the run's files whose bytes do not match their recorded hash (torn by a crash or a
    power loss, or written but not yet recorded): the writer then writes them again."""
    for name in run.names():
        if (out / name).exists() and not checksums.verified(out, name):
            (out / name).unlink()


def _clear_earlier_run(out: Path, overwrite: bool) -> None:
    """An --out that holds files is written into only with --overwrite, and only when everything
    in it belongs to an earlier dcgan-generate run: its files are deleted (a new run must not take
    them for finished work); anything else there (a user's files, an artifact, a training run)
    is refused, never deleted."""
    held = contents(out)
    if not held:
        return
    if not overwrite:
        raise DcganError(f"{out} is not empty — pass --overwrite to write into it, or pick another --out")
    try:
        earlier = RunRecord.read(out)
    except RecordError:  # not an earlier run of ours: nothing in it may be deleted
        raise DcganError(f"{out} holds files that no dcgan-generate run wrote ("
                         f"{', '.join(sorted(p.name for p in held)[:3])}) — --overwrite only replaces "
                         "an earlier dcgan-generate run; pick another --out") from None
    owned = earlier.owned()
    foreign = sorted(p.name for p in held if p.name not in owned and not _temporary(p))
    if foreign:
        raise DcganError(f"{out} holds files that are not its dcgan-generate run's ("
                         f"{', '.join(foreign[:3])}) — move them, or pick another --out")
    for p in held:
        if p.name in owned and p.is_file():
            p.unlink()


def _temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _generate(gen: Generator, out: Path, run: RunRecord, checksums: Checksums,
              workers: int) -> tuple[dict, int]:
    """Write every image the run still misses; returns (the writer's record fields, count)."""
    size, c = gen.manifest.image_size, gen.manifest.channels
    args = (out, run.format, run.first_index, run.count, run.index_width, checksums)
    kwargs = {"workers": workers, "max_pending": 2 * workers}
    if run.format == "tar":
        writer = TarWriter(*args, shard_size=run.shard_size, seed=run.seed, **kwargs)
    elif run.format == "npy":
        writer = NpyWriter(*args, shape=(size, size, c), **kwargs)
    else:
        writer = FileWriter(*args, **kwargs)
    written = 0
    with writer:
        todo = writer.pending()
        with tqdm(total=sum(n for _, n in todo), unit="img", desc="generating",
                  disable=not todo) as bar:
            for start, n in todo:
                for part_start, part_n in _cut(start, n, run.first_index, run.shard_size):
                    for index, images in gen.iter_batches(part_n, run.seed, run.batch_size,
                                                          part_start):
                        writer.submit(index, images)
                        written += len(images)
                        bar.update(len(images))
        fields = writer.finish()
    return fields, written


def _cut(start: int, n: int, first: int, shard_size: int | None) -> list[tuple[int, int]]:
    """Split [start, start+n) at tar shard boundaries, so no batch spans two shards."""
    if not shard_size:
        return [(start, n)]
    parts, i, end = [], start, start + n
    while i < end:
        boundary = first + ((i - first) // shard_size + 1) * shard_size
        parts.append((i, min(end, boundary) - i))
        i = parts[-1][0] + parts[-1][1]
    return parts


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-generate"))


if __name__ == "__main__":
    main()
