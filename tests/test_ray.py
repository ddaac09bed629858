"""Generation on Ray: dcgan-ray-generate's parts, retries and resume give the bytes one process
writes; the Ray Data source gives Generator's images; without the ray extra, one clear line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_TORCH

from runtime import Generator
from runtime.cli import app as generate_app
from runtime.cli_support import run_app

ROOT = Path(__file__).parents[1]
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")


@pytest.fixture(scope="module")
def ray_cluster():
    """A new local Ray cluster of 2 CPUs for the module (never one RAY_ADDRESS or `ray start`
    names); yields its address."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    # Ray waits 30 s for its GCS server by default; on a busy 2-core machine it starts slower
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "180")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _one_run(artifact, out: Path, argv: list) -> dict[str, bytes]:
    """What a single dcgan-generate process writes for `argv`, less its run record."""
    assert run_app(generate_app, [str(a) for a in [artifact, *argv, "--out", out]],
                   prog="dcgan-generate") == 0
    return _files(out)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != "manifest.json"}


def _record(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


FORMATS = {"png": [], "tar": ["--format", "tar", "--shard-size", "5"]}


@pytest.mark.slow
@needs_torch
@pytest.mark.parametrize("fmt", FORMATS)
def test_parts_merge_into_the_bytes_of_one_run(ray_cluster, tiny_artifact, tmp_path, fmt):
    from runtime.ray_generate import generate_on_ray

    options = ["--backend", "ort-cpu", "--batch-size", "4", *FORMATS[fmt]]
    run = generate_on_ray(tiny_artifact, tmp_path / "ray", 37, seed=3, start=2, parts=3,
                          options=options)
    assert [p.name for p in run.parts] == ["part-0-of-3", "part-1-of-3", "part-2-of-3"]
    assert all(_record(p)["status"] == "complete" for p in run.parts)
    once = _one_run(tiny_artifact, tmp_path / "once", ["-n", 37, "--seed", 3, "--start", 2, *options])
    assert _files(run.dataset) == once and len(once) == (37 if fmt == "png" else 8) + 1  # SHA256SUMS
    record = _record(run.dataset)
    assert [record[k] for k in ("status", "first_index", "count", "seed")] == ["complete", 2, 37, 3]
    assert len(record["parts"]) == 3


def _worker_writing(part: Path, images: int, deadline: float) -> int:
    """The pid of the Ray worker that writes `part`, once `images` of its files are there (the
    part's lock file names the process that holds it: here the worker itself)."""
    while time.time() < deadline:
        lock = part / ".dcgan.lock"
        if lock.exists() and len(list(part.glob("*.png"))) >= images:
            pid = int(lock.read_text().split()[0])
            assert Path(f"/proc/{pid}/cmdline").read_text().startswith("ray::"), "not a Ray worker"
            return pid
        time.sleep(0.005)
    raise AssertionError(f"{part} was not being written in time")


@pytest.mark.slow
@needs_torch
def test_a_worker_killed_mid_part_is_retried_and_the_bytes_are_the_same(ray_cluster, tiny_artifact,
                                                                       tmp_path):
    from runtime.ray_generate import generate_on_ray, part_dirs

    options = ["--backend", "ort-cpu", "--batch-size", "8"]
    out, result = tmp_path / "ray", {}
    work = threading.Thread(target=lambda: result.update(run=generate_on_ray(
        tiny_artifact, out, 6000, seed=1, parts=2, options=options, max_retries=2)))
    work.start()
    pid = _worker_writing(part_dirs(out, 2)[0], 20, time.time() + 120)
    os.kill(pid, signal.SIGKILL)
    work.join(timeout=300)
    run = result["run"]
    # the retry found the killed attempt's images and wrote only the rest
    retried = run.summaries[0]
    assert "were already there" in retried and not retried.startswith("0 images"), retried
    assert _files(run.dataset) == _one_run(tiny_artifact, tmp_path / "once", ["-n", 6000, "--seed", 1,
                                                                               *options])


def _ray_generate(argv: list, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.ray_generate", *map(str, argv)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **kwargs)


@pytest.mark.slow
@needs_torch
def test_an_interrupted_run_resumes_to_the_bytes_of_one_run(ray_cluster, tiny_artifact, tmp_path):
    """The driver is stopped with SIGINT mid-run (its tasks die with its job); the same command
    with --resume, against the cluster named by RAY_ADDRESS this time, finishes it."""
    out, generation = tmp_path / "ray", ["-n", 6000, "--seed", 8, "--backend", "ort-cpu",
                                         "--batch-size", 8, "--format", "tar", "--shard-size", 500]
    argv = [tiny_artifact, *generation, "--parts", 2, "--out", out]
    driver = _ray_generate([*argv, "--ray-address", ray_cluster])
    part = out / "parts" / "part-1-of-2"
    deadline = time.time() + 120
    while time.time() < deadline and not list(part.glob("*.tar")):
        time.sleep(0.01)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    assert not (out / "dataset").exists()
    assert _record(part)["status"] == "incomplete"
    for lock in out.glob("parts/*/.dcgan.lock"):  # the job's workers die with their driver
        _wait_gone(int(lock.read_text().split()[0]))

    again = _ray_generate(argv, env={"RAY_ADDRESS": ray_cluster})
    assert again.wait(timeout=300) == 1 and "pass --resume" in again.stderr.read()
    again = _ray_generate([*argv, "--resume"], env={"RAY_ADDRESS": ray_cluster})
    stdout, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "were already there" in stdout
    assert _files(out / "dataset") == _one_run(tiny_artifact, tmp_path / "once", generation)


def _wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")


@pytest.mark.slow
@needs_torch
def test_ray_data_rows_are_generators_images(ray_cluster, tiny_artifact):
    from runtime.ray_data import images_dataset

    ds = images_dataset(tiny_artifact, 50, seed=7, start=3, actors=2, batch_size=8, backend="ort-cpu")
    rows = sorted(ds.take_all(), key=lambda r: r["index"])
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        expected = gen.generate(50, seed=7, start=3)
    assert [r["index"] for r in rows] == list(range(3, 53))
    images = np.stack([r["image"] for r in rows])
    assert images.dtype == np.uint8 and images.shape == (50, 64, 64, 3)
    assert np.array_equal(images, expected)


def test_without_the_ray_extra_one_line_names_it(tmp_path):
    """With ray unimportable: `import runtime` and the Ray modules load, the command fails with
    one line naming the extra, and the Ray Data source raises the same message."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class NoRay(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("ray is blocked")
        sys.meta_path.insert(0, NoRay())
        import runtime, runtime.ray_data, runtime.ray_generate
        from runtime.errors import BackendUnavailable
        try:
            runtime.ray_data.images_dataset("art", 4)
        except BackendUnavailable as e:
            print("dataset:", e)
        sys.argv = ["dcgan-ray-generate", "art", "-n", "4", "--out", {str(tmp_path / "o")!r}]
        runtime.ray_generate.main()
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    line = "ray is not installed — pip install 'dcgan[ray]'"
    assert result.returncode == 1
    assert result.stderr == f"error: {line}\n"
    assert result.stdout == f"dataset: {line}\n"


def test_importing_the_runtime_loads_no_ray():
    code = ("import sys, runtime, runtime.cli, runtime.merge, runtime.ray_generate, runtime.ray_data; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "[]\n", result.stderr
