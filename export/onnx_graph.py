"""Write the folded generator as an ONNX graph, node by node.

z (N, nz) float32 -> Reshape (N, nz, 1, 1) -> 4 x [ConvTranspose + Relu] -> ConvTranspose + Tanh
-> uint8 postprocessing in the graph: round(clip((x + 1) * 127.5, 0, 255)), NHWC -> images.

Building the graph ourselves (rather than tracing) keeps it exactly what we verify: the folded
weights as written, named tensors, one dynamic batch axis, and no exporter-specific rewrites.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.fold import FoldedLayer
from runtime.manifest import INPUT_NAME, OUTPUT_NAME
from train.config import ModelConfig

OPSET = 17
FLOAT_OUTPUT = "pixels"  # Tanh output (N, nc, 64, 64) float32; exposed only for verification
FLOAT_PRECISIONS = ("fp32", "fp16")  # what build_onnx writes; int8 comes from export/quantize.py
# How a stride-2 ConvTranspose2d (k4, p1) is written: as itself, or as sub-pixel convolutions
# plus DepthToSpace, which lets ONNX Runtime's CPU provider use its blocked direct-convolution
# kernels instead of GEMM + col2im (benchmarks/results/ort_cpu_options.md records what each gives).
LAYOUTS = ("convtranspose", "subpixel")
# Output row parity a of a k4 s2 p1 transposed conv reads input rows (m-1, m) for a=0 with kernel
# rows (3, 1), and rows (m, m+1) for a=1 with kernel rows (2, 0); columns likewise.
_TAPS = {0: [3, 1], 1: [2, 0]}
_PADS = {0: (1, 0), 1: (0, 1)}  # (before, after) padding of the input for each parity


def subpixel_kernels(weight: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
    """The four 2x2 correlation kernels (Cout, Cin, 2, 2) and ONNX pads of a k4 s2 p1
    ConvTranspose weight (Cin, Cout, 4, 4), in DepthToSpace DCR order (a, b) = 00, 01, 10, 11."""
    out = []
    for a in (0, 1):
        for b in (0, 1):
            k = weight[:, :, _TAPS[a], :][:, :, :, _TAPS[b]]  # (Cin, Cout, 2, 2)
            (top, bottom), (left, right) = _PADS[a], _PADS[b]
            out.append((np.ascontiguousarray(k.transpose(1, 0, 2, 3)), [top, left, bottom, right]))
    return out


def build_onnx(layers: list[FoldedLayer], cfg: ModelConfig, precision: str = "fp32",
               metadata: dict | None = None, layout: str = "convtranspose") -> onnx.ModelProto:
    """The ONNX model for folded `layers`. fp16: weights and compute fp16, I/O stay fp32."""
    if precision not in FLOAT_PRECISIONS:
        raise ValueError(f"precision must be one of {FLOAT_PRECISIONS}, got {precision!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    wtype = np.float16 if precision == "fp16" else np.float32
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    nodes.append(helper.make_node("Reshape", [INPUT_NAME, const("latent_shape", np.array(
        [-1, cfg.nz, 1, 1], np.int64))], ["z4"]))
    x = "z4"
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", [x], ["z4_fp16"], to=TensorProto.FLOAT16))
        x = "z4_fp16"
    for i, layer in enumerate(layers):
        p = layer.padding
        bias = const(f"deconv{i}.bias", layer.bias.astype(wtype))
        if layout == "subpixel" and (layer.stride, p) == (2, 1):
            phases = []
            for k, (kernel, pads) in enumerate(subpixel_kernels(layer.weight)):
                nodes.append(helper.make_node(
                    "Conv", [x, const(f"deconv{i}.phase{k}.weight", kernel.astype(wtype)), bias],
                    [f"deconv{i}.phase{k}"], kernel_shape=[2, 2], pads=pads,
                    name=f"deconv{i}.phase{k}"))
                phases.append(f"deconv{i}.phase{k}")
            nodes.append(helper.make_node("Concat", phases, [f"deconv{i}.phases"], axis=1,
                                          name=f"deconv{i}.concat"))
            nodes.append(helper.make_node("DepthToSpace", [f"deconv{i}.phases"], [f"deconv{i}"],
                                          blocksize=2, mode="DCR", name=f"deconv{i}.depth_to_space"))
        else:
            nodes.append(helper.make_node(
                "ConvTranspose",
                [x, const(f"deconv{i}.weight", layer.weight.astype(wtype)), bias],
                [f"deconv{i}"], kernel_shape=list(layer.weight.shape[2:]),
                strides=[layer.stride] * 2, pads=[p, p, p, p], name=f"deconv{i}"))
        act = "Relu" if layer.activation == "relu" else "Tanh"
        nodes.append(helper.make_node(act, [f"deconv{i}"], [f"act{i}"], name=f"deconv{i}.{act.lower()}"))
        x = f"act{i}"
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", [x], [FLOAT_OUTPUT], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", [x], [FLOAT_OUTPUT]))
    # (x + 1) * 127.5, clipped to [0, 255], rounded half-to-even, NCHW -> NHWC, uint8. The Cast
    # comes last: TensorRT takes UINT8 only as a network input or output, and none of its layers
    # (Transpose included) accepts a UINT8 tensor (export/trt_constraints.py checks this).
    nodes += [
        helper.make_node("Add", [FLOAT_OUTPUT, const("one", np.float32(1.0))], ["shifted"]),
        helper.make_node("Mul", ["shifted", const("half_range", np.float32(127.5))], ["scaled"]),
        helper.make_node("Clip", ["scaled", const("lo", np.float32(0.0)),
                                  const("hi", np.float32(255.0))], ["clipped"]),
        helper.make_node("Round", ["clipped"], ["rounded"]),
        helper.make_node("Transpose", ["rounded"], ["rounded_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["rounded_nhwc"], [OUTPUT_NAME], to=TensorProto.UINT8),
    ]
    size = cfg.image_size
    graph = helper.make_graph(
        nodes, "dcgan_generator",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", cfg.nz])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, ["N", size, size, cfg.nc])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dcgan-export")
    model.ir_version = 8  # readable by onnxruntime >= 1.14 and TensorRT 10's parser
    meta = {"nz": cfg.nz, "latent": cfg.latent, "image_size": size, "channels": cfg.nc,
            "precision": precision, "layout": layout, **(metadata or {})}
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def with_float_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that also outputs the float image (pixels, N x nc x 64 x 64)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nc, size = (out.graph.output[0].type.tensor_type.shape.dim[i].dim_value for i in (3, 1))
    out.graph.output.append(helper.make_tensor_value_info(
        FLOAT_OUTPUT, TensorProto.FLOAT, ["N", nc, size, size]))
    return out
