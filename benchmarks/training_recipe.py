"""A training experiment, not a benchmark of the toolkit: measure a training recipe on shapes:
train it for several seeds, read the quality score of the shipped generator along the way,
and print the curve (step -> valid share, balance, distinct, background deviation).

    python -m benchmarks.training_recipe ARM --seeds 0,1,2 --steps 2400 -- --ngf 32 --ndf 16 [...]

Everything after `--` goes to dcgan-train unchanged; each seed trains into runs/recipe/ARM-sS
with `--quality-every` and `--quality-samples` set here. Appends one JSON line per seed to
runs/recipe/results.jsonl and prints the median over seeds at each scored step.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli_support import Debug, new_app, run_app

app = new_app(__doc__)


def quality_curve(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = ("valid", "balance", "distinct", "background_deviation")
    return [{"step": r["step"], **{k: r["quality"].get(k, float("nan")) for k in keys}}
            for r in rows if "quality" in r]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def main_command(
    ctx: typer.Context,
    arm: Annotated[str, typer.Argument(help="A name for this recipe.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    steps: Annotated[int, typer.Option(min=1, help="Training steps per seed.")] = 2400,
    every: Annotated[int, typer.Option(min=1, help="Steps between quality scores.")] = 400,
    samples: Annotated[int, typer.Option(min=16, help="Samples per quality score.")] = 1024,
    root: Annotated[Path, typer.Option(help="Where the runs go.")] = Path("runs/recipe"),
    debug: Debug = False,
) -> None:
    """Train ARM for each seed and report the quality curve (see the module docstring)."""
    results = []
    for seed in (int(s) for s in seeds.split(",")):
        out = root / f"{arm}-s{seed}"
        argv = [sys.executable, "-m", "train.cli", "--out", str(out), "--steps", str(steps),
                "--seed", str(seed), "--quality-every", str(every), "--quality-samples",
                str(samples), "--overwrite", *ctx.args]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        result = {"arm": arm, "seed": seed, "minutes": (time.perf_counter() - t0) / 60,
                  "command": " ".join(argv[1:]), "curve": quality_curve(out)}
        results.append(result)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "results.jsonl", "a") as f:
            f.write(json.dumps(result) + "\n")
    typer.echo(f"| step | valid (median of {len(results)}) | balance | distinct | background deviation |")
    typer.echo("| --- | --- | --- | --- | --- |")
    for i, point in enumerate(results[0]["curve"]):
        at = [r["curve"][i] for r in results if len(r["curve"]) > i]
        typer.echo(f"| {point['step']} | {statistics.median(p['valid'] for p in at):.1%} | "
                   f"{statistics.median(p['balance'] for p in at):.3f} | "
                   f"{statistics.median(p['distinct'] for p in at):.1%} | "
                   f"{statistics.median(p['background_deviation'] for p in at):.1f} |")


def main() -> None:
    raise SystemExit(run_app(app, prog="training_recipe"))


if __name__ == "__main__":
    main()
