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


def write_web_bundle(artifact: Path, manifest: dict) -> dict:
    """Write `artifact`/web/ for the ONNX models just exported; returns the manifest's "web" entry.

    Args:
        artifact: the artifact directory being built (its model files already written).
        manifest: its manifest (model dimensions, tensor names, files, source checkpoint).

    Returns:
        {"directory", "ort_web", "models", "files": {relative path: sha256}}.
    """
    out = artifact / DIRECTORY
    (out / "ort").mkdir(parents=True)
    for name in PAGE_FILES:
        shutil.copyfile(SOURCE / name, out / name)
    for name in ORT_WEB_FILES:
        shutil.copyfile(ort_web_dir() / name, out / "ort" / name)
    onnx_files = {e["precision"]: name for name, e in manifest["files"].items() if e["kind"] == "onnx"}
    models = {}
    for precision in WEB_PRECISIONS:
        if precision in onnx_files:
            name = onnx_files[precision]
            shutil.copyfile(artifact / name, out / name)
            models[precision] = {"file": name, "sha256": manifest["files"][name]["sha256"]}
    model = manifest["model"]
    page = {"name": manifest.get("name", "dcgan"), "nz": model["nz"], "latent": model["latent"],
            "image_size": model["image_size"], "channels": model["channels"],
            "input": manifest["inputs"][0]["name"], "output": manifest["outputs"][0]["name"],
            "models": models, "source_sha256": manifest.get("source", {}).get("sha256"),
            "ort_web": ORT_WEB_VERSION}
    atomic_write_text(out / "model.json", json.dumps(page, indent=2) + "\n")
    files = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}
    return {"directory": DIRECTORY, "ort_web": ORT_WEB_VERSION, "models": sorted(models), "files": files}
