"""The artifact manifest: the contract between export and runtime (docs/architecture.md, "The artifact").

An artifact is a directory with manifest.json and the model files it lists. The runtime trusts
nothing else: format version, tensor names and shapes, latent distribution, and a sha256 for
every file, checked before the file is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ArtifactError
from runtime.files import atomic_write_text, sha256_file
from runtime.latents import DISTRIBUTIONS

FORMAT_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"
INPUT_NAME, OUTPUT_NAME = "z", "images"
REQUIRED = ("format_version", "model", "inputs", "outputs", "files")
FILE_KINDS = ("onnx", "trt")
FILE_PRECISIONS = ("fp32", "fp16", "int8")
MAX_NZ = 65536  # far above any DCGAN's latent size; bounds what a manifest can make us allocate
# A manifest is a few KB (tensors, files, verification results). A larger one is not ours: refused
# before it is read, so nothing downstream (a service's /v1/info) ever holds or serves 100 MB.
MAX_MANIFEST_BYTES = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


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

    @property
    def web_dir(self) -> Path | None:
        """The browser bundle's folder (dcgan-export --format web), or None where there is none."""
        web = self.data.get("web")
        name = web.get("directory") if isinstance(web, dict) else None
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            return None
        return self.root / name

    def files(self, kind: str | None = None) -> list[FileEntry]:
        return [FileEntry(name, e["kind"], e["precision"], e["sha256"], e)
                for name, e in self.data["files"].items() if kind in (None, e["kind"])]

    def checked_path(self, entry: FileEntry) -> Path:
        """The file's path, after checking it exists and its sha256 matches the manifest. Entry
        names are bare file names (checked when the manifest is read), so the path never leaves
        the artifact directory."""
        path = self.root / entry.name
        if not path.is_file():
            raise ArtifactError(f"{entry.name} is listed in the manifest of {self.root} but "
                                "missing — re-run dcgan-export")
        if sha256_file(path) != entry.sha256:
            raise ArtifactError(f"{entry.name} in {self.root} does not match its sha256 in the "
                                "manifest (corrupt or modified) — re-run dcgan-export")
        return path

    def check_model_io(self, entry: FileEntry, inputs: list[tuple[str, list, str]],
                       outputs: list[tuple[str, list, str]]) -> None:
        """Check a loaded model's real (name, shape, dtype) inputs and outputs against the
        manifest: one float input (N, nz), one uint8 output (N, size, size, channels). A dim
        that is not an int (a symbolic batch) matches anything."""
        size, c = self.image_size, self.channels
        expected = (("input", inputs, self.input_name, [None, self.nz], "float"),
                    ("output", outputs, self.output_name, [None, size, size, c], "uint8"))
        for what, got, name, shape, dtype in expected:
            if len(got) != 1:
                raise ArtifactError(f"{entry.name} has {len(got)} {what}s, the manifest describes "
                                    f"one — the model and manifest do not belong together; re-run "
                                    "dcgan-export")
            got_name, got_shape, got_dtype = got[0]
            fixed = [d if isinstance(d, int) else None for d in got_shape]
            same_shape = len(fixed) == len(shape) and all(
                a is None or b is None or a == b for a, b in zip(fixed, shape))
            if got_name != name or not same_shape or dtype not in got_dtype:
                raise ArtifactError(
                    f"{entry.name}'s {what} is {got_name} {got_shape} {got_dtype}, but the manifest "
                    f"says {name} {['N', *shape[1:]]} {dtype} — the model and manifest do not "
                    "belong together; re-run dcgan-export")


