"""The loss plot: loss_d and loss_g against step, and the quality score where logged, from
metrics.jsonl."""

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


def plot_losses(metrics_path: Path, out_path: Path) -> None:
    """Write a PNG of the losses; skipped with a warning if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed, no loss plot — pip install 'dcgan[train]'")
        return
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
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
