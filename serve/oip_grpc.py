"""The Open Inference Protocol over gRPC: Triton's `GRPCInferenceService`, as `tritonclient.grpc`
speaks it, on grpcio's asyncio server, over the same OipModel and batcher as REST.

Where the message classes come from: tritonclient's own generated modules (`service_pb2`,
`service_pb2_grpc`, `model_config_pb2`; tritonclient[grpc] is in the `serve` extra). They are
the wire contract the clients were built from, so server and client cannot drift apart; the
package is 1 MB and pure Python. Generating our own from Triton's .proto files with grpcio-tools
would mean vendoring the protos, a code-generation step in the build, and a generated copy to
keep in step with every client release, for the same bytes on the wire.

Served: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig,
ModelInfer (z through `raw_input_contents` or `contents.fp32_contents`; seed-addressed through
the parameters seed, start, n: int64_param, or string_param for values above 2**63 - 1). The
other methods answer UNIMPLEMENTED. Errors map HTTP statuses to gRPC codes (400 INVALID_ARGUMENT,
404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED). A client that cancels or disconnects
cancels its handler, and so its queued pieces in the batcher. The server runs its own event loop
in a thread of its own, so uvicorn's loop and grpcio's never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from runtime.batcher import BatcherClosed, DeadlineExceeded, Overloaded
from runtime.errors import DcganError
from serve.checks import BadRequest
from serve.oip import SERVER
from serve.oip_model import VERSION, OipModel, Tensor, decode_list, decode_raw
from serve.security import digest, key_matches

log = logging.getLogger("dcgan-serve")
CODES = {404: grpc.StatusCode.NOT_FOUND, 401: grpc.StatusCode.UNAUTHENTICATED}
_PARAMETER = "parameter_choice"  # the oneof of InferParameter


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over one OipModel; `is_ready()` as REST's readiness."""

    def __init__(self, model: OipModel, is_ready, keys: tuple[str, ...] = ()):
        self.model, self.is_ready = model, is_ready
        self.digests = tuple(digest(k) for k in keys)

    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=self.is_ready())

    async def ModelReady(self, request, context):
        try:
            self.model.check(request.name, request.version)
        except BadRequest:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=self.is_ready())

    async def ServerMetadata(self, request, context):
        return await self._answer(context, lambda: service_pb2.ServerMetadataResponse(**SERVER))

    async def ModelMetadata(self, request, context):
        def metadata():
            self.model.check(request.name, request.version)
            meta = self.model.metadata()
            tensors = {k: [service_pb2.ModelMetadataResponse.TensorMetadata(**t) for t in meta[k]]
                       for k in ("inputs", "outputs")}
            return service_pb2.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"], **tensors)
        return await self._answer(context, metadata)

    async def ModelConfig(self, request, context):
        def config():
            self.model.check(request.name, request.version)
            message = json_format.ParseDict(self.model.config(), model_config_pb2.ModelConfig())
            return service_pb2.ModelConfigResponse(config=message)
        return await self._answer(context, config)

    async def ModelInfer(self, request, context):
        async def infer():
            self.model.check(request.model_name, request.model_version)
            work = self.model.work(_inputs(self.model, request),
                                   {k: _value(p) for k, p in request.parameters.items()})
            self.model.check_outputs([o.name for o in request.outputs])
            images = await asyncio.wrap_future(work.submit(self.model.batcher))
            out = service_pb2.ModelInferResponse.InferOutputTensor(
                name=self.model.output_name, datatype="UINT8", shape=list(images.shape))
            return service_pb2.ModelInferResponse(
                model_name=request.model_name, model_version=VERSION, id=request.id,
                outputs=[out], raw_output_contents=[images.tobytes()])
        return await self._answer(context, infer)

    async def _answer(self, context, make):
        """`make()` (a function, or an async one), with the key checked and errors as codes."""
        try:
            self._check_key(context)
            result = make()
            return await result if asyncio.iscoroutine(result) else result
        except BadRequest as e:
            code = CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, str(e))
        except ValueError as e:  # the batcher's checks (NaN in z, more than the queue holds)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except (Overloaded, BatcherClosed) as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        except DeadlineExceeded as e:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(e))
        except DcganError as e:
            await context.abort(grpc.StatusCode.INTERNAL, str(e))

    def _check_key(self, context) -> None:
        if not self.digests:
            return
        given = None
        for name, value in context.invocation_metadata() or ():
            if name == "x-api-key":
                given = value
            elif name == "authorization" and value[:7].lower() == "bearer ":
                given = value[7:]
        if not key_matches(given.strip().encode() if given else None, self.digests):
            raise BadRequest("a valid API key is required — send the metadata authorization: "
                             "Bearer <key> or x-api-key: <key>", 401)


def _value(parameter):
    """An InferParameter's value (int64, uint64, string, bool or double)."""
    choice = parameter.WhichOneof(_PARAMETER)
    return None if choice is None else getattr(parameter, choice)


def _inputs(model: OipModel, request) -> list[Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(request.inputs)} inputs but {len(raw)} raw_input_contents")
    tensors = []
    for i, inp in enumerate(request.inputs):
        shape = model.check_shape(inp.name, inp.datatype, list(inp.shape))
        if raw:
            data = decode_raw(inp.name, inp.datatype, shape, raw[i])
        else:
            data = decode_list(inp.name, inp.datatype, shape,
                               np.asarray(inp.contents.fp32_contents, np.float32))
        tensors.append(Tensor(inp.name, inp.datatype, shape, data))
    return tensors


class GrpcServer:
    """The gRPC server, on its own event loop in its own thread: `start()` returns once it
    listens (or raises DcganError with one line), `stop(grace_s)` lets calls in flight finish."""

    def __init__(self, model: OipModel, is_ready, address: str, keys: tuple[str, ...] = ()):
        self.servicer = Servicer(model, is_ready, keys)
        self.address = address
        limit = 64 * 1024 + model.max_images * max(model.nz * 4, int(np.prod(model.image_shape)))
        self.options = [("grpc.max_receive_message_length", limit),
                        ("grpc.max_send_message_length", limit),
                        ("grpc.so_reuseport", 0)]  # a port in use is an error, not shared
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc", daemon=True)
        self._grace = 5.0

    def start(self) -> GrpcServer:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise DcganError(f"cannot serve gRPC on {self.address} ({self._error}) — the port may "
                             "be in use; pick another --grpc-port") from None
        log.info("gRPC (Open Inference Protocol) on %s", self.address)
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._grace = grace_s
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(grace_s + 5)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = grpc.aio.server(migration_thread_pool=ThreadPoolExecutor(1), options=self.options)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        try:
            self.port = server.add_insecure_port(self.address)
            if not self.port:
                raise RuntimeError("bind failed")
            await server.start()
        except Exception as e:  # noqa: BLE001 - reported to start(), in the caller's thread
            self._error = e
            self._started.set()
            return
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await server.stop(self._grace)
