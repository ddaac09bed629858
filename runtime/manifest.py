"""The artifact manifest: the contract between export and runtime (DESIGN.md, "The artifact").

An artifact is a directory with manifest.json and the model files it lists. The runtime trusts
nothing else: format version, tensor names and shapes, latent distribution, and a sha256 for
every file, checked before the file is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ArtifactError
from runtime.files import sha256_file

FORMAT_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"
INPUT_NAME, OUTPUT_NAME = "z", "images"
REQUIRED = ("format_version", "model", "inputs", "outputs", "files")


@dataclass(frozen=True)
class FileEntry:
    name: str  # path relative to the artifact directory
    kind: str  # "onnx" or "trt"
    precision: str  # "fp32", "fp16" or "int8"
    sha256: str
    meta: dict  # the whole manifest entry (engine GPU, TensorRT version, batch profile, ...)


@dataclass(frozen=True)
class Manifest:
    root: Path  # the artifact directory
    data: dict  # manifest.json as read

    @property
    def nz(self) -> int:
        return int(self.data["model"]["nz"])

    @property
    def latent(self) -> str:
        return self.data["model"]["latent"]

    @property
    def image_size(self) -> int:
        return int(self.data["model"]["image_size"])

    @property
    def channels(self) -> int:
        return int(self.data["model"]["channels"])

    @property
    def input_name(self) -> str:
        return self.data["inputs"][0]["name"]

    @property
    def output_name(self) -> str:
        return self.data["outputs"][0]["name"]

    def files(self, kind: str | None = None) -> list[FileEntry]:
        return [FileEntry(name, e["kind"], e["precision"], e["sha256"], e)
                for name, e in self.data["files"].items() if kind in (None, e["kind"])]

    def checked_path(self, entry: FileEntry) -> Path:
        """The file's path, after checking it exists and its sha256 matches the manifest."""
        path = self.root / entry.name
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in the manifest but missing — re-run dcgan-export")
        if sha256_file(path) != entry.sha256:
            raise ArtifactError(f"{path} does not match its sha256 in the manifest (corrupt or "
                                "modified) — re-run dcgan-export")
        return path


def read_manifest(path: str | Path) -> Manifest:
    """Read an artifact directory's manifest (or a manifest.json path) and check its version.

    Raises:
        ArtifactError: missing or unreadable manifest, unknown major version, missing fields.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest_path.is_file():
        raise ArtifactError(f"no {MANIFEST_NAME} in {path} — point at a dcgan-export artifact "
                            "directory (dcgan-export writes artifacts/dcgan/)")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({e}) — re-run dcgan-export") from e
    missing = [k for k in REQUIRED if k not in data] if isinstance(data, dict) else list(REQUIRED)
    if missing:
        raise ArtifactError(f"{manifest_path} is not a dcgan manifest (missing {', '.join(missing)})")
    major = str(data["format_version"]).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ArtifactError(f"{manifest_path} has format version {data['format_version']}; this "
                            f"runtime reads {FORMAT_VERSION.split('.')[0]}.x — upgrade dcgan or re-export")
    return Manifest(manifest_path.parent, data)


def onnx_manifest(model_path: Path, nz: int, latent: str, image_size: int, channels: int,
                  input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                  precision: str = "fp32") -> Manifest:
    """A manifest for a bare .onnx file, from the metadata stored in the model."""
    data = {
        "format_version": FORMAT_VERSION,
        "model": {"nz": nz, "latent": latent, "image_size": image_size, "channels": channels},
        "inputs": [{"name": input_name, "shape": ["N", nz], "dtype": "float32", "layout": "NC"}],
        "outputs": [{"name": output_name, "shape": ["N", image_size, image_size, channels],
                     "dtype": "uint8", "layout": "NHWC"}],
        "files": {model_path.name: {"kind": "onnx", "precision": precision,
                                    "sha256": sha256_file(model_path)}},
    }
    return Manifest(model_path.parent, data)
