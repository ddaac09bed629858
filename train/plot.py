"""The loss plot: loss_d and loss_g against step, from metrics.jsonl."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from runtime.files import atomic_write_bytes

log = logging.getLogger(__name__)


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
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss_d"] for r in rows], label="loss D")
    ax.plot(steps, [r["loss_g"] for r in rows], label="loss G")
    ax.set_xlabel("step")
    ax.set_ylabel("BCE loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())
