"""What makes ONNX Runtime's CPU provider fast on this generator: each option measured side by
side in one run, at the paper's width, on the same latents.

    python -m benchmarks.ort_options [--ngf 64] [--rounds 3] [--out benchmarks/results/ort_cpu_options.md]

Rows: graph layout (ConvTranspose vs sub-pixel Conv + DepthToSpace, and the int8 model, whose
speed is measured here but whose error is dcgan-bench's business), intra-op threads, graph
optimization level, memory arena, and cutting the batch into one slice per core that runs on a
single-threaded session (what the runtime's ort-cpu does for two or more images); each as
images/s at batch 1, 64 and 256 and as a fraction of the fp32 matmul bound. The weights are a
freshly initialised G with BN folded: speed does not depend on their values.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import onnxruntime as ort
import torch
import typer

from benchmarks.flops import generator_flops, matmul_gflops
from benchmarks.harness import time_calls
from benchmarks.machine import describe
from export.fold import fold_generator
from export.onnx_graph import build_onnx
from export.quantize import build_int8_onnx
from runtime.cli_support import new_app, run_app
from runtime.cores import physical_cores
from runtime.files import atomic_write_text
from runtime.ort_backends import run_per_core
from train.config import ModelConfig
from train.models import build_models
from train.recalibrate import recalibrate_bn


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # "convtranspose", "subpixel" or "int8"
    threads: int  # intra-op threads; 0: one per physical core
    level: str = "ORT_ENABLE_ALL"  # graph optimization level
    arena: bool = True
    per_core: bool = False  # one slice of the batch per core, run at once
    spinning: bool = True  # intra-op threads spin while waiting for work


def session(model_bytes: bytes, v: Variant, cores: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = v.threads or cores
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, v.level)
    opts.enable_cpu_mem_arena = v.arena
    if not v.spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


VARIANTS = [
    Variant("ConvTranspose, defaults (all optimizations, arena, threads = cores)", "convtranspose", 0),
    Variant("ConvTranspose, one slice per core on 1-thread sessions (runtime ort-cpu, batch >= 2)",
            "convtranspose", 1, per_core=True),
    Variant("ConvTranspose, 1 thread", "convtranspose", 1),
    Variant("ConvTranspose, extended optimizations (no layout transforms)", "convtranspose", 0,
            "ORT_ENABLE_EXTENDED"),
    Variant("ConvTranspose, basic optimizations only", "convtranspose", 0, "ORT_ENABLE_BASIC"),
    Variant("ConvTranspose, no memory arena", "convtranspose", 0, arena=False),
    Variant("ConvTranspose, no intra-op spinning", "convtranspose", 0, spinning=False),
    Variant("sub-pixel Conv + DepthToSpace", "subpixel", 0),
    Variant("sub-pixel, extended optimizations", "subpixel", 0, "ORT_ENABLE_EXTENDED"),
    Variant("sub-pixel, basic optimizations only", "subpixel", 0, "ORT_ENABLE_BASIC"),
    Variant("sub-pixel, 1 thread", "subpixel", 1),
    Variant("sub-pixel, one slice per core on 1-thread sessions", "subpixel", 1, per_core=True),
    Variant("int8 sub-pixel (QDQ), threads = cores", "int8", 0),
    Variant("int8 sub-pixel (QDQ), one slice per core on 1-thread sessions (runtime ort-cpu int8)",
            "int8", 1, per_core=True),
]


def sharded(sess: ort.InferenceSession, pool: ThreadPoolExecutor, cores: int):
    """Run one slice of the batch per core at once, as the runtime's ort-cpu does."""
    return lambda z: run_per_core(pool, cores, lambda s: sess.run(["images"], {"z": s})[0], z)


app = new_app(__doc__)


@app.command()
def main_command(
    ngf: Annotated[int, typer.Option(min=1, help="Generator width.")] = 64,
    batches: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,64,256",
    min_seconds: Annotated[float, typer.Option(help="Timed seconds per cell.")] = 3.0,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds; cells give the median.")] = 3,
    out: Annotated[str | None, typer.Option(help="Write a markdown table here.")] = None,
) -> None:
    """ONNX Runtime CPU options side by side on one model."""
    batches = [int(b) for b in batches.split(",")]

    torch.manual_seed(0)
    cfg = ModelConfig(ngf=ngf)
    g = recalibrate_bn(build_models(cfg)[0], 4, 64)
    layers = fold_generator(g)
    models = {layout: build_onnx(layers, cfg, "fp32", layout=layout).SerializeToString()
              for layout in ("convtranspose", "subpixel")}
    models["int8"] = build_int8_onnx(layers, cfg).SerializeToString()
    cores = physical_cores()
    gflops = matmul_gflops()
    bound = gflops / (generator_flops(cfg) / 1e9)
    z_all = np.random.default_rng(0).standard_normal((max(batches), cfg.nz)).astype(np.float32)
    pool = ThreadPoolExecutor(cores)
    runs = {}
    for v in VARIANTS:
        sess = session(models[v.model], v, cores)
        runs[v.name] = sharded(sess, pool, cores) if v.per_core else (
            lambda x, s=sess: s.run(["images"], {"z": x}))
    # rounds interleave the variants, so a slow minute on a shared machine hits them all alike
    rates = {(v.name, b): [] for v in VARIANTS for b in batches}
    for r in range(rounds):
        for v in VARIANTS:
            for b in batches:
                t = time_calls(runs[v.name], z_all[:b], 2, 3, min_seconds / rounds)
                rates[v.name, b].append(b / np.median(t))
                print(f"round {r + 1}/{rounds} {v.name:70s} batch {b:4d}: "
                      f"{rates[v.name, b][-1]:8.1f} images/s", flush=True)
    header = ["variant"] + [f"batch {b}" for b in batches]
    lines = []
    for v in VARIANTS:
        cells = [v.name]
        for b in batches:
            rate = float(np.median(rates[v.name, b]))
            cells.append(f"{rate:.0f} img/s ({rate / bound:.0%})")
        lines.append(cells)
    m = describe()
    text = (f"ONNX Runtime CPU options, ngf={ngf}: {m['cpu']}, {m['cores']} cores, "
            f"onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d')}. fp32 matmul "
            f"{gflops:.1f} GFLOP/s -> bound {bound:.0f} images/s "
            f"({generator_flops(cfg) / 1e9:.4f} GFLOP/image). Each cell: the median of "
            f"{rounds} interleaved rounds.\n\n"
            "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
            + "\n".join("| " + " | ".join(c) + " |" for c in lines) + "\n")
    print(text)
    if out:
        atomic_write_text(out, text)


def main() -> None:
    raise SystemExit(run_app(app, prog="ort_options"))


if __name__ == "__main__":
    main()
