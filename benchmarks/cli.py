"""dcgan-bench: images/s, latency and error against the PyTorch reference, per backend and batch."""

from __future__ import annotations

import datetime
import logging
import tempfile
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from benchmarks import machine
from benchmarks.flops import generator_flops, matmul_gflops
from benchmarks.harness import bench_runner
from benchmarks.report import text_table, write_outputs
from benchmarks.runners import folded_runner, reference_runner, runtime_runner
from export.load import load_for_export
from runtime import BackendUnavailable
from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError
from runtime.manifest import read_manifest
from train.recalibrate import recalibrate_bn

log = logging.getLogger("dcgan-bench")
app = new_app(__doc__)
DEFAULT_BATCHES = "1,16,64,256,1024"


def _parse_batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter(f"--batches takes comma-separated integers, got {text!r}") from None
    if not batches or min(batches) < 1:
        raise typer.BadParameter(f"--batches needs positive sizes, got {text!r}")
    return batches


def reference_generator(checkpoint: Path, manifest: dict):
    """G as the artifact was exported from it: the same BN recalibration, eval mode, fp32."""
    # the weights the artifact was exported from: the EMA where it was, the last iterate if not
    loaded = load_for_export(checkpoint, ema=manifest["source"].get("weights") != "generator")
    if loaded.sha256 != manifest["source"]["sha256"]:
        raise DcganError(f"{checkpoint} is not the checkpoint this artifact was exported from "
                         f"(sha256 differs) — pass --checkpoint {manifest['source']['checkpoint']}")
    rec = manifest.get("bn_recalibration", {}).get("recalibrated")
    if rec:
        recalibrate_bn(loaded.generator, rec["batches"], rec["batch_size"], seed=0)
    return loaded.generator.eval(), loaded.config


def end_to_end(artifact: Path, images: int, batch: int, fmt: str = "png") -> dict:
    """Time dcgan-generate itself writing `images` images in format `fmt` (ort-cpu)."""
    from runtime.cli import app as generate_app

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        code = run_app(generate_app, [str(artifact), "-n", str(images), "--out", tmp,
                                      "--backend", "ort-cpu", "--batch-size", str(batch),
                                      "--format", fmt], prog="dcgan-generate")
        seconds = time.perf_counter() - t0
    if code != 0:
        raise DcganError("dcgan-generate failed inside the benchmark (see above)")
    return {"images": images, "batch": batch, "backend": "ort-cpu", "format": fmt,
            "seconds": seconds, "images_per_s": images / seconds}


