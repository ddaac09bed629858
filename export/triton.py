"""A Triton Inference Server model repository for the exported generator.

<repo>/<name>/config.pbtxt + 1/model.onnx (onnxruntime_onnx), and where an engine was built,
<repo>/<name>_trt/config.pbtxt + 1/model.plan (tensorrt_plan). Dims leave out the batch axis;
max_batch_size is the engine profile's max batch, and dynamic batching is on, set as Triton's
docs advise for a model with a single optimization profile: no preferred_batch_size (it is for
models whose batch sizes perform differently, e.g. several TensorRT profiles), and no queue
delay: dcgan-serve's load benchmark found batches fill by themselves under load with a delay of
0 (benchmarks/results/serve.md), and a delay only adds latency at low load. The config's content
has one owner, runtime/triton_config.py, which dcgan-serve's `/v2/models/{name}/config` answers too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime.triton_config import model_config, to_pbtxt


def write_repository(repo: Path, name: str, onnx_path: Path, engine_path: Path | None, nz: int,
                     image_size: int, channels: int, max_batch: int) -> list[str]:
    """Write the repository under `repo` (inside the staging artifact); returns model names."""
    models = [(name, "onnxruntime_onnx", onnx_path, "model.onnx")]
    if engine_path is not None:
        models.append((f"{name}_trt", "tensorrt_plan", engine_path, "model.plan"))
    for model_name, platform, source, filename in models:
        (repo / model_name / "1").mkdir(parents=True)
        (repo / model_name / "config.pbtxt").write_text(
            to_pbtxt(model_config(model_name, platform, nz, image_size, channels, max_batch)))
        shutil.copyfile(source, repo / model_name / "1" / filename)
    return [m[0] for m in models]
