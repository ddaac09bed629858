"""The model as the Open Inference Protocol sees it, shared by REST (serve/oip.py) and gRPC
(serve/oip_grpc.py): its metadata, its Triton ModelConfig, and what an inference request asks for.

Model `dcgan`, version `1`. Two kinds of request, in the same batches:

- latents: input `z`, FP32 `[N, nz]` (any latents: walks, arithmetic, a user's own sampler);
- seed-addressed: no inputs, and request parameters `seed` (required), `start` (default 0) and
  `n` (default 1): images start .. start+n-1 of that seed, exactly the pixels `dcgan-generate
  --seed S --start I -n N` writes. Parameters are used rather than INT64 input tensors because
  a seed and an index run up to 2**128 - 1: a JSON number or a canonical decimal string holds
  that, an INT64 tensor cannot (a gRPC int64_param holds up to 2**63 - 1; larger: string_param).

Output `images`, UINT8 `[N, H, W, C]`. N is at most the service's `--max-images-per-request`,
which is also the config's `max_batch_size` (the most one request may hold; the batcher splits
a request into backend calls of its own `--max-batch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime.batcher import Batcher
from runtime.latents import MAX_INDEX, MAX_SEED
from runtime.triton_config import model_config
from serve.checks import BadRequest, canonical_int

MODEL, VERSION = "dcgan", "1"
SEED_PARAMETERS = ("seed", "start", "n")
# datatypes a client may send, with their numpy types: only z's FP32 is accepted, but a known
# datatype of the wrong kind gets "wrong datatype", not "unknown datatype"
DATATYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
             "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
             "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
PLATFORMS = {"trt": "tensorrt_plan"}  # the rest serve an ONNX model


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: name, datatype, shape and its values (already checked to hold
    exactly prod(shape) elements)."""
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True)
class Work:
    """What a request asks the batcher for: latents z, or (seed, start, n)."""
    z: np.ndarray | None = None
    seed: int = 0
    start: int = 0
    n: int = 0

    def submit(self, batcher: Batcher):
        if self.z is not None:
            return batcher.submit_latents(self.z)
        return batcher.submit(self.seed, self.start, self.n)


class OipModel:
    """The served model's protocol facts, and the checks every inference request passes before
    it reaches the batcher."""

    def __init__(self, batcher: Batcher, max_images: int):
        gen = batcher.generator
        m = gen.manifest
        self.batcher, self.max_images = batcher, max_images
        self.nz, self.image_shape = m.nz, (m.image_size, m.image_size, m.channels)
        self.platform = PLATFORMS.get(gen.backend_name, "onnxruntime_onnx")
        self.input_name, self.output_name = m.input_name, m.output_name

    def check(self, name: str, version: str | None) -> None:
        """404 (as BadRequest) unless `name`/`version` is the model served."""
        if name != MODEL:
            raise BadRequest(f"unknown model {name[:100]!r} — this server serves {MODEL!r}", 404)
        if version not in (None, "", VERSION):
            raise BadRequest(f"unknown version {version[:100]!r} of {MODEL!r} — the only version "
                             f"is {VERSION!r}", 404)

    def metadata(self) -> dict:
        return {"name": MODEL, "versions": [VERSION], "platform": self.platform,
                "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, self.nz]}],
                "outputs": [{"name": self.output_name, "datatype": "UINT8",
                             "shape": [-1, *self.image_shape]}]}

    def config(self) -> dict:
        """Triton's ModelConfig: the content of the config.pbtxt that `dcgan-export --format
        triton` writes (runtime/triton_config.py), with max_batch_size this service's per-request
        limit."""
        size, _, channels = self.image_shape
        return model_config(MODEL, self.platform, self.nz, size, channels, self.max_images)

    def check_shape(self, name: str, datatype: str, shape) -> tuple[int, ...]:
        """A declared tensor's shape, checked before any of its data is decoded."""
        if name != self.input_name:
            raise BadRequest(f"unknown input {name[:100]!r} — the model takes "
                             f"{self.input_name!r} FP32 [N, {self.nz}] (or no inputs and the "
                             "parameters seed, start, n)")
        if datatype not in DATATYPES:
            raise BadRequest(f"unknown datatype {datatype[:20]!r} for input {name!r}")
        if datatype != "FP32":
            raise BadRequest(f"input {name!r} must be FP32, got {datatype}")
        if (not isinstance(shape, (list, tuple)) or len(shape) != 2
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
                or shape[1] != self.nz or not 1 <= shape[0]):
            raise BadRequest(f"input {name!r} must have shape [N, {self.nz}] with N >= 1, "
                             f"got {str(shape)[:100]}")
        if shape[0] > self.max_images:
            raise BadRequest(f"N = {shape[0]} is above the limit of {self.max_images} images per "
                             "request — split the request")
        return tuple(shape)

    def work(self, inputs: list[Tensor], parameters: dict) -> Work:
        """The batcher work of a request whose inputs are decoded and whose parameters are plain
        values (JSON's, or gRPC's InferParameter read out)."""
        seed_params = [k for k in SEED_PARAMETERS if k in parameters]
        if inputs and seed_params:
            raise BadRequest(f"a request holds either input {self.input_name!r} or the parameters "
                             f"seed, start, n — got both ({', '.join(seed_params)})")
        if len(inputs) > 1:
            raise BadRequest(f"one input expected ({self.input_name!r}), got {len(inputs)}")
        if inputs:
            return Work(z=inputs[0].data.reshape(inputs[0].shape))
        if "seed" not in parameters:
            raise BadRequest(f"no input: send {self.input_name!r} FP32 [N, {self.nz}], or the "
                             "parameters seed (and start, n) for seed-addressed images")
        n = canonical_int(parameters.get("n", 1), "n", 1, self.max_images)
        start = canonical_int(parameters.get("start", 0), "start", 0, MAX_INDEX - n + 1)
        return Work(seed=canonical_int(parameters["seed"], "seed", 0, MAX_SEED), start=start, n=n)

    def check_outputs(self, names: list[str]) -> None:
        for name in names:
            if name != self.output_name:
                raise BadRequest(f"unknown output {str(name)[:100]!r} — the model has "
                                 f"{self.output_name!r}")


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> np.ndarray:
    """A tensor's values from its little-endian raw bytes, which must hold exactly
    prod(shape) elements."""
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(f"input {name!r} {datatype} {list(shape)} needs {expected} bytes of "
                         f"data, got {len(raw)}")
    return np.frombuffer(raw, dtype)


def decode_list(name: str, datatype: str, shape: tuple[int, ...], data) -> np.ndarray:
    """A tensor's values from JSON `data`: flat or nested lists of numbers, prod(shape) in all."""
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):  # ragged lists
        values = None
    if values is None or values.dtype.kind not in "iuf":  # strings, booleans, objects
        raise BadRequest(f"input {name!r} data must be a (nested) list of numbers")
    if values.size != int(np.prod(shape)):
        raise BadRequest(f"input {name!r} has shape {list(shape)} ({int(np.prod(shape))} values) "
                         f"but its data holds {values.size}")
    return values.ravel()
