"""What makes ONNX Runtime's CPU provider fast on this generator: each option measured side by
side in one run, at the paper's width, on the same latents.

    python -m benchmarks.ort_options [--ngf 64] [--out benchmarks/results/ort_cpu_options.md]

Rows: graph layout (ConvTranspose vs sub-pixel Conv + DepthToSpace, and the int8 model, whose
speed is measured here but whose error is dcgan-bench's business), intra-op threads, graph
optimization level, memory arena, and cutting the batch into one slice per core that runs on a
single-threaded session (what the runtime's ort-cpu does for two or more images); each as
images/s at batch 1, 64 and 256 and as a fraction of the fp32 matmul bound. The weights are a
freshly initialised G with BN folded: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import torch

from benchmarks.flops import generator_flops, matmul_gflops
from benchmarks.harness import time_calls
from benchmarks.machine import describe
from export.fold import fold_generator
from export.onnx_graph import build_onnx
from export.quantize import build_int8_onnx
from export.recalibrate import recalibrate_bn
from runtime.backends import physical_cores
from runtime.files import atomic_write_text
from train.config import ModelConfig
from train.models import build_models


def session(model_bytes: bytes, threads: int, level, arena: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = level
    opts.enable_cpu_mem_arena = arena
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def sharded(sess: ort.InferenceSession, pool: ThreadPoolExecutor, cores: int):
    """Run one slice of the batch per core at once (single images run whole)."""
    def run(z):
        futures = [pool.submit(sess.run, ["images"], {"z": s})
                   for s in np.array_split(z, min(len(z), cores))]
        return np.concatenate([f.result()[0] for f in futures])
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--out", default=None, help="write a markdown table here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    torch.manual_seed(0)
    cfg = ModelConfig(ngf=args.ngf)
    g = recalibrate_bn(build_models(cfg)[0], 4, 64)
    layers = fold_generator(g)
    models = {layout: build_onnx(layers, cfg, "fp32", layout=layout).SerializeToString()
              for layout in ("convtranspose", "subpixel")}
    models["int8"] = build_int8_onnx(layers, cfg).SerializeToString()
    cores = physical_cores()
    levels = ort.GraphOptimizationLevel
    all_opt, extended, basic = levels.ORT_ENABLE_ALL, levels.ORT_ENABLE_EXTENDED, levels.ORT_ENABLE_BASIC
    # (name, layout, intra-op threads, optimization level, arena, one slice per core)
    variants = [
        ("ConvTranspose, defaults (all optimizations, arena, threads = cores)", "convtranspose",
         cores, all_opt, True, False),
        ("ConvTranspose, one slice per core on 1-thread sessions (runtime ort-cpu, batch >= 2)",
         "convtranspose", 1, all_opt, True, True),
        ("ConvTranspose, 1 thread", "convtranspose", 1, all_opt, True, False),
        ("ConvTranspose, extended optimizations (no layout transforms)", "convtranspose", cores,
         extended, True, False),
        ("ConvTranspose, basic optimizations only", "convtranspose", cores, basic, True, False),
        ("ConvTranspose, no memory arena", "convtranspose", cores, all_opt, False, False),
        ("sub-pixel Conv + DepthToSpace", "subpixel", cores, all_opt, True, False),
        ("sub-pixel, extended optimizations", "subpixel", cores, extended, True, False),
        ("sub-pixel, basic optimizations only", "subpixel", cores, basic, True, False),
        ("sub-pixel, 1 thread", "subpixel", 1, all_opt, True, False),
        ("sub-pixel, one slice per core on 1-thread sessions", "subpixel", 1, all_opt, True, True),
        ("int8 sub-pixel (QDQ), threads = cores", "int8", cores, all_opt, True, False),
        ("int8 sub-pixel (QDQ), one slice per core on 1-thread sessions (runtime ort-cpu int8)",
         "int8", 1, all_opt, True, True),
    ]
    gflops = matmul_gflops()
    bound = gflops / (generator_flops(cfg) / 1e9)
    z_all = np.random.default_rng(0).standard_normal((max(batches), cfg.nz)).astype(np.float32)
    header = ["variant"] + [f"batch {b}" for b in batches]
    lines = []
    pool = ThreadPoolExecutor(cores)
    for name, layout, threads, level, arena, per_core in variants:
        sess = session(models[layout], threads, level, arena)
        run = sharded(sess, pool, cores) if per_core else (lambda x, s=sess: s.run(["images"], {"z": x}))
        cells = [name]
        for b in batches:
            z = z_all[:b]
            t = time_calls(run, z, 2, 3, args.min_seconds)
            rate = b / np.median(t)
            cells.append(f"{rate:.0f} img/s ({rate / bound:.0%})")
            print(f"{name:70s} batch {b:4d}: {rate:8.1f} images/s = {rate / bound:.0%} of bound",
                  flush=True)
        lines.append(cells)
    m = describe()
    text = (f"ONNX Runtime CPU options, ngf={args.ngf}: {m['cpu']}, {m['cores']} cores, "
            f"onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d')}. fp32 matmul "
            f"{gflops:.1f} GFLOP/s -> bound {bound:.0f} images/s "
            f"({generator_flops(cfg) / 1e9:.4f} GFLOP/image).\n\n"
            "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
            + "\n".join("| " + " | ".join(c) + " |" for c in lines) + "\n")
    print(text)
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
