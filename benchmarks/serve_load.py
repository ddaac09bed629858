"""Load benchmark of dcgan-serve, from a separate process, against the in-process batched rate.

    python -m benchmarks.serve_load ARTIFACT [--seconds 10] [--clients 1,8,64] [--out bench]

Starts `dcgan-serve` on 127.0.0.1 (with its defaults, then with --concurrency 1 and with
--max-batch 1 for the largest client count), then
drives a closed loop from this process: C keep-alive clients, each asking for one image at a
time for a fixed duration, over /v1 (`GET /v1/images/{seed}/{index}.png`, every request a new
index, so no cache helps) and, on the same server, over the Open Inference Protocol (`POST
/v2/models/dcgan/infer` with a latent z FP32 [1, nz]: binary in and out, as tritonclient sends
by default, and JSON in and out) for 1 client and the largest count. Reports images/s, p50/p99
latency, errors and the server's mean batch size (from /metrics), each beside
`Generator.generate` batched in-process (batch 64) measured just before and just after the
row, and a direct `generate(1)` call's latency. Bounded: every loop stops at its deadline;
traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
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


class Connection:
    """One keep-alive HTTP/1.1 connection that speaks just enough of the protocol for GETs.

    The load runs on the same cores as the server, so its own cost per request counts against
    the server's numbers: a raw stream with one write and two reads per request costs a fraction
    of a general-purpose client's (httpx spends about as much CPU per request as the server)."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of `GET path`; reconnects once if the server closed the connection."""
        return await self.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of one whole HTTP/1.1 request; reconnects once if the server closed
        the connection."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Server:
    def __init__(self, artifact: Path, max_batch: int, concurrency: int):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve.cli", str(artifact), "--port", str(self.port),
             "--max-batch", str(max_batch), "--concurrency", str(concurrency),
             "--backend", "ort-cpu", "--max-queue", "100000"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    async def ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            conn = Connection(self.port)
            try:
                if (await conn.get("/readyz"))[0] == 200:
                    return
            except OSError:  # not listening yet
                pass
            finally:
                conn.close()
            await asyncio.sleep(0.1)
        raise DcganError(f"dcgan-serve did not become ready: {self.proc.stderr.read()[-500:]}")

    async def metrics(self) -> str:
        conn = Connection(self.port)
        try:
            return (await conn.get("/metrics"))[1].decode()
        finally:
            conn.close()

    def cpu_seconds(self) -> float:
        """CPU time the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


PROTOCOLS = ("v1", "oip-binary", "oip-json")
SERVE_PACKAGES = ("starlette", "uvicorn", "uvloop", "httptools")
INFER = "/v2/models/dcgan/infer"
IMAGE_BYTES = 64 * 64 * 3


def oip_requests(protocol: str, nz: int, count: int, seed: int = 0) -> list[bytes]:
    """`count` whole HTTP requests for one image each, of latents drawn here: binary in and out
    (the binary tensor extension), or JSON in and out."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        z = rng.standard_normal((1, nz), dtype=np.float32)
        tensor = {"name": "z", "datatype": "FP32", "shape": [1, nz]}
        if protocol == "oip-binary":
            header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": z.nbytes}}],
                                 "outputs": [{"name": "images", "parameters": {"binary_data": True}}]})
            body, extra = header.encode() + z.tobytes(), f"Inference-Header-Content-Length: {len(header)}\r\n"
        else:
            body, extra = json.dumps({"inputs": [{**tensor, "data": z.ravel().tolist()}]}).encode(), ""
        out.append(f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                   f"Content-Type: application/octet-stream\r\n{extra}\r\n".encode() + body)
    return out


async def _drive(port: int, clients: int, seconds: float, protocol: str = "v1", nz: int = 100) -> dict:
    latencies, errors, counter = [], 0, iter(range(10**9))
    deadline = time.monotonic() + seconds
    bodies = oip_requests(protocol, nz, 64) if protocol != "v1" else []

    async def one_client(k: int) -> None:
        nonlocal errors
        conn = Connection(port)
        try:
            while time.monotonic() < deadline:
                index = next(counter)
                t0 = time.perf_counter()
                try:
                    if protocol == "v1":
                        status, body = await conn.get(f"/v1/images/{k + 1}/{index}.png")
                        ok = status == 200 and body[:4] == b"\x89PNG"
                    else:  # binary: JSON header + 12288 bytes; JSON: 12288 numbers as text
                        status, body = await conn.send(bodies[index % len(bodies)])
                        ok = status == 200 and len(body) > IMAGE_BYTES
                except OSError:  # counted as an error
                    ok = False
                    conn.close()
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(k) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    ms = sorted(x * 1000 for x in latencies)
    return {"protocol": protocol, "clients": clients, "images_per_s": len(ms) / elapsed,
            "requests": len(ms),
            "errors": errors, "p50_ms": statistics.median(ms) if ms else None,
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None}


