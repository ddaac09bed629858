"""Time each runner at each batch size and measure its error against the reference.

Timing follows the usual discipline: warm up, then repeat whole calls until both a minimum
count and a minimum time are reached, reading a monotonic clock around each call (CPU and
runtime calls are synchronous: each returns host-side uint8 images).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from benchmarks.runners import Runner
from export.verify import compare
from runtime.latents import latents

BENCH_SEED = 1234


@dataclass
class Row:
    backend: str
    precision: str
    batch: int
    repetitions: int
    images_per_s: float  # batch / median latency
    latency_p50_ms: float
    latency_p99_ms: float
    spread: float  # (p90 - p10) / p50 of the latencies: how steady the timing was
    max_abs: float | None  # float output vs reference (None where the backend gives uint8 only)
    mean_abs: float | None
    uint8_max_diff: int
    uint8_mean_diff: float
    passed: bool
    fraction_of_bound: float | None = None
    vs_reference: float | None = None  # images/s over the reference's at this batch

    def to_dict(self) -> dict:
        return asdict(self)


def time_calls(fn, z: np.ndarray, warmup: int, min_reps: int, min_seconds: float) -> np.ndarray:
    """Per-call latencies in seconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(z)
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn(z)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def errors(runner: Runner, reference: Runner, z: np.ndarray) -> dict:
    """Errors of `runner` against `reference` on the same latents, and whether they pass."""
    got_float = runner.float_out(z) if runner.float_out is not None else None
    result = compare(reference.float_out(z), got_float, runner.images(z), runner.precision)
    return {"max_abs": result.get("max_abs"), "mean_abs": result.get("mean_abs"),
            "uint8_max_diff": result["uint8_max_diff"], "uint8_mean_diff": result["uint8_mean_diff"],
            "passed": result["passed"]}


def bench_runner(runner: Runner, reference: Runner, batches: list[int], nz: int, latent: str,
                 warmup: int = 2, min_reps: int = 5, min_seconds: float = 1.0) -> list[Row]:
    rows = []
    for batch in batches:
        z = latents(BENCH_SEED, 0, batch, nz, latent)
        err = errors(runner, reference, z)
        t = time_calls(runner.images, z, warmup, min_reps, min_seconds)
        p10, p50, p90, p99 = np.percentile(t, [10, 50, 90, 99])
        rows.append(Row(runner.name, runner.precision, batch, len(t), batch / p50, p50 * 1e3,
                        p99 * 1e3, float((p90 - p10) / p50), **err))
    return rows