@app.command()
def bench_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from dcgan-export.")] = Path(
        "artifacts/dcgan"),
    checkpoint: Annotated[Path, typer.Option(help="The checkpoint the artifact was exported from "
                                                  "(the reference).")] = Path(
        "runs/dcgan/checkpoints/last.pt"),
    batches: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = DEFAULT_BATCHES,
    backends: Annotated[str, typer.Option(help="Comma-separated subset of torch-eager, "
                                               "torch-folded, ort-cpu, ort-cpu-int8, ort-cuda, trt, "
                                               "trt-fp16.")] = (
        "torch-eager,torch-folded,ort-cpu,ort-cpu-int8,ort-cuda,trt,trt-fp16"),
    min_seconds: Annotated[float, typer.Option(min=0.0, help="Minimum timed seconds per row.")] = 1.0,
    min_reps: Annotated[int, typer.Option(min=1, help="Minimum timed calls per row.")] = 5,
    warmup_iters: Annotated[int, typer.Option(min=0, help="Untimed calls before timing.")] = 2,
    e2e_images: Annotated[int, typer.Option(min=0, help="Images for the end-to-end "
                                                        "dcgan-generate row (0: skip).")] = 1000,
    out: Annotated[Path, typer.Option(help="Where bench.json, bench.md and bench.png go.")] = Path(
        "bench"),
    debug: Debug = False,
) -> None:
    """Benchmark every available backend against the PyTorch reference (eval mode, fp32, BN
    unfolded). Exits 1 if any backend's error is beyond its tolerance."""
    batch_sizes = _parse_batches(batches)
    wanted = [b.strip() for b in backends.split(",") if b.strip()]
    manifest = read_manifest(artifact)
    g, cfg = reference_generator(checkpoint, manifest.data)
    reference = reference_runner(g)
    makers = _runner_makers(artifact, g, reference)
    unknown = [b for b in wanted if b not in makers]
    if unknown:
        raise typer.BadParameter(f"unknown backend(s) {unknown}; choose from {', '.join(makers)}")
    flops = generator_flops(cfg)
    gflops = matmul_gflops()
    bound = gflops / (flops / 1e9)
    log.info("fp32 matmul %.1f GFLOP/s; %.4f GFLOP/image; bound %.0f images/s", gflops, flops / 1e9, bound)

    rows, skipped = [], []
    for name in wanted:
        try:
            runner = makers[name]()
        except BackendUnavailable as e:
            skipped.append({"backend": name, "reason": str(e).split(" — ")[0]})
            log.info("%s: not measured (%s)", name, skipped[-1]["reason"])
            continue
        log.info("benchmarking %s ...", name)
        try:
            rows += bench_runner(runner, reference, batch_sizes, cfg.nz, cfg.latent,
                                 warmup_iters, min_reps, min_seconds)
        finally:
            runner.close()
    _compare(rows, bound, reference.name)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine.describe(),
        "torch_threads": torch.get_num_threads(),
        "model": {"nz": cfg.nz, "ngf": cfg.ngf, "nc": cfg.nc},
        "gflop_per_image": flops / 1e9, "matmul_gflops": gflops, "bound_images_per_s": bound,
        "rows": [r.to_dict() for r in rows], "skipped": skipped,
        "timing": {"warmup_iters": warmup_iters, "min_reps": min_reps, "min_seconds": min_seconds},
    }
    typer.echo(text_table(result["rows"]))
    if e2e_images:
        formats = _end_to_end_rows(artifact, e2e_images, rows)
        result["end_to_end"], result["end_to_end_formats"] = formats[0], formats
        for e in formats:
            typer.echo(f"end to end: dcgan-generate -n {e['images']} --format {e['format']}: "
                       f"{e['images_per_s']:.1f} images/s")
    write_outputs(result, out)
    typer.echo(f"results: {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
    failed = [f"{r.backend}@{r.batch}" for r in rows if not r.passed]
    if failed:
        raise DcganError(f"beyond tolerance against the PyTorch reference: {', '.join(failed)} — "
                         "do not deploy these backends; see bench.json for the errors")


def _runner_makers(artifact: Path, g, reference) -> dict:
    """Backend name -> a function that opens its runner (BackendUnavailable where it cannot)."""
    return {
        "torch-eager": lambda: reference,
        "torch-folded": lambda: folded_runner(g),
        "ort-cpu": lambda: runtime_runner(artifact, "ort-cpu", "fp32"),
        "ort-cpu-int8": lambda: runtime_runner(artifact, "ort-cpu", "int8"),
        "ort-cuda": lambda: runtime_runner(artifact, "ort-cuda", "fp32"),
        "trt": lambda: runtime_runner(artifact, "trt", "fp32"),
        "trt-fp16": lambda: runtime_runner(artifact, "trt", "fp16"),
    }


def _compare(rows: list, bound: float, reference: str) -> None:
    """Each row's share of the CPU's fp32 matmul bound (CPU backends only) and its speed-up over
    the reference at the same batch."""
    eager = {r.batch: r.images_per_s for r in rows if r.backend == reference}
    for row in rows:
        on_cpu = row.backend.startswith(("torch", "ort-cpu"))
        row.fraction_of_bound = row.images_per_s / bound if on_cpu else None
        row.vs_reference = row.images_per_s / eager[row.batch] if row.batch in eager else None


def _end_to_end_rows(artifact: Path, images: int, rows: list) -> list[dict]:
    """dcgan-generate itself, per output format, beside the inference rate of ort-cpu at batch 64."""
    inference = [r.images_per_s for r in rows if r.backend == "ort-cpu" and r.batch == 64]
    formats = []
    for fmt in ("png", "tar", "npy"):
        e2e = end_to_end(artifact, images, 64, fmt)
        e2e["inference_images_per_s"] = inference[0] if inference else None
        formats.append(e2e)
    return formats


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-bench"))


if __name__ == "__main__":
    main()
