"""dcgan-generate against inference alone, side by side in one run.

    python -m benchmarks.generate_speed ARTIFACT -n 5000 [--rounds 3] [--out benchmarks/results]

Each round runs, as separate processes on the same artifact, seed and backend, for each format:
the in-process `Generator.iter_batches(n)` (inference only, nothing written), then
`dcgan-generate -n N` to PNG files, to tar shards or to one .npy. Every process reports the
seconds of its own generation loop (model loading excluded alike); the ratio of each format's
rate to the inference run just before it is what the table shows (median over rounds), so
machine noise between runs mostly cancels. Writes generate.json and generate.md.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import machine
from benchmarks.report import write_result
from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError

app = new_app(__doc__)
FORMATS = ("png", "tar", "npy")
INFERENCE = """
import sys, time
from runtime import Generator
with Generator.load(sys.argv[1], backend="ort-cpu") as gen:
    gen.generate(64, seed=0)  # warm-up, as dcgan-generate's first batch is not excluded either
    t0 = time.perf_counter()
    for _ in gen.iter_batches(int(sys.argv[2]), seed=0, batch_size=64):
        pass
    print(f"SECONDS {time.perf_counter() - t0:.6f}")
"""


def _inference_seconds(artifact: Path, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", INFERENCE, str(artifact), str(n)],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"SECONDS ([0-9.]+)", out).group(1))


def _generate_seconds(artifact: Path, n: int, fmt: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "runtime.cli", str(artifact), "-n", str(n), "--out", tmp,
             "--format", fmt, "--backend", "ort-cpu", "--batch-size", "64"],
            capture_output=True, text=True)
    if result.returncode != 0:
        raise DcganError(f"dcgan-generate --format {fmt} failed: {result.stderr.strip()[-300:]}")
    return float(re.search(r"images in ([0-9.]+) s", result.stdout).group(1))


def measure(artifact: Path, n: int, rounds: int) -> dict:
    ratios: dict[str, list[float]] = {f: [] for f in FORMATS}
    rates: dict[str, list[float]] = {f: [] for f in ("inference", *FORMATS)}
    for _ in range(rounds):
        for fmt in FORMATS:  # each format right after its own inference run: noise between cancels
            inference = n / _inference_seconds(artifact, n)
            rate = n / _generate_seconds(artifact, n, fmt)
            rates["inference"].append(inference)
            rates[fmt].append(rate)
            ratios[fmt].append(rate / inference)
    return {"images": n, "rounds": rounds, "machine": machine.describe(),
            "images_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "ratio_to_inference": {k: statistics.median(v) for k, v in ratios.items()},
            "all_ratios": ratios}


def markdown(result: dict) -> str:
    m = result["machine"]
    inference = result["images_per_s"]["inference"]
    rows = [f"| inference alone (`Generator.iter_batches`) | {inference:.0f} | 1.00 |"]
    for fmt in FORMATS:
        rows.append(f"| `dcgan-generate --format {fmt}` | {result['images_per_s'][fmt]:.0f} | "
                    f"{result['ratio_to_inference'][fmt]:.2f} |")
    return (f"Machine: {m['cpu']}, {m['cores']} cores. {result['images']} images, ort-cpu, batch 64, "
            f"median of {result['rounds']} rounds, each format right after an inference run.\n\n"
            "| what | images/s | × inference |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n")


@app.command()
def main_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    n: Annotated[int, typer.Option("-n", min=64, help="Images per process.")] = 5000,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds (median).")] = 3,
    out: Annotated[Path, typer.Option(help="Where generate.json and generate.md go.")] = Path("bench"),
    debug: Debug = False,
) -> None:
    """Measure dcgan-generate's formats against inference alone (see the module docstring)."""
    result = measure(artifact, n, rounds)
    write_result(out, "generate", result, markdown(result))
    typer.echo(markdown(result))


def main() -> None:
    raise SystemExit(run_app(app, prog="generate_speed"))


if __name__ == "__main__":
    main()
