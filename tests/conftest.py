"""Shared fixtures: a tiny trained run (ngf=8) that export, runtime and benchmark tests build on."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
# Set by `make test GPU=...`: on a machine whose GPU stack was just installed, a gpu/trt test
# that would skip is a failure (the stack cannot use the GPU), not a skip.
REQUIRE_GPU = os.environ.get("DCGAN_REQUIRE_GPU") == "1"
ROOT = Path(__file__).parents[1]


def pytest_collection_modifyitems(config, items):
    """With DCGAN_REQUIRE_GPU=1, a gpu/trt test whose skip condition holds fails, with the reason."""
    if not REQUIRE_GPU:
        return
    for item in items:
        if not (item.get_closest_marker("gpu") or item.get_closest_marker("trt")):
            continue
        reasons = [m.kwargs.get("reason", "") for m in item.iter_markers("skipif") if m.args and m.args[0]]
        if reasons:
            item.own_markers = [m for m in item.own_markers if m.name != "skipif"]
            item.gpu_unusable = "; ".join(reasons)


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory):
    """The data cache (shapes renders, decoded folders) of this session only, for every test and
    the processes they start: nothing read from or left in the user's ~/.cache/dcgan."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _gpu_required(request):
    reason = getattr(request.node, "gpu_unusable", None)
    if reason:
        pytest.fail(f"DCGAN_REQUIRE_GPU=1, but this GPU test cannot run: {reason}")


def disk_full_at(monkeypatch, call: int) -> None:
    """Make the image encoder of runtime.writer raise ENOSPC on its `call`-th image."""
    import runtime.writer

    real, calls = runtime.writer.encode_image, {"n": 0}

    def failing(image, fmt):
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError(28, "No space left on device")
        return real(image, fmt)

    monkeypatch.setattr(runtime.writer, "encode_image", failing)


def tiny_train(out: Path, steps: int = 4, resume: bool = False, overwrite: bool = False,
               **overrides):
    """Train a tiny model on shapes for a few steps; returns the TrainResult."""
    from train.config import ModelConfig, TrainConfig
    from train.loop import train

    model_keys = {"nz", "ngf", "ndf", "nc", "latent"}
    model = ModelConfig(**{"nz": 16, "ngf": 8, "ndf": 8,
                           **{k: v for k, v in overrides.items() if k in model_keys}})
    cfg = TrainConfig(**{"data": "shapes:256", "out": str(out), "steps": steps, "batch_size": 16,
                         "workers": 0, "log_every": 1, "save_every": 2,
                         # scored only where a test asks (--quality-every is 500 for users), on few samples
                         "quality_every": 0, "quality_samples": 32,
                         **{k: v for k, v in overrides.items() if k not in model_keys}})
    return train(cfg, model, resume=resume, overwrite=overwrite)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run directory holding checkpoints/last.pt of a tiny model (nz=16, ngf=ndf=8)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    tiny_train(out, steps=6)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def gen(tiny_artifact):
    """The tiny artifact loaded on ort-cpu, one per test module."""
    from runtime import Generator

    with Generator.load(tiny_artifact, backend="ort-cpu") as g:
        yield g


RECALIBRATION_BATCHES = 5  # the tiny artifact's BN recalibration (6 steps leave stale stats)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_checkpoint, tmp_path_factory) -> Path:
    """An ONNX artifact of the tiny checkpoint (verified on the way by the export stage)."""
    from export.artifact import ExportOptions, export_artifact

    out = tmp_path_factory.mktemp("art") / "tiny"
    export_artifact(tiny_checkpoint, out, ExportOptions(format="onnx",
                                                        recalibrate_batches=RECALIBRATION_BATCHES))
    return out


@pytest.fixture(scope="session")
def web_artifact(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint's artifact with its browser page (web/); needs `make ort-web`."""
    from export.artifact import ExportOptions, export_artifact
    from export.web import ort_web_missing

    if why := ort_web_missing():
        pytest.skip(why)
    out = tmp_path_factory.mktemp("art") / "web"
    export_artifact(tiny_checkpoint, out, ExportOptions(format="web",
                                                        recalibrate_batches=RECALIBRATION_BATCHES))
    return out


def reference_images(checkpoint: Path, z, recalibrate_batches: int = RECALIBRATION_BATCHES):
    """uint8 NHWC images and float NCHW output of the PyTorch reference (G in eval mode, fp32,
    BN unfolded, with the same recalibration as the export) for latents z."""
    import torch

    from export.load import load_for_export
    from runtime.images import to_uint8
    from train.recalibrate import recalibrate_bn

    g = load_for_export(checkpoint).generator
    if recalibrate_batches:
        recalibrate_bn(g, recalibrate_batches, 64, seed=0)
    with torch.no_grad():
        x = g.eval()(torch.from_numpy(z)).numpy()
    return to_uint8(x).transpose(0, 2, 3, 1), x


# -- helpers of the reliability tests -------------------------------------------------------

def copy_artifact(artifact: Path, to: Path) -> Path:
    shutil.copytree(artifact, to)
    return to


def edit_manifest(artifact: Path, edit) -> None:
    path = artifact / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def start_process(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.02)
    assert predicate(), "timed out"


def run_coroutine(run, coro):
    """`run(coro)` (asyncio.run or the like) in a thread of its own: the main thread may already
    run an event loop left by another test's library (a Playwright or gRPC fixture), and
    asyncio.run refuses to start inside one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run, coro).result()
