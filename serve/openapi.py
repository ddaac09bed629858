"""The OpenAPI 3.1 document of the service (`GET /openapi.json`): /v1 and the Open Inference
Protocol's /v2, written out here rather than derived, because the routes are few and fixed and
the binary tensor extension cannot be derived from handler signatures anyway."""

from __future__ import annotations


def _get(summary: str, params=(), responses=None, content="application/json") -> dict:
    return {"get": {"summary": summary, "parameters": list(params),
                    "responses": responses or {"200": {"description": "OK",
                                                       "content": {content: {}}}}}}


def _path(name: str, schema: dict, where: str = "path", required: bool = True) -> dict:
    return {"name": name, "in": where, "required": required, "schema": schema}


def openapi(nz: int, max_images: int, keyed: bool) -> dict:
    """The document for a model of latent size `nz`, `max_images` per request."""
    seed = {"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "0 <= seed < 2**128"}
    error = {"description": "refused: {\"error\": \"<one line>\"}",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    errors = {"400": error, "404": error, "413": error, "503": error, "504": error}
    ready = {"200": {"description": "ready"}, "503": {"description": "starting or draining"}}
    paths = {
        "/v1/images/{seed}/{index}.png": _get(
            "One image: the bytes dcgan-generate writes for (seed, index); immutable, ETag",
            [_path("seed", seed), _path("index", seed)],
            {"200": {"description": "PNG", "content": {"image/png": {}}},
             "304": {"description": "not modified"}, **errors}),
        "/v1/images": _get(
            "Several images of a seed (npy, a grid PNG, or one PNG); no seed: a fresh one (X-Seed)",
            [_path("seed", seed, "query", False), _path("start", seed, "query", False),
             _path("n", {"type": "integer", "minimum": 1, "maximum": max_images}, "query", False),
             _path("format", {"enum": ["png", "npy", "grid"]}, "query", False)],
            {"200": {"description": "images", "content": {"image/png": {},
                                                           "application/octet-stream": {}}},
             **errors}),
        "/healthz": _get("Alive"),
        "/readyz": _get("Ready (warm, not draining)", responses=ready),
        "/v1/info": _get("Manifest, backend, precision and limits"),
        "/metrics": _get("Prometheus metrics", content="text/plain"),
        "/v2": _get("Open Inference Protocol server metadata"),
        "/v2/health/live": _get("Live", responses={"200": {"description": "live"}}),
        "/v2/health/ready": _get("Ready", responses=ready),
    }
    model = [_path("model", {"const": "dcgan"})]
    version = [*model, _path("version", {"const": "1"})]
    infer = {"post": {
        "summary": f"Images for latents z FP32 [N, {nz}], or for the parameters seed, start, n; "
                   "JSON or the binary tensor extension (Inference-Header-Content-Length)",
        "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"description": "JSON header, then the binary inputs"}}},
        "responses": {"200": {"description": f"images UINT8 [N, 64, 64, C], N <= {max_images}",
                              "content": {"application/json": {},
                                          "application/octet-stream": {}}}, **errors}}}
    for base, params in (("/v2/models/{model}", model),
                         ("/v2/models/{model}/versions/{version}", version)):
        paths[base] = _get("Model metadata (batch axis -1)", params)
        paths[base + "/ready"] = _get("Model ready", params, ready)
        paths[base + "/config"] = _get("Triton ModelConfig (as export's config.pbtxt)", params)
        paths[base + "/infer"] = {"post": {**infer["post"], "parameters": params}}
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "dcgan-serve", "version": "1",
                 "description": "Seed-addressed DCGAN images (/v1) and the Open Inference "
                                "Protocol (/v2, model dcgan version 1)."},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "InferRequest": {"type": "object", "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "seed": {"oneOf": [{"type": "integer"}, seed]},
                    "start": {"oneOf": [{"type": "integer"}, seed]},
                    "n": {"type": "integer", "minimum": 1, "maximum": max_images},
                    "binary_data_output": {"type": "boolean"}}},
                "inputs": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"const": "z"}, "datatype": {"const": "FP32"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "data": {"type": "array"},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_size": {"type": "integer"}}}}}},
                "outputs": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"const": "images"},
                    "parameters": {"type": "object", "properties": {
                        "binary_data": {"type": "boolean"}}}}}}}}}},
    }
    if keyed:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc
