"""A training experiment, not a benchmark of the toolkit: measure a training recipe on shapes:
train it for several seeds, read the quality scores of the shipped generator along the way,
and print the curve: step, training minutes, the continuous metrics (KID, precision, recall,
class shares of all samples) and the strict checker's valid share, each the median over seeds.

    python -m benchmarks.training_recipe ARM --seeds 0,1,2 --steps 6000 -- --ngf 32 --ndf 16 [...]

Everything after `--` goes to dcgan-train unchanged; each seed trains into runs/recipe/ARM-sS
with `--quality-every` and `--quality-samples` set here. Appends one JSON line per seed to
runs/recipe/results.jsonl. `--report` prints the table of runs already trained, without training.
Training minutes count only the steps (from each log line's images/s), not the scoring.
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
from runtime.files import atomic_write_bytes

app = new_app(__doc__)


SCORES = ("valid", "kid", "fd", "precision", "recall", "background_deviation")


def quality_curve(run_dir: Path) -> list[dict]:
    """The run's quality records, each with the training minutes spent up to its step."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    batch = json.loads((run_dir / "config.json").read_text())["train"]["batch_size"]
    curve, seconds, last_step = [], 0.0, 0
    for r in rows:
        if "images_per_s" in r:
            seconds += (r["step"] - last_step) * batch / r["images_per_s"]
            last_step = r["step"]
        elif "quality" in r:
            q = r["quality"]
            curve.append({"step": r["step"], "minutes": seconds / 60,
                          **{k: q.get(k, float("nan")) for k in SCORES},
                          **{f"{c} share": v for c, v in q.get("class_shares", {}).items()}})
    return curve


def table(curves: list[list[dict]]) -> str:
    """Markdown: one row per scored step, the median over the runs that reached it."""
    head = ["step", "minutes", "KID", "FD", "precision", "recall", "circle", "square", "triangle",
            "bg dev", "valid"]
    keys = ["minutes", "kid", "fd", "precision", "recall", "circle share", "square share",
            "triangle share", "background_deviation", "valid"]
    formats = ["{:.1f}", "{:.3f}", "{:.2f}", "{:.1%}", "{:.1%}", "{:.0%}", "{:.0%}", "{:.0%}",
               "{:.1f}", "{:.1%}"]
    lines = [f"| {' | '.join(head)} |", "|" + " --- |" * len(head)]
    for i, point in enumerate(curves[0]):
        at = [c[i] for c in curves if len(c) > i]
        cells = [fmt.format(statistics.median(p.get(k, float("nan")) for p in at))
                 for k, fmt in zip(keys, formats)]
        lines.append(f"| {point['step']} | {' | '.join(cells)} |")
    return "\n".join(lines) + f"\n\n(median of {len(curves)} seed(s))\n"


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def main_command(
    ctx: typer.Context,
    arm: Annotated[str, typer.Argument(help="A name for this recipe.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds.")] = "0,1,2",
    steps: Annotated[int, typer.Option(min=1, help="Training steps per seed.")] = 2400,
    every: Annotated[int, typer.Option(min=1, help="Steps between quality scores.")] = 400,
    samples: Annotated[int, typer.Option(min=16, help="Samples per quality score.")] = 1024,
    root: Annotated[Path, typer.Option(help="Where the runs go.")] = Path("runs/recipe"),
    report: Annotated[bool, typer.Option(help="Only print the table of the runs already there "
                                              "(ARM may then list several, comma-separated).")
                      ] = False,
    plot: Annotated[Path | None, typer.Option(help="With --report: a PNG of each arm's median KID "
                                                   "against training minutes.")] = None,
    debug: Debug = False,
) -> None:
    """Train ARM for each seed and report the quality curve (see the module docstring)."""
    medians = {}
    for name in arm.split(",") if report else [arm]:
        curves = []
        for seed in (int(s) for s in seeds.split(",")):
            out = root / f"{name}-s{seed}"
            argv = [sys.executable, "-m", "train.cli", "--out", str(out), "--steps", str(steps),
                    "--seed", str(seed), "--quality-every", str(every), "--quality-samples",
                    str(samples), "--overwrite", *ctx.args]
            if report and not (out / "metrics.jsonl").exists():
                continue  # a report takes the seeds each arm has
            if not report:
                t0 = time.perf_counter()
                subprocess.run(argv, check=True)
                result = {"arm": name, "seed": seed, "minutes": (time.perf_counter() - t0) / 60,
                          "command": " ".join(argv[1:]), "curve": quality_curve(out)}
                root.mkdir(parents=True, exist_ok=True)
                with open(root / "results.jsonl", "a") as f:
                    f.write(json.dumps(result) + "\n")
            curves.append(quality_curve(out))
        typer.echo(f"{name}:\n{table(curves)}")
        medians[name] = [(statistics.median(c[i]["minutes"] for c in curves if len(c) > i),
                          statistics.median(c[i]["kid"] for c in curves if len(c) > i))
                         for i in range(len(curves[0]))]
    if plot is not None:
        _plot(medians, plot)


def _plot(medians: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.plot import figure_png

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for name, points in medians.items():
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training minutes (one thread)")
    ax.set_ylabel("KID (median over seeds; real renders: 0.002)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))


def main() -> None:
    raise SystemExit(run_app(app, prog="training_recipe"))


if __name__ == "__main__":
    main()
