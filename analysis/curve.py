"""The quality curve of a run: every checkpoint it kept, scored as export would ship it.

A run's metrics.jsonl holds the scores made while it trained; this scores the checkpoints
afterwards, so runs trained before the continuous metrics existed, or with --quality-every 0,
get their curve too. Checkpoints of one step (last.pt and the epoch checkpoint it equals, say)
are scored once.
"""

from __future__ import annotations

import json
from pathlib import Path

from analysis.sources import AnalysisError
from export.load import load_for_export
from runtime.files import atomic_write_text
from train.continuous import load_anchors, score_continuous
from train.plot import plot_quality_rows
from train.quality import score_images
from train.shapes import CLASSES
from train.shipping import sample_images, shipping_generator


def checkpoints_by_step(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of each checkpoint in run_dir/checkpoints, one per step, by step."""
    paths = sorted((Path(run_dir) / "checkpoints").glob("*.pt"))
    if not paths:
        raise AnalysisError(f"{run_dir} has no checkpoints/*.pt — pass a dcgan-train run directory")
    by_step: dict[int, Path] = {}
    for path in paths:  # epoch_K.pt sorts before last.pt and best.pt, and names the step best
        step = load_for_export(path).step
        by_step.setdefault(-1 if step is None else step, path)
    return sorted(by_step.items())


def quality_curve(run_dir: Path, n: int, seed: int, out: Path) -> list[dict]:
    """Score every checkpoint of `run_dir` on images 0..n-1 of `seed`; write curve.json, curve.md
    and curve.png to `out`. Returns the rows, by step."""
    rows = []
    for step, path in checkpoints_by_step(run_dir):
        loaded = load_for_export(path)
        if loaded.config.nc != 3:
            raise AnalysisError(f"{path} makes {loaded.config.nc}-channel images — the quality "
                                "curve is for RGB models trained on shapes")
        images = sample_images(shipping_generator(loaded.generator), n, seed)
        rows.append({"checkpoint": path.name, "step": step, **score_images(images).to_dict(),
                     **score_continuous(images).to_dict()})
    out.mkdir(parents=True, exist_ok=True)
    anchors = load_anchors()
    atomic_write_text(out / "curve.json", json.dumps(
        {"run": str(run_dir), "seed": seed, "anchors": anchors, "rows": rows}, indent=1) + "\n")
    atomic_write_text(out / "curve.md", curve_table(rows, anchors))
    plot_quality_rows([r["step"] for r in rows], rows, anchors, out / "curve.png", "step")
    return rows


def curve_table(rows: list[dict], anchors: dict) -> str:
    """A Markdown table, one row per checkpoint, then one per anchor."""
    head = ["step", "checkpoint", "KID", "FD", "precision", "recall",
            *[f"{c} share" for c in CLASSES], "radius < 9 px", "valid (strict)"]

    def cells(label: list[str], s: dict, valid: float | None) -> str:
        values = [f"{s['kid']:.2e}", f"{s['fd']:.3g}", f"{s['precision']:.1%}", f"{s['recall']:.1%}",
                  *[f"{s['class_shares'][c]:.1%}" for c in CLASSES], f"{s['small_radius']:.1%}",
                  "" if valid is None else f"{valid:.1%}"]
        return "| " + " | ".join(label + values) + " |"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [cells([str(r["step"]), r["checkpoint"]], r, r["valid"]) for r in rows]
    lines += [cells(["anchor", name], a["scores"], a.get("valid"))
              for name, a in anchors.get("anchors", {}).items()]
    return "\n".join(lines) + "\n"
