"""Training images/s of this tree against another (a git worktree of an older commit), side by
side in one run.

    git worktree add /tmp/base COMMIT
    python -m benchmarks.train_speed /tmp/base --base-args "--ngf 32 --ndf 16 ..." \
        --args "--ngf 32 --ndf 16 --workers 1" [--steps 160] [--rounds 3] [--out bench]

Each round trains, as separate processes one after the other (the order alternating between
rounds), `python -m train.cli --steps N --log-every 20` in each tree with its own arguments, on
the built-in shapes; a tree's rate in a round is the median of its metrics.jsonl `images_per_s`
after the first 20 steps (start-up and the first batches excluded). The table gives both rates
and their ratio per round, and the median ratio: the machine's drift between rounds cancels in
the ratio. Writes train_speed.json and train_speed.md.
"""

from __future__ import annotations

import json
import shlex
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
WARM_UP_STEPS = 20


def _git_commit(tree: Path) -> str:
    result = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def images_per_s(tree: Path, args: list[str], steps: int) -> float:
    """One training process in `tree` (its own code: `python -m` puts the tree first on the
    path); the median images/s it logged after the warm-up."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result = subprocess.run(
            [sys.executable, "-m", "train.cli", "--out", str(run_dir), "--steps", str(steps),
             "--log-every", str(WARM_UP_STEPS), *args], cwd=tree, capture_output=True, text=True)
        if result.returncode != 0:
            raise DcganError(f"training in {tree} failed: {result.stderr.strip()[-300:]}")
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rows if "images_per_s" in r and r["step"] > WARM_UP_STEPS]
    if not rates:
        raise DcganError(f"training in {tree} logged no rate after step {WARM_UP_STEPS} — "
                         f"raise --steps above {2 * WARM_UP_STEPS}")
    return statistics.median(rates)


def measure(base: Path, base_args: list[str], args: list[str], steps: int, rounds: int) -> dict:
    here = Path(__file__).resolve().parents[1]
    trees = {"base": (base, base_args), "this": (here, args)}
    rows = []
    for r in range(rounds):
        order = ("base", "this") if r % 2 == 0 else ("this", "base")
        rates = {name: images_per_s(*trees[name], steps) for name in order}
        rows.append({"round": r + 1, "order": list(order), **rates,
                     "ratio": rates["this"] / rates["base"]})
    return {"steps": steps, "rounds": rounds, "machine": machine.describe(),
            "base": {"commit": _git_commit(base), "args": base_args},
            "this": {"commit": _git_commit(here), "args": args},
            "rows": rows, "median_ratio": statistics.median(r["ratio"] for r in rows)}


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"| {r['round']} | {r['base']:.1f} | {r['this']:.1f} | {r['ratio']:.2f}× |"
             for r in result["rows"]]
    return (f"Machine: {m['cpu']}, {m['cores']} cores. Training images/s, {result['steps']} steps "
            f"per process, median after step {WARM_UP_STEPS}; base {result['base']['commit']} "
            f"(`{' '.join(result['base']['args'])}`) and this tree {result['this']['commit']} "
            f"(`{' '.join(result['this']['args'])}`), alternating order.\n\n"
            "| round | base images/s | this images/s | ratio |\n| --- | --- | --- | --- |\n"
            + "\n".join(lines) + f"\n\nMedian ratio: {result['median_ratio']:.2f}×\n")


@app.command()
def main_command(
    base: Annotated[Path, typer.Argument(help="The tree to compare against (a git worktree).")],
    base_args: Annotated[str, typer.Option(help="dcgan-train arguments in the base tree.")] = "",
    args: Annotated[str, typer.Option(help="dcgan-train arguments in this tree.")] = "",
    steps: Annotated[int, typer.Option(min=2 * WARM_UP_STEPS + 1, help="Steps per process.")] = 160,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds (median ratio).")] = 3,
    out: Annotated[Path, typer.Option(help="Where train_speed.json and .md go.")] = Path("bench"),
    debug: Debug = False,
) -> None:
    """Measure training speed against another tree (see the module docstring)."""
    if not (base / "train" / "cli.py").is_file():
        raise DcganError(f"{base} holds no train/cli.py — give a checkout of this project "
                         "(git worktree add PATH COMMIT)")
    result = measure(base, shlex.split(base_args), shlex.split(args), steps, rounds)
    write_result(out, "train_speed", result, markdown(result))
    typer.echo(markdown(result))


def main() -> None:
    raise SystemExit(run_app(app, prog="train_speed"))


if __name__ == "__main__":
    main()
