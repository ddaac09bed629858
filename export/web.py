"""The browser bundle (`dcgan-export --format web`): a static page that runs the exported model
with onnxruntime-web and draws latents exactly as runtime/latents.py does (docs/browser.md).

    web/index.html, web/dcgan.js      the page and its one module (this package's web/ folder)
    web/model.json                    what the page needs from the manifest, and its model files
    web/model.onnx, model.int8.onnx   copies of the artifact's fp32 (and int8, where exported) ONNX
    web/ort/                          onnxruntime-web's files, at ORT_WEB_VERSION

onnxruntime-web comes from the npm registry once, at set-up (`make ort-web`, into the
virtual environment's share/ folder, or wherever DCGAN_ORT_WEB points), and never from a CDN when
the page runs: the export only copies it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from runtime.files import atomic_write_text, sha256_file
from runtime.manifest import Manifest

ORT_WEB_VERSION = "1.30.0"  # the Makefile reads this line: one pinned version for both
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
                 "package.json")  # package.json: its version and MIT licence
PAGE_FILES = ("index.html", "dcgan.js")
WEB_PRECISIONS = ("fp32", "int8")  # what onnxruntime-web's WASM backend runs fastest; fp16 is no faster there
SOURCE = Path(__file__).parent / "web"
DIRECTORY = "web"


def ort_web_dir() -> Path:
    """Where `make ort-web` puts onnxruntime-web: $DCGAN_ORT_WEB, else the environment's share/."""
    given = os.environ.get("DCGAN_ORT_WEB")
    return Path(given or Path(sys.prefix) / "share" / "dcgan" / f"onnxruntime-web-{ORT_WEB_VERSION}")


def ort_web_missing() -> str | None:
    """Why the web bundle cannot be built here (one line), or None."""
    where = ort_web_dir()
    missing = [name for name in ORT_WEB_FILES if not (where / name).is_file()]
    if missing:
        return (f"onnxruntime-web {ORT_WEB_VERSION} is not in {where} (missing {missing[0]}) — run "
                "'make ort-web' to fetch it from the npm registry")
    return None


def write_web_bundle(artifact: Path, view: Manifest, name: str, source_sha256: str) -> dict:
    """Write `artifact`/web/ for the ONNX models just exported; returns the manifest's "web" entry.

    Args:
        artifact: the artifact directory being built (its model files already written).
        view: the artifact's manifest so far (model dimensions, tensor names, files).
        name: the model's name; source_sha256: the checkpoint's, shown on the page.

    Returns:
        {"directory", "ort_web", "models", "files": {relative path: sha256}}.
    """
    out = artifact / DIRECTORY
    (out / "ort").mkdir(parents=True)
    for page_file in PAGE_FILES:
        shutil.copyfile(SOURCE / page_file, out / page_file)
    for ort_file in ORT_WEB_FILES:
        shutil.copyfile(ort_web_dir() / ort_file, out / "ort" / ort_file)
    onnx_files = {e.precision: e for e in view.files("onnx")}
    models = {}
    for precision in WEB_PRECISIONS:
        if precision in onnx_files:
            entry = onnx_files[precision]
            shutil.copyfile(artifact / entry.name, out / entry.name)
            models[precision] = {"file": entry.name, "sha256": entry.sha256}
    page = {"name": name, "nz": view.nz, "latent": view.latent, "image_size": view.image_size,
            "channels": view.channels, "input": view.input_name, "output": view.output_name,
            "models": models, "source_sha256": source_sha256, "ort_web": ORT_WEB_VERSION}
    atomic_write_text(out / "model.json", json.dumps(page, indent=2) + "\n")
    files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    return {"directory": DIRECTORY, "ort_web": ORT_WEB_VERSION, "models": sorted(models), "files": files}
