"""The Open Inference Protocol (KServe v2, as Triton speaks it) over HTTP/REST, with Triton's
binary tensor extension, on the same app and batcher as /v1.

    GET  /v2                                      server metadata (extensions incl. binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready        200, or 503 while starting or draining
    GET  /v2/models/dcgan[/versions/1]            model metadata (batch axis -1)
    GET  /v2/models/dcgan[/versions/1]/ready      200 or 503
    GET  /v2/models/dcgan[/versions/1]/config     Triton's ModelConfig, as JSON
    POST /v2/models/dcgan[/versions/1]/infer      z FP32 [N, nz], or parameters seed/start/n

A request body is JSON, or JSON followed by the binary sections of the inputs that declare
`"parameters": {"binary_data_size": B}`, with `Inference-Header-Content-Length` giving the JSON's
length. The output `images` comes back as JSON `data`, or binary (`"binary_data": true` on the
requested output, or the request parameter `binary_data_output`) after a JSON header whose length
is in `Inference-Header-Content-Length`. Errors: an HTTP status and {"error": "<one line>"}.
Everything is checked, and the body read no further than its limit, before the batcher sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve.checks import BadRequest, canonical_int, read_body, unless_gone
from serve.oip_model import MODEL, VERSION, OipModel, Tensor, decode_list, decode_raw

SERVER = {"name": "dcgan-serve", "version": "1",
          "extensions": ["binary_tensor_data", "model_configuration", "parameters"]}
HEADER_LENGTH = "Inference-Header-Content-Length"
# each uint8 as JSON text in 4 bytes, "  7," or "255,": a whole image in one numpy gather,
# where json.dumps of 12,288 Python ints costs milliseconds (JSON allows the padding blanks)
_UINT8_JSON = np.array([list(f"{i:>3},".encode()) for i in range(256)], np.uint8)
JSON_SLACK = 64 * 1024  # a request's JSON beyond its numbers: names, shapes, parameters
CHARS_PER_NUMBER = 32  # "-1.2345678901234567e-05, " with room for whitespace


def _refuse_constant(token: str):
    raise BadRequest(f"{token} is not a number JSON allows (and latents must be finite)")


class OipRest:
    """The /v2 endpoints over one OipModel; `is_ready()` says whether the service is ready."""

    def __init__(self, model: OipModel, is_ready: Callable[[], bool]):
        self.model, self.is_ready = model, is_ready
        # the largest body a valid request can have: z of max_images rows as JSON text
        self.max_body = JSON_SLACK + model.max_images * model.nz * CHARS_PER_NUMBER

    def routes(self, measured) -> list[Route]:
        """The routes, each wrapped by the app's `measured(route, endpoint, max_body=0)`."""
        m = "/v2/models/{model}"
        v = m + "/versions/{version}"
        table = [("/v2", self.server, "GET"), ("/v2/health/live", self.live, "GET"),
                 ("/v2/health/ready", self.ready, "GET")]
        for base in (m, v):
            table += [(base, self.metadata, "GET"), (base + "/ready", self.model_ready, "GET"),
                      (base + "/config", self.config, "GET"), (base + "/infer", self.infer, "POST")]
        return [Route(path, measured(path, endpoint, self.max_body if method == "POST" else 0),
                      methods=[method]) for path, endpoint, method in table]

    def _model(self, request: Request) -> None:
        self.model.check(request.path_params["model"], request.path_params.get("version"))

    async def server(self, request: Request) -> Response:
        return JSONResponse(SERVER)

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.is_ready() else 503)

    async def metadata(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse(self.model.metadata())

    async def model_ready(self, request: Request) -> Response:
        self._model(request)
        return Response(status_code=200 if self.is_ready() else 503)

    async def config(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse(self.model.config())

    async def infer(self, request: Request) -> Response:
        self._model(request)
        if request.headers.get("content-encoding", "identity") != "identity":
            raise BadRequest("compressed request bodies are not accepted — send it uncompressed",
                             415)
        body = await read_body(request, self.max_body)
        header, binary = _split(body, request.headers.get(HEADER_LENGTH))
        work, binary_out, request_id = self._parse(header, binary)
        images = await unless_gone(request, work.submit(self.model.batcher))
        return _response(self.model.output_name, images, binary_out, request_id)

    def _parse(self, header: dict, binary: memoryview):
        """(Work, whether the output goes binary, the request id) of a request's JSON header and
        binary section, every field checked."""
        request_id = header.get("id")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 256):
            raise BadRequest("id must be a string of at most 256 characters")
        params = _object(header.get("parameters", {}), "parameters")
        inputs, offset = [], 0
        raw_inputs = header.get("inputs", [])
        if not isinstance(raw_inputs, list):
            raise BadRequest("inputs must be a list")
        for raw in raw_inputs:
            raw = _object(raw, "an input")
            name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
            if not isinstance(name, str) or not isinstance(datatype, str):
                raise BadRequest("every input needs a string name and datatype")
            shape = self.model.check_shape(name, datatype, shape)
            size = _object(raw.get("parameters", {}), f"input {name!r} parameters").get(
                "binary_data_size")
            if size is not None:
                size = canonical_int(size, "binary_data_size", 0, 2**63)
                if offset + size > len(binary):
                    raise BadRequest(f"the binary section holds {len(binary)} bytes, shorter than "
                                     f"the {offset + size} the inputs declare")
                data = decode_raw(name, datatype, shape, binary[offset:offset + size])
                offset += size
            elif "data" in raw:
                data = decode_list(name, datatype, shape, raw["data"])
            else:
                raise BadRequest(f"input {name!r} has neither data nor a binary_data_size")
            inputs.append(Tensor(name, datatype, shape, data))
        if offset != len(binary):
            raise BadRequest(f"the binary section holds {len(binary)} bytes, longer than the "
                             f"{offset} the inputs declare")
        work = self.model.work(inputs, params)
        binary_out = params.get("binary_data_output", False)
        outputs = header.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, list):
                raise BadRequest("outputs must be a list")
            outputs = [_object(o, "an output") for o in outputs]
            self.model.check_outputs([o.get("name") for o in outputs])
            for o in outputs:
                binary_out = _object(o.get("parameters", {}), "output parameters").get(
                    "binary_data", binary_out)
        if not isinstance(binary_out, bool):
            raise BadRequest("binary_data and binary_data_output must be true or false")
        return work, binary_out, request_id


