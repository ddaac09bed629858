"""The int8 ONNX model: sub-pixel convolutions quantized by ONNX Runtime's static quantizer.

ONNX Runtime's CPU provider has no int8 ConvTranspose, so the int8 model starts from the
sub-pixel layout (each stride-2 ConvTranspose written as Conv + DepthToSpace) and quantizes its
Convs in QDQ form: weights int8 per output channel, activations uint8 per tensor, which the CPU
provider fuses into QLinearConv. Calibration needs no data set: a generator's inputs are its
latents, so the activation ranges come from latents of the model's own distribution.

Kept in fp32: the first layer (a ConvTranspose on a 1x1 input, under 1 % of the FLOPs) and the
output layer, whose error would land on the pixels undiluted. Weights use 7 bits
(`reduce_range`): x86 CPUs without VNNI multiply uint8 x int8 with VPMADDUBSW, which can saturate
at 8 bits; at 7 they cannot saturate.

On a trained paper-width model the error (mean 1.6 uint8 levels, max 21) comes from rounding
the activations, not the weights. Measured and not kept: 8-bit weights, percentile or entropy
calibration, square-root equalization of channel ranges across layers and keeping a third layer
in fp32 each moved the mean by under 10 %; 32 calibration batches instead of 8 made it 23 %
worse (MinMax ranges widen with more samples).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from export.fold import FoldedLayer
from export.onnx_graph import build_onnx
from runtime.latents import latents
from train.config import ModelConfig

CALIBRATION_SEED = 1977  # distinct from the verification and benchmark seeds
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH = 64


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs on the root logger: per-bias notes and advice to pre-process models
    for shape inference, which our graph (static shapes but the batch) does not need."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def fp32_layer_plans(n_layers: int) -> list[tuple[int, ...]]:
    """The hidden layers kept in fp32, plan by plan, until one meets the tolerance: none first,
    then widening from the output end, where activation rounding reaches the pixels least
    diluted (layer 0 and the output layer are never quantized)."""
    hidden = list(range(n_layers - 2, 0, -1))  # the stride-2 hidden layers, output end first
    return [tuple(hidden[:k]) for k in range(len(hidden))]


def build_int8_onnx(layers: list[FoldedLayer], cfg: ModelConfig, metadata: dict | None = None,
                    calibration_batches: int = CALIBRATION_BATCHES,
                    fp32_layers: tuple[int, ...] = ()) -> onnx.ModelProto:
    """The int8 ONNX model for folded `layers`: same inputs, outputs and postprocessing.
    `fp32_layers` are hidden layers (indices into `layers`) left unquantized as well."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    meta = {**(metadata or {}), "calibration": f"{calibration_batches}x{CALIBRATION_BATCH} latents, "
                                               f"seed {CALIBRATION_SEED}",
            "fp32_layers": ",".join(str(i) for i in sorted({0, len(layers) - 1, *fp32_layers}))}
    model = build_onnx(layers, cfg, "fp32", meta, layout="subpixel")
    last = len(layers) - 1
    keep = (last, *fp32_layers)
    keep_fp32 = [n.name for n in model.graph.node if any(n.name.startswith(f"deconv{i}.") for i in keep)]

    class Latents(CalibrationDataReader):
        def __init__(self):
            self.batches = (latents(CALIBRATION_SEED, i * CALIBRATION_BATCH, CALIBRATION_BATCH,
                                    cfg.nz, cfg.latent) for i in range(calibration_batches))

        def get_next(self) -> dict[str, np.ndarray] | None:
            z = next(self.batches, None)
            return None if z is None else {model.graph.input[0].name: z}

    with tempfile.TemporaryDirectory(prefix="dcgan-int8-") as tmp:
        source, path = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        onnx.save(model, source)  # from a file: the quantizer rewrites a ModelProto it is given
        with _quiet_root_logger():
            quantize_static(source, path, Latents(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "Relu", "Concat", "DepthToSpace"],
                            nodes_to_exclude=keep_fp32)
        quantized = onnx.load(path)
    props = {p.key: p.value for p in model.metadata_props} | {"precision": "int8"}
    del quantized.metadata_props[:]
    helper.set_model_props(quantized, props)
    quantized.producer_name = model.producer_name
    onnx.checker.check_model(quantized, full_check=True)
    return quantized