async def _serve_runs(artifact: Path, max_batch: int, concurrency: int, clients: list[int],
                      seconds: float, reference: InProcess, oip_clients: list[int] = ()) -> list:
    """Rows for /v1 at each client count, then OIP binary and JSON at each of `oip_clients`,
    all on one server; each row with the in-process rate measured just before and just after it."""
    server = Server(artifact, max_batch, concurrency)
    nz = json.loads((Path(artifact) / "manifest.json").read_text())["model"]["nz"]
    runs = [("v1", c) for c in clients]
    runs += [(p, c) for p in ("oip-binary", "oip-json") for c in oip_clients]
    rows = []
    try:
        await server.ready()
        before_rate = reference.measure()
        for protocol, c in runs:
            before = await server.metrics()
            cpu_server, cpu_load = server.cpu_seconds(), time.process_time()
            row = await _drive(server.port, c, seconds, protocol, nz)
            cpu_server, cpu_load = server.cpu_seconds() - cpu_server, time.process_time() - cpu_load
            row["mean_batch"] = _delta_mean_batch(before, await server.metrics())
            row["max_batch"], row["concurrency"] = max_batch, concurrency
            # where the two cores went: per image served, in the server and in the load
            row["server_cpu_ms"] = 1000 * cpu_server / max(row["requests"], 1)
            row["load_cpu_ms"] = 1000 * cpu_load / max(row["requests"], 1)
            after_rate = reference.measure()
            row["in_process_images_per_s"] = (before_rate + after_rate) / 2
            before_rate = after_rate
            rows.append(row)
    finally:
        server.stop()
    return rows


def _delta_mean_batch(before: str, after: str) -> float:
    def read(text: str, what: str) -> float:
        return float(re.search(rf"^dcgan_batch_size_{what} ([0-9.e+]+)$", text, re.M).group(1))

    count = read(after, "count") - read(before, "count")
    return (read(after, "sum") - read(before, "sum")) / count if count else 0.0


def _run_loop(coro):
    """asyncio.run, on uvloop where it is installed (uvicorn[standard] brings it): the load shares
    the cores with the server, so each microsecond it spends per request is one the server loses."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class InProcess:
    """`Generator.generate` batched in this process (batch 64), the rate each load row is compared
    with. This machine's speed drifts by 15 % and more over minutes, so the rate is measured again
    just before and just after every row, and the row is compared with their mean."""

    def __init__(self, artifact: Path):
        from runtime import Generator

        self.gen = Generator.load(artifact, backend="ort-cpu")
        self.gen.generate(64, seed=0)
        self.rates, self.cpu_ms = [], []

    def measure(self) -> float:
        """Images/s of one run of 1,280 images (also kept for the summary)."""
        t0, cpu = time.perf_counter(), time.process_time()
        self.gen.generate(64 * 20, seed=len(self.rates), batch_size=64)
        self.rates.append(64 * 20 / (time.perf_counter() - t0))
        self.cpu_ms.append(1000 * (time.process_time() - cpu) / (64 * 20))
        return self.rates[-1]

    def summary(self) -> dict:
        single = []
        for i in range(200):
            t0 = time.perf_counter()
            self.gen.generate(1, seed=2, start=i)
            single.append((time.perf_counter() - t0) * 1000)
        return {"batched_images_per_s": statistics.median(self.rates),
                "batched_images_per_s_range": [min(self.rates), max(self.rates)],
                "batched_cpu_ms": statistics.median(self.cpu_ms),
                "generate1_p50_ms": statistics.median(single)}

    def close(self) -> None:
        self.gen.close()


def markdown(result: dict) -> str:
    m = result["machine"]
    base = result["in_process"]
    low, high = base["batched_images_per_s_range"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; Python {m.get('python')}, {versions}. "
             f"Server and load in separate processes on 127.0.0.1, {result['seconds']:g} s per "
             "row, one image per request.\n",
             *([f"Command: `{result['command']}`\n"] if "command" in result else []),
             f"In-process `Generator.generate`, batch 64, measured beside every row (runs of 1,280 "
             f"images): median {base['batched_images_per_s']:.0f} images/s (range "
             f"{low:.0f}-{high:.0f}; {base['batched_cpu_ms']:.2f} ms of CPU per image); a direct "
             f"`generate(1)`: p50 {base['generate1_p50_ms']:.2f} ms. Each row's ratio is to the mean "
             "of the in-process runs just before and just after it.\n",
             "| protocol | --max-batch | --concurrency | clients | images/s | in-process images/s "
             "| × in-process batched | p50 ms | p99 ms | mean batch | errors | server CPU ms/image "
             "| load CPU ms/request |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['protocol']} | {r['max_batch']} | {r['concurrency']} | {r['clients']} | "
                     f"{r['images_per_s']:.0f} | {r['in_process_images_per_s']:.0f} | "
                     f"{r['images_per_s'] / r['in_process_images_per_s']:.2f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['mean_batch']:.1f} | {r['errors']} | "
                     f"{r['server_cpu_ms']:.2f} | {r['load_cpu_ms']:.2f} |")
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
    described = machine.describe()
    for name in SERVE_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            described["versions"][name] = importlib.metadata.version(name)
    result = {"seconds": seconds, "machine": described,
              "command": "python -m benchmarks.serve_load " + " ".join(sys.argv[1:])}
    reference = InProcess(artifact)
    try:
        # dcgan-serve's defaults: /v1 at every count, then OIP binary and JSON at 1 and the largest
        top = max(counts)
        rows = _run_loop(_serve_runs(artifact, 64, 2, counts, seconds, reference, sorted({1, top})))
        rows += _run_loop(_serve_runs(artifact, 64, 1, [top], seconds, reference, [top]))
        rows += _run_loop(_serve_runs(artifact, 1, 2, [top], seconds, reference))
        result["in_process"] = reference.summary()
    finally:
        reference.close()
    result["rows"] = rows
    write_result(out, "serve", result, markdown(result))
    typer.echo(markdown(result))


def main() -> None:
    raise SystemExit(run_app(app, prog="serve_load"))


if __name__ == "__main__":
    main()