def _check_schema(data: dict, where: Path) -> None:
    """Every field the runtime relies on, with its type and range: a bad manifest is one
    ArtifactError here, never a KeyError or a wrong image later."""
    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{where}: {what} — re-run dcgan-export (or fix the manifest)")

    model = data["model"]
    if not isinstance(model, dict):
        raise bad("'model' is not an object")
    for key, ok in (("nz", lambda v: 1 <= v <= MAX_NZ), ("image_size", lambda v: v == 64),
                    ("channels", lambda v: v in (1, 3))):
        value = model.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not ok(value):
            raise bad(f"model.{key} is {value!r}, not a valid value")
    if model.get("latent") not in DISTRIBUTIONS:
        raise bad(f"model.latent is {model.get('latent')!r}, expected one of {DISTRIBUTIONS}")
    for key in ("inputs", "outputs"):
        tensors = data[key]
        if (not isinstance(tensors, list) or not tensors or not isinstance(tensors[0], dict)
                or not isinstance(tensors[0].get("name"), str)):
            raise bad(f"'{key}' must be a list of tensors with names")
    files = data["files"]
    if not isinstance(files, dict):
        raise bad("'files' must be an object of file name -> entry")
    for name, entry in files.items():
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name \
                or "\\" in name:
            raise bad(f"file entry {name!r} is not a bare file name inside the artifact")
        if not isinstance(entry, dict):
            raise bad(f"file entry {name} is not an object")
        if entry.get("kind") not in FILE_KINDS:
            raise bad(f"file {name} has kind {entry.get('kind')!r}, expected one of {FILE_KINDS}")
        if entry.get("precision") not in FILE_PRECISIONS:
            raise bad(f"file {name} has precision {entry.get('precision')!r}, expected one of "
                      f"{FILE_PRECISIONS}")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise bad(f"file {name} has no valid sha256")


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
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{manifest_path} is {size} bytes, above the {MAX_MANIFEST_BYTES} "
                                "bytes a manifest may have — re-run dcgan-export")
        with manifest_path.open("rb") as f:  # read no more than the limit, even if it grew
            data = json.loads(f.read(MAX_MANIFEST_BYTES + 1).decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({e}) — re-run dcgan-export") from e
    missing = [k for k in REQUIRED if k not in data] if isinstance(data, dict) else list(REQUIRED)
    if missing:
        raise ArtifactError(f"{manifest_path} is not a dcgan manifest (missing {', '.join(missing)})")
    major = str(data["format_version"]).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ArtifactError(f"{manifest_path} has format version {data['format_version']}; this "
                            f"runtime reads {FORMAT_VERSION.split('.')[0]}.x — upgrade dcgan or re-export")
    _check_schema(data, manifest_path)
    return Manifest(manifest_path.parent, data)


def build_manifest(nz: int, latent: str, image_size: int, channels: int, files: dict,
                   input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME, **fields) -> dict:
    """A manifest's contents: the tensors of a generator with these dimensions, its `files`
    (name -> kind, precision, sha256, ...), and any further `fields` (verification, source...).
    Export writes what this returns; `read_manifest` checks the same schema when reading."""
    data = {
        "format_version": FORMAT_VERSION,
        **{k: v for k, v in fields.items() if k in ("name", "created")},
        "model": {"nz": nz, "latent": latent, "image_size": image_size, "channels": channels,
                  **fields.pop("model_extra", {})},
        "inputs": [{"name": input_name, "shape": ["N", nz], "dtype": "float32", "layout": "NC"}],
        "outputs": [{"name": output_name, "shape": ["N", image_size, image_size, channels],
                     "dtype": "uint8", "layout": "NHWC",
                     "postprocess": "round(clip((x + 1) * 127.5, 0, 255))"}],
        "files": files,
        **{k: v for k, v in fields.items() if k not in ("name", "created")},
    }
    _check_schema(data, Path("<new manifest>"))
    return data


def write_manifest(directory: Path, data: dict) -> None:
    """Write `data` as directory/manifest.json, atomically."""
    atomic_write_text(Path(directory) / MANIFEST_NAME, json.dumps(data, indent=2) + "\n")


def onnx_manifest(model_path: Path, nz: int, latent: str, image_size: int, channels: int,
                  input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                  precision: str = "fp32") -> Manifest:
    """A manifest for a bare .onnx file, from the metadata stored in the model."""
    files = {model_path.name: {"kind": "onnx", "precision": precision,
                               "sha256": sha256_file(model_path)}}
    try:
        data = build_manifest(nz, latent, image_size, channels, files, input_name, output_name)
    except ArtifactError as e:
        raise ArtifactError(f"{model_path}'s dcgan metadata is invalid: {e}") from None
    return Manifest(model_path.parent, data)
