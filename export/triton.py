"""A Triton Inference Server model repository for the exported generator.

<repo>/<name>/config.pbtxt + 1/model.onnx (onnxruntime_onnx), and where an engine was built,
<repo>/<name>_trt/config.pbtxt + 1/model.plan (tensorrt_plan). Dims leave out the batch axis;
max_batch_size is the engine profile's max batch, and dynamic batching is on, set as Triton's
docs advise for a model with a single optimization profile: no preferred_batch_size (it is for
models whose batch sizes perform differently, e.g. several TensorRT profiles), and no queue
delay: dcgan-serve's load benchmark found batches fill by themselves under load with a delay of
0 (benchmarks/results/serve.md), and a delay only adds latency at low load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime.manifest import INPUT_NAME, OUTPUT_NAME


def model_config(name: str, platform: str, nz: int, image_size: int, channels: int,
                 max_batch: int) -> str:
    """config.pbtxt text (protobuf text format of Triton's ModelConfig)."""
    return f"""name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {nz} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ {image_size}, {image_size}, {channels} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 0
}}
instance_group [
  {{
    count: 1
    kind: {"KIND_GPU" if platform == "tensorrt_plan" else "KIND_AUTO"}
  }}
]
"""


def write_repository(repo: Path, name: str, onnx_path: Path, engine_path: Path | None, nz: int,
                     image_size: int, channels: int, max_batch: int) -> list[str]:
    """Write the repository under `repo` (inside the staging artifact); returns model names."""
    models = [(name, "onnxruntime_onnx", onnx_path, "model.onnx")]
    if engine_path is not None:
        models.append((f"{name}_trt", "tensorrt_plan", engine_path, "model.plan"))
    for model_name, platform, source, filename in models:
        (repo / model_name / "1").mkdir(parents=True)
        (repo / model_name / "config.pbtxt").write_text(
            model_config(model_name, platform, nz, image_size, channels, max_batch))
        shutil.copyfile(source, repo / model_name / "1" / filename)
    return [m[0] for m in models]
