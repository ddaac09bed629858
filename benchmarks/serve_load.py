"""Load benchmark of dcgan-serve, from a separate process, against the in-process batched rate.

    python -m benchmarks.serve_load ARTIFACT [--seconds 10] [--clients 1,8,64] [--out bench]

Starts `dcgan-serve` on 127.0.0.1 (once with --max-batch 64, once with --max-batch 1), then
drives a closed loop from this process: C keep-alive clients, each asking for one image at a
time (`GET /v1/images/{seed}/{index}.png`, every request a new index, so no cache helps) for a
fixed duration. Reports images/s, p50/p99 latency, errors and the server's mean batch size (from
/metrics), next to `Generator.generate` batched in-process (batch 64) and a direct
`generate(1)` call's latency, measured in the same run. Bounded: every loop stops at its
deadline; traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from benchmarks import machine
from benchmarks.report import write_result
from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError

app = new_app(__doc__)
ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, artifact: Path, max_batch: int):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve.cli", str(artifact), "--port", str(self.port),
             "--max-batch", str(max_batch), "--backend", "ort-cpu", "--max-queue", "100000"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    async def ready(self, client) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if (await client.get(self.url + "/readyz")).status_code == 200:
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            await asyncio.sleep(0.1)
        raise DcganError(f"dcgan-serve did not become ready: {self.proc.stderr.read()[-500:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def _drive(url: str, clients: int, seconds: float, client) -> dict:
    latencies, errors, counter = [], 0, iter(range(10**9))
    deadline = time.monotonic() + seconds

    async def one_client(k: int) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            index = next(counter)
            t0 = time.perf_counter()
            try:
                r = await client.get(f"{url}/v1/images/{k + 1}/{index}.png")
                ok = r.status_code == 200
            except Exception:  # noqa: BLE001 - counted as an error
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    ms = sorted(x * 1000 for x in latencies)
    return {"clients": clients, "images_per_s": len(ms) / elapsed, "requests": len(ms),
            "errors": errors, "p50_ms": statistics.median(ms) if ms else None,
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None}


async def _serve_runs(artifact: Path, max_batch: int, clients: list[int], seconds: float) -> list:
    import httpx2 as httpx

    server = Server(artifact, max_batch)
    rows = []
    try:
        pool = max(clients) + 4
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            await server.ready(client)
            for c in clients:
                before = (await client.get(server.url + "/metrics")).text
                row = await _drive(server.url, c, seconds, client)
                after = (await client.get(server.url + "/metrics")).text
                row["mean_batch"] = _delta_mean_batch(before, after)
                row["max_batch"] = max_batch
                rows.append(row)
    finally:
        server.stop()
    return rows


def _delta_mean_batch(before: str, after: str) -> float:
    def read(text: str, what: str) -> float:
        return float(re.search(rf"^dcgan_batch_size_{what} ([0-9.e+]+)$", text, re.M).group(1))

    count = read(after, "count") - read(before, "count")
    return (read(after, "sum") - read(before, "sum")) / count if count else 0.0


def _in_process(artifact: Path) -> dict:
    from runtime import Generator

    with Generator.load(artifact, backend="ort-cpu") as gen:
        gen.generate(64, seed=0)
        t0 = time.perf_counter()
        gen.generate(64 * 20, seed=1, batch_size=64)
        batched = 64 * 20 / (time.perf_counter() - t0)
        single = []
        for i in range(200):
            t0 = time.perf_counter()
            gen.generate(1, seed=2, start=i)
            single.append((time.perf_counter() - t0) * 1000)
    return {"batched_images_per_s": batched, "generate1_p50_ms": statistics.median(single)}


def markdown(result: dict) -> str:
    m = result["machine"]
    base = result["in_process"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores. Server and load in separate processes on "
             f"127.0.0.1, {result['seconds']:g} s per row, one image per request.\n",
             f"In-process `Generator.generate`, batch 64: {base['batched_images_per_s']:.0f} "
             f"images/s; a direct `generate(1)`: p50 {base['generate1_p50_ms']:.2f} ms.\n",
             "| --max-batch | clients | images/s | × in-process batched | p50 ms | p99 ms "
             "| mean batch | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['max_batch']} | {r['clients']} | {r['images_per_s']:.0f} | "
                     f"{r['images_per_s'] / base['batched_images_per_s']:.2f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['mean_batch']:.1f} | {r['errors']} |")
    return "\n".join(lines) + "\n"


@app.command()
def main_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    seconds: Annotated[float, typer.Option(min=1.0, help="Duration of each load row.")] = 10.0,
    clients: Annotated[str, typer.Option(help="Concurrent clients per row, comma-separated.")] = "1,8,64",
    out: Annotated[Path, typer.Option(help="Where serve.json and serve.md go.")] = Path("bench"),
    debug: Debug = False,
) -> None:
    """Measure dcgan-serve under a closed-loop load (see the module docstring)."""
    counts = [int(c) for c in clients.split(",")]
    result = {"seconds": seconds, "machine": machine.describe(), "in_process": _in_process(artifact)}
    rows = asyncio.run(_serve_runs(artifact, 64, counts, seconds))
    rows += asyncio.run(_serve_runs(artifact, 1, [max(counts)], seconds))
    result["rows"] = rows
    write_result(out, "serve", result, markdown(result))
    typer.echo(markdown(result))


def main() -> None:
    raise SystemExit(run_app(app, prog="serve_load"))


if __name__ == "__main__":
    main()
