"""dcgan-export --format web: the bundle's files and manifest entry, the one-line error without
onnxruntime-web, `all` leaving the page out with a note, and dcgan-serve serving it at `/` with
the cross-origin isolation headers."""

from __future__ import annotations

import json

import pytest
from conftest import HAS_TORCH, RECALIBRATION_BATCHES

from runtime.files import sha256_file
from runtime.manifest import read_manifest

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")
ISOLATED = {"cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp"}


def test_bundle_holds_page_models_and_onnxruntime_web(web_artifact):
    from export.web import ORT_WEB_FILES, ORT_WEB_VERSION

    manifest = read_manifest(web_artifact)
    web = manifest.web_dir
    assert web == web_artifact / "web"
    entry = manifest.data["web"]
    assert entry["ort_web"] == ORT_WEB_VERSION
    for name, sha in entry["files"].items():
        assert sha256_file(web / name) == sha
    expected = {"index.html", "dcgan.js", "model.json", *(f"ort/{n}" for n in ORT_WEB_FILES)}
    assert expected <= set(entry["files"])
    page = json.loads((web / "model.json").read_text())
    assert (page["nz"], page["latent"], page["input"], page["output"]) == (16, "normal", "z", "images")
    assert "fp32" in page["models"] and set(page["models"]) <= {"fp32", "int8"}
    for precision, model in page["models"].items():
        assert sha256_file(web / model["file"]) == model["sha256"]
        assert manifest.data["files"][model["file"]]["precision"] == precision
    assert len((web / "dcgan.js").read_text().splitlines()) < 400


def test_format_web_without_onnxruntime_web_is_one_line_naming_the_make_target(
        tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from export.cli import app
    from runtime.cli_support import run_app

    monkeypatch.setenv("DCGAN_ORT_WEB", str(tmp_path / "nothing"))
    code = run_app(app, [str(tiny_checkpoint), "--format", "web", "--out", str(tmp_path / "a")],
                   prog="dcgan-export")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: cannot build the web bundle: onnxruntime-web")
    assert "run 'make ort-web'" in err[0]
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_format_all_without_onnxruntime_web_leaves_the_page_out_with_a_note(
        tiny_checkpoint, tmp_path, monkeypatch):
    from export.artifact import ExportOptions, export_artifact

    monkeypatch.setenv("DCGAN_ORT_WEB", str(tmp_path / "nothing"))
    out = tmp_path / "all"
    manifest = export_artifact(tiny_checkpoint, out, ExportOptions(
        format="all", recalibrate_batches=RECALIBRATION_BATCHES, onnx_precisions=("fp32",)))
    assert "web" not in manifest and not (out / "web").exists()
    assert any(s["format"] == "web" and "make ort-web" in s["reason"] for s in manifest["skipped"])
    assert read_manifest(out).web_dir is None


@pytest.fixture(scope="module")
def client(web_artifact):
    pytest.importorskip("httpx2")
    from starlette.testclient import TestClient

    from runtime import Generator
    from runtime.batcher import Batcher
    from serve.app import create_app

    with Generator.load(web_artifact, backend="ort-cpu") as gen, Batcher(gen, max_batch=16) as b, \
            TestClient(create_app(b)) as client:
        yield client


def test_serve_has_the_page_at_root_with_isolation_headers(client, web_artifact):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert ISOLATED.items() <= page.headers.items()
    assert page.content == (web_artifact / "web" / "index.html").read_bytes()
    for path, media in (("/dcgan.js", "text/javascript"), ("/ort/ort.wasm.min.mjs", "text/javascript"),
                        ("/ort/ort-wasm-simd-threaded.wasm", "application/wasm"),
                        ("/model.json", "application/json")):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), path
        assert ISOLATED.items() <= r.headers.items()
    again = client.get("/model.onnx", headers={"If-None-Match": client.get("/model.onnx").headers["etag"]})
    assert again.status_code == 304
    # the service's own routes are untouched, and there is no catch-all
    assert client.get("/v1/images/0/0.png").status_code == 200
    assert client.get("/web/index.html").status_code == 404
    assert client.get("/../manifest.json").status_code == 404


def test_serve_without_a_bundle_says_how_to_build_one(tiny_artifact):
    pytest.importorskip("httpx2")
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from serve.web import web_routes

    with TestClient(Starlette(routes=web_routes(read_manifest(tiny_artifact)))) as client:
        r = client.get("/")
    assert r.status_code == 404 and "dcgan-export --format web" in r.json()["error"]


@pytest.mark.parametrize("entry", [None, "web", {"directory": "../elsewhere"}, {"directory": "/etc"},
                                   {"directory": ""}, {"directory": 3}])
def test_web_dir_is_only_a_bare_folder_inside_the_artifact(tmp_path, entry):
    from runtime.manifest import Manifest

    data = {} if entry is None else {"web": entry}
    assert Manifest(tmp_path, data).web_dir is None
    assert Manifest(tmp_path, {"web": {"directory": "web"}}).web_dir == tmp_path / "web"
