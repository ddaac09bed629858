"""What TensorRT's ONNX parser accepts, checked on our graphs here, where TensorRT cannot run.

From onnx-tensorrt's docs/operators.md and TensorRT's documentation: UINT8 is allowed only as a
network input or output (no layer, Transpose included, takes a UINT8 tensor), so the Cast to
uint8 must be the node that produces the graph output; every op must be one the parser
supports with the types we use; and every shape is static except the batch axis, which an
optimization profile covers. Every model file that TensorRT or Triton's TensorRT backend may
read (the fp32 and fp16 ONNX) passes this check at export.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from export.errors import ExportError

# Ops our graphs use, all in onnx-tensorrt's supported list for FLOAT/FLOAT16.
SUPPORTED_OPS = {"Reshape", "ConvTranspose", "Conv", "Relu", "Tanh", "Concat", "DepthToSpace",
                 "Identity", "Cast", "Add", "Mul", "Clip", "Round", "Transpose"}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16}


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Every way `model` breaks the parser's documented constraints (empty when it is fine)."""
    graph = model.graph
    problems = []
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type not in SUPPORTED_OPS:
            problems.append(f"op {node.op_type} ({node.name or node.output[0]}) is not in the set "
                            "checked against TensorRT's parser")
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to == TensorProto.UINT8 and not set(node.output) <= outputs:
                problems.append(f"Cast to UINT8 ({node.output[0]}) feeds another layer; UINT8 is "
                                "allowed only as a network output")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.output,
                                                  *inferred.graph.input)}
    for name, tensor in types.items():
        if tensor.elem_type == TensorProto.UINT8 and name not in outputs:
            problems.append(f"tensor {name} is UINT8 inside the network")
        if name not in outputs and tensor.elem_type not in FLOAT_TYPES | {TensorProto.INT64}:
            problems.append(f"tensor {name} has element type "
                            f"{TensorProto.DataType.Name(tensor.elem_type)}")
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if dynamic != [0]:
            problems.append(f"{value.name}: only the batch axis (0) may be dynamic, got dynamic "
                            f"axes {dynamic}")
    return problems


def check_tensorrt_parseable(model: onnx.ModelProto, what: str) -> None:
    problems = tensorrt_problems(model)
    if problems:
        raise ExportError(f"{what} would not parse in TensorRT: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + " — this is a bug in dcgan-export; please report it")
