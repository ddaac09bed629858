"""dcgan-ray-generate against dcgan-generate alone, on one machine.

    python -m benchmarks.ray_generate ARTIFACT -n 4000 [--parts 2] [--out benchmarks/results]

Runs, as whole processes on the same artifact, seed and format (PNG, ort-cpu, batch 64):
`dcgan-generate -n N`, then `dcgan-ray-generate -n N --parts K` on a local Ray cluster that the
command starts itself (it finds none running), each at N and 4N. For each it records the wall
time of the whole process (Ray's start-up included), the seconds the command reports for its
own work (for Ray: from the first task submitted to the merge done, start-up excluded), and the
peak proportional set size (PSS) of the process and every process under it, sampled every 50 ms:
the Ray cluster's own processes and its workers included, shared memory counted once. Writes
ray_generate.json and ray_generate.md.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import machine
from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError
from runtime.files import atomic_write_text

app = new_app(__doc__)


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in found]


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mib(root: int) -> float:
    """PSS of `root` and every process under it, in MiB."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _pss_kib(pid)
        todo += _children(pid)
    return total / 1024


def measure(argv: list[str]) -> dict:
    """Run `argv`; return its wall seconds, its output and the peak PSS of its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_mib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise DcganError(f"{' '.join(argv[:3])} failed: {stderr.strip()[-300:]}")
    return {"wall_s": wall, "stdout": stdout, "peak_pss_mib": peak[0]}


def run_one(command: str, artifact: Path, n: int, parts: int) -> dict:
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        argv = [str(bin_dir / command), str(artifact), "-n", str(n), "--out", f"{tmp}/out",
                "--backend", "ort-cpu", "--batch-size", "64"]
        if command == "dcgan-ray-generate":
            argv += ["--parts", str(parts)]
        result = measure(argv)
    own = float(re.search(r"images in ([0-9.]+) s", result["stdout"]).group(1))
    start_up = re.search(r"Ray start-up ([0-9.]+) s", result["stdout"])
    return {"command": command, "images": n, "parts": parts if start_up else None,
            "wall_s": round(result["wall_s"], 2), "work_s": own,
            "ray_start_s": float(start_up.group(1)) if start_up else None,
            "peak_pss_mib": round(result["peak_pss_mib"], 1)}


def markdown(result: dict) -> str:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; local Ray cluster of the machine's CPUs. "
             f"Versions: {versions}. Date: {result['date']}.", "",
             f"Command: `{result['command']}`. Load average (1 min) before and after: "
             f"{result['load_average_1min'][0]} and {result['load_average_1min'][1]}: other work shared "
             "the machine.", "",
             "| command | images | parts | wall s (start-up incl.) | work s (start-up excl.) | "
             "Ray start-up s | images/s (work) | peak PSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['command']} | {r['images']} | {r['parts'] or '-'} | {r['wall_s']:.2f} | "
                     f"{r['work_s']:.2f} | {r['ray_start_s'] if r['ray_start_s'] is not None else '-'} "
                     f"| {r['images'] / r['work_s']:.0f} | {r['peak_pss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


@app.command()
def main_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    n: Annotated[int, typer.Option("-n", min=1, help="Images of the smaller run (the larger: 4x).")
                 ] = 4000,
    parts: Annotated[int, typer.Option(min=1, help="Ray tasks.")] = 2,
    out: Annotated[Path, typer.Option(help="Where ray_generate.json/.md go.")] = Path("benchmarks/results"),
    debug: Debug = False,
) -> None:
    """Time and peak memory of dcgan-ray-generate against dcgan-generate at N and 4N images."""
    load_before = os.getloadavg()[0]
    rows = [run_one(command, artifact.resolve(), count, parts)
            for count in (n, 4 * n) for command in ("dcgan-generate", "dcgan-ray-generate")]
    result = {"date": date.today().isoformat(), "machine": machine.describe(),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "command": f"python -m benchmarks.ray_generate {artifact} -n {n} --parts {parts}",
              "rows": rows}
    result["machine"]["versions"]["ray"] = importlib.metadata.version("ray")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ray_generate.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "ray_generate.md", markdown(result))
    typer.echo(markdown(result))


def main() -> None:
    raise SystemExit(run_app(app, prog="benchmarks.ray_generate"))


if __name__ == "__main__":
    main()
