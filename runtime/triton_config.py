"""Triton's ModelConfig for the generator: one owner for the repository's config.pbtxt (export)
and the `/v2/models/{name}/config` answer (dcgan-serve), so the two never disagree.

`model_config` returns the config as Triton's JSON form (the dict its HTTP endpoint answers);
`to_pbtxt` writes the same dict as protobuf text format. Dims leave out the batch axis;
dynamic batching is on with no queue delay and no preferred batch size (export/triton.py says why).
"""

from __future__ import annotations

from runtime.manifest import INPUT_NAME, OUTPUT_NAME


def model_config(name: str, platform: str, nz: int, image_size: int, channels: int,
                 max_batch: int) -> dict:
    """Triton's ModelConfig (JSON form) of a generator: z FP32 [nz] -> images UINT8 [H, W, C]."""
    return {
        "name": name,
        "platform": platform,
        "max_batch_size": max_batch,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": [nz]}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_UINT8",
                    "dims": [image_size, image_size, channels]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
        "instance_group": [{"count": 1,
                            "kind": "KIND_GPU" if platform == "tensorrt_plan" else "KIND_AUTO"}],
    }


def to_pbtxt(config: dict) -> str:
    """`config` in protobuf text format (config.pbtxt): strings quoted, enums (TYPE_*, KIND_*)
    bare, lists of messages as `field [ {...} ]`."""
    return "".join(_fields(config, 0))


def _fields(message: dict, depth: int):
    pad = "  " * depth
    for key, value in message.items():
        if isinstance(value, dict):
            yield f"{pad}{key} {{\n"
            yield from _fields(value, depth + 1)
            yield f"{pad}}}\n"
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield f"{pad}{key} [\n"
            for i, item in enumerate(value):
                yield f"{pad}  {{\n"
                yield from _fields(item, depth + 2)
                yield f"{pad}  }}{',' if i < len(value) - 1 else ''}\n"
            yield f"{pad}]\n"
        elif isinstance(value, list):
            yield f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]\n"
        else:
            yield f"{pad}{key}: {_scalar(value)}\n"


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not (value.startswith(("TYPE_", "KIND_")) and value.isupper()):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
