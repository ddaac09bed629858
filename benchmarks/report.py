"""Benchmark output: a terminal table, JSON, a markdown table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.files import atomic_write_bytes, atomic_write_text
from train.plot import figure_png

COLUMNS = ("backend", "batch", "images/s", "vs eager", "of bound", "p50 ms", "p99 ms", "reps",
           "spread", "max abs err", "uint8 max", "uint8 mean", "ok")


def _cells(row: dict) -> list[str]:
    return [row["backend"], str(row["batch"]), f"{row['images_per_s']:.1f}",
            "-" if row.get("vs_reference") is None else f"{row['vs_reference']:.2f}x",
            "-" if row["fraction_of_bound"] is None else f"{row['fraction_of_bound']:.0%}",
            f"{row['latency_p50_ms']:.2f}", f"{row['latency_p99_ms']:.2f}", str(row["repetitions"]),
            f"{row['spread']:.0%}",
            "-" if row["max_abs"] is None else f"{row['max_abs']:.1e}", str(row["uint8_max_diff"]),
            f"{row['uint8_mean_diff']:.2f}", "yes" if row["passed"] else "NO"]


def text_table(rows: list[dict]) -> str:
    table = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                               enumerate(zip(line, widths))) for line in table)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    head = (f"Machine: {m['cpu']}, {m['cores']} cores; {m['gpu'] or 'no GPU'}. "
            f"Versions: {versions}. Date: {result['date']}.\n\n"
            f"Model: nz={result['model']['nz']}, ngf={result['model']['ngf']}; "
            f"{result['gflop_per_image']:.4f} GFLOP per image. fp32 matmul: "
            f"{result['matmul_gflops']:.1f} GFLOP/s, so at most "
            f"{result['bound_images_per_s']:.0f} images/s.\n\n")
    tail = ""
    if result.get("end_to_end"):
        e = result["end_to_end"]
        tail = (f"\n\nEnd to end, `dcgan-generate -n {e['images']}` to PNG ({e['backend']}, batch "
                f"{e['batch']}): {e['images_per_s']:.1f} images/s ({e['seconds']:.2f} s)")
        if e.get("inference_images_per_s"):
            tail += f", against {e['inference_images_per_s']:.1f} images/s of inference alone at that batch"
        tail += "."
        for f in result.get("end_to_end_formats", [])[1:]:
            tail += f" `--format {f['format']}`: {f['images_per_s']:.1f} images/s."
    skipped = "".join(f"\n- {s['backend']}: not measured ({s['reason']})" for s in result["skipped"])
    return head + markdown_table(result["rows"]) + tail + ("\n" + skipped if skipped else "") + "\n"


def plot(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for backend in dict.fromkeys(r["backend"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["backend"] == backend]
        ax.plot([r["batch"] for r in rows], [r["images_per_s"] for r in rows], marker="o", label=backend)
    ax.axhline(result["bound_images_per_s"], color="grey", linestyle="--", label="fp32 matmul bound")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s")
    ax.set_title(f"DCGAN generator (ngf={result['model']['ngf']}) on {result['machine']['cpu']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def write_result(out: Path, stem: str, result: dict, text: str) -> None:
    """out/STEM.json (the numbers) and out/STEM.md (the table), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.md", text)


def write_outputs(result: dict, out: Path) -> None:
    write_result(out, "bench", result, markdown(result))
    atomic_write_bytes(out / "bench.png", plot(result))