def _split(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """The JSON header (a dict) and the binary section after it."""
    length = len(body)
    if header_length is not None:
        length = canonical_int(header_length, HEADER_LENGTH, 0, 2**63)
        if length > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {length} but the body holds {len(body)} bytes")
    try:
        header = json.loads(bytes(body[:length]), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the request header is not valid JSON ({e})") from None
    except RecursionError:
        raise BadRequest("the request header is nested too deeply") from None
    return _object(header, "the request"), memoryview(body)[length:]


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _response(name: str, images: np.ndarray, binary: bool, request_id: str | None) -> Response:
    output = {"name": name, "datatype": "UINT8", "shape": list(images.shape)}
    head = {"model_name": MODEL, "model_version": VERSION}
    if request_id is not None:
        head["id"] = request_id
    if not binary:
        text = json.dumps({**head, "outputs": [output]}).encode()
        data = _UINT8_JSON[images.ravel()].tobytes()[:-1]  # without the last comma
        # `text` ends with the output's shape and then "}]}": the data goes in between
        body = b"".join((text[:-3], b', "data": [', data, b"]", text[-3:]))
        return Response(body, media_type="application/json")
    output["parameters"] = {"binary_data_size": images.nbytes}
    text = json.dumps({**head, "outputs": [output]}).encode()
    return Response(text + images.tobytes(), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})
