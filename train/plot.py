"""The run's plots from metrics.jsonl: loss.png (loss_d and loss_g against step, and the strict
quality score where logged) and quality.png (the continuous metrics beside their anchors)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from runtime.files import atomic_write_bytes

log = logging.getLogger(__name__)


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a warning) when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed, no plots — pip install 'dcgan[train]'")
        return None
    return plt


def _rows(metrics_path: Path) -> list[dict]:
    return [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]


def plot_losses(metrics_path: Path, out_path: Path) -> None:
    """Write a PNG of the losses; skipped with a warning if matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return
    rows = _rows(metrics_path)
    losses = [r for r in rows if "loss_d" in r]
    scores = [r for r in rows if "quality" in r]
    if not losses:
        return
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(11 if scores else 7, 3.5), dpi=100,
                             squeeze=False)
    ax = axes[0, 0]
    steps = [r["step"] for r in losses]
    ax.plot(steps, [r["loss_d"] for r in losses], label="loss D")
    ax.plot(steps, [r["loss_g"] for r in losses], label="loss G")
    ax.set_xlabel("step")
    ax.set_ylabel("BCE loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if scores:  # the shipped generator's quality score (train/quality.py)
        ax = axes[0, 1]
        steps = [r["step"] for r in scores]
        for key, label in (("valid", "valid share"), ("balance", "class balance"),
                           ("distinct", "distinct share")):
            ax.plot(steps, [r["quality"][key] for r in scores], marker=".", label=label)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_bytes(out_path, figure_png(fig))


# (key in a quality record, axis title, log scale); anchors are drawn as dotted lines
QUALITY_PANELS = (("kid", "KID (log)", True), ("fd", "Fréchet distance (log)", True),
                  ("precision", "precision", False), ("recall", "recall", False))


def plot_quality(metrics_path: Path, out_path: Path, anchors: dict) -> None:
    """Write quality.png: KID, FD, precision and recall against step with their anchors (from
    featnet_anchors.json), and the class shares of all samples beside the valid share. Quality
    records from before the continuous metrics are left out; nothing is written without any."""
    plt = _pyplot()
    if plt is None:
        return
    rows = [r for r in _rows(metrics_path) if "kid" in r.get("quality", {})]
    if not rows:
        return
    plot_quality_rows([r["step"] for r in rows], [r["quality"] for r in rows], anchors, out_path,
                      "step")


def plot_quality_rows(x: list, scores: list[dict], anchors: dict, out_path: Path,
                      xlabel: str) -> None:
    """The quality figure for any series of quality records (a run's log, a checkpoint curve)."""
    plt = _pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(QUALITY_PANELS) + 1, figsize=(19, 3.6), dpi=90)
    floor = 1e-6  # KID is unbiased and may dip below 0: drawn at this floor on the log axis
    for ax, (key, title, log_scale) in zip(axes, QUALITY_PANELS):
        values = [max(s[key], floor) if log_scale else s[key] for s in scores]
        ax.plot(x, values, marker=".", color="black", label="samples")
        for i, (name, anchor) in enumerate(anchors.get("anchors", {}).items()):
            value = anchor["scores"][key]
            ax.axhline(max(value, floor) if log_scale else value, ls=":", color=f"C{i}", label=name)
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for name in scores[0]["class_shares"]:
        ax.plot(x, [s["class_shares"][name] for s in scores], marker=".", label=f"{name} share")
    ax.plot(x, [s["valid"] for s in scores], marker=".", color="black", ls="--", label="valid (strict)")
    ax.set_ylim(0, 1.02)
    ax.set_title("class shares of all samples")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write_bytes(out_path, figure_png(fig))
