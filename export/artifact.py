"""Build an artifact directory: verified ONNX (fp32, fp16, int8), TensorRT engine, Triton
repository, manifest.json. Everything is built in a staging directory beside the target and
moved into place only when every check passed: a failure leaves no half-written artifact.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from export.errors import ExportError, VerificationError
from export.fold import FoldedGenerator, fold_generator
from export.load import load_for_export
from export.onnx_graph import OPSET, build_onnx, with_float_output
from export.quantize import build_int8_onnx, fp32_layer_plans
from export.tensorrt_build import Profile, build_engine, timing_cache_name, trt_requirements
from export.triton import write_repository
from export.trt_constraints import check_tensorrt_parseable
from export.verify import (
    TOLERANCES,
    VERIFY_BATCHES,
    compare,
    merge,
    reference,
    require,
    verification_latents,
    verify_onnx,
)
from export.web import ort_web_missing, write_web_bundle
from runtime.cuda import gpu_info
from runtime.errors import ArtifactError
from runtime.files import atomic_write_bytes, sha256_file
from runtime.generator import Generator
from runtime.images import images_from_float
from runtime.manifest import (
    MANIFEST_NAME,
    Manifest,
    build_manifest,
    read_manifest,
    write_manifest,
)
from runtime.outdir import refuse_to_replace
from runtime.tensorrt_backend import import_tensorrt
from train.recalibrate import RECALIBRATION_BATCH, RECALIBRATION_BATCHES, recalibrate_bn, train_eval_gap

log = logging.getLogger(__name__)

FORMATS = ("onnx", "trt", "triton", "web", "all")
ONNX_PRECISIONS = ("fp32", "fp16", "int8")  # the ONNX model files an export can write
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


@dataclass
class ExportOptions:
    format: str = "onnx"  # onnx, trt, triton, web or all
    precision: str = "fp32"  # TensorRT engine precision (fp16 engines come from the fp16 ONNX)
    recalibrate_batches: int = RECALIBRATION_BATCHES  # 0: keep the checkpoint's BN running statistics
    profile: Profile = Profile()
    device: int = 0
    overwrite: bool = False
    name: str = "dcgan"
    layout: str = "convtranspose"  # how stride-2 layers are written in the ONNX (see onnx_graph)
    ema: bool = True  # export the checkpoint's EMA weights where it has them
    # ONNX precisions to write. None: fp32, plus fp16 and int8 wherever they verify (a variant
    # that misses its tolerance is left out and the manifest says why). Given explicitly, each
    # listed precision is required: one that fails verification fails the export.
    onnx_precisions: tuple[str, ...] | None = None

    def required(self) -> set[str]:
        """Precisions whose failure fails the export: fp32, the ones listed, and fp16 for an
        fp16 engine (it is built from the fp16 ONNX)."""
        needed = {"fp32", *(self.onnx_precisions or ())}
        if self.format in ("trt", "all") and self.precision == "fp16":
            needed.add("fp16")
        return needed

    def wanted(self) -> tuple[str, ...]:
        wanted = set(self.onnx_precisions or ONNX_PRECISIONS) | self.required()
        return tuple(p for p in ONNX_PRECISIONS if p in wanted)


def check_output(out: Path, overwrite: bool, checkpoint: Path) -> None:
    """`out` may be new or empty; with --overwrite it may also hold an earlier artifact, and
    nothing else (a training run, the checkpoint itself, an unrelated folder)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file — give a directory path")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise ExportError(f"{out} already exists and is not empty — pass --overwrite to replace it")
    refuse_to_replace(out, [checkpoint])
    try:
        read_manifest(out)
    except ArtifactError:
        raise ExportError(f"{out} is not a dcgan artifact (no valid {MANIFEST_NAME}) — --overwrite "
                          "only replaces an earlier export; pick another --out") from None


def _write_model(path: Path, data: bytes) -> dict:
    atomic_write_bytes(path, data)
    return {"sha256": sha256_file(path), "bytes": len(data)}


def export_artifact(checkpoint: Path, out: Path, opts: ExportOptions) -> dict:
    """Export `checkpoint` into the artifact directory `out`; returns the manifest.

    `--format all` builds what this machine can: without a GPU it leaves out the TensorRT
    engine, and without onnxruntime-web (`make ort-web`) the browser bundle, each with a note in
    the manifest's "skipped" and the log; the verified models are worth having without them.
    Asked for by name (`trt`, `web`), a part that cannot be built fails the export at once.

    Raises:
        ExportError: bad input, a missing dependency for the asked format, or (as
            VerificationError) a model beyond tolerance. Nothing is left behind.
    """
    if opts.format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {opts.format!r}")
    unknown = set(opts.onnx_precisions or ()) - set(ONNX_PRECISIONS)
    if unknown:
        raise ExportError(f"unknown ONNX precision(s) {', '.join(sorted(unknown))} — use "
                          f"{', '.join(ONNX_PRECISIONS)}")
    opts.profile.check()
    check_output(out, opts.overwrite, checkpoint)
    want_trt = opts.format in ("trt", "all")
    skipped = []
    if want_trt and (why := trt_requirements(opts.device)):
        if opts.format == "trt":
            raise ExportError(f"cannot build a TensorRT engine here: {why.split(' — ')[0]} — "
                              "run on a machine with an NVIDIA GPU and pip install 'dcgan[trt]', "
                              "or use --format onnx")
        skipped.append({"format": "trt", "reason": why})
        want_trt = False
        log.warning("skipping TensorRT: %s", why)
    want_web = opts.format in ("web", "all")
    if want_web and (why := ort_web_missing()):
        if opts.format == "web":
            raise ExportError(f"cannot build the web bundle: {why}")
        skipped.append({"format": "web", "reason": why})
        want_web = False
        log.warning("skipping the web bundle: %s", why)

    loaded = load_for_export(checkpoint, ema=opts.ema)
    g = loaded.generator
    bn = {"checkpoint_stats": train_eval_gap(g)}
    if opts.recalibrate_batches > 0:
        recalibrate_bn(g, opts.recalibrate_batches, RECALIBRATION_BATCH, seed=0)
        bn["recalibrated"] = {"batches": opts.recalibrate_batches, "batch_size": RECALIBRATION_BATCH,
                              **train_eval_gap(g)}
        log.info("BN recalibrated on %d x %d latents: eval-vs-train mean abs gap %.2e -> %.2e",
                 opts.recalibrate_batches, RECALIBRATION_BATCH,
                 bn["checkpoint_stats"]["mean_abs"], bn["recalibrated"]["mean_abs"])
    else:
        bn["recalibrated"] = None

    layers = fold_generator(g)
    z = verification_latents(g, 64)
    with torch.no_grad():
        folded = FoldedGenerator(layers)(torch.from_numpy(z)).numpy()
    ref = reference(g, z)
    fold_check = require(compare(ref, folded, images_from_float(folded), "fp32"), "the BN-folded model")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        cfg = loaded.config
        files, verification = _write_models(staging, loaded, layers, opts, want_trt, out, skipped)
        verification["fold"] = {"backend": "torch", **fold_check}
        triton = None
        if opts.format in ("triton", "all"):
            engine = next((name for name, e in files.items() if e["kind"] == "trt"), None)
            models = write_repository(staging / "triton", opts.name, staging / "model.onnx",
                                      staging / engine if engine else None, cfg.nz,
                                      cfg.image_size, cfg.nc, opts.profile.max_batch)
            triton = {"repository": "triton", "models": models, "max_batch_size": opts.profile.max_batch}
        web = (write_web_bundle(staging, _runtime_view(staging, cfg, files), opts.name, loaded.sha256)
               if want_web else None)
        manifest = build_manifest(
            cfg.nz, cfg.latent, cfg.image_size, cfg.nc, files, name=opts.name,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            model_extra={"ngf": cfg.ngf}, verification=verification, skipped=skipped,
            source={"checkpoint": str(loaded.path), "sha256": loaded.sha256, "kind": loaded.kind,
                    "step": loaded.step, "weights": loaded.weights},
            reference="PyTorch generator, eval mode, fp32, BN unfolded", bn_recalibration=bn,
            **({"web": web} if web else {}), **({"triton": triton} if triton else {}))
        write_manifest(staging, manifest)
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _left_out(skipped: list, precision: str, error: Exception) -> None:
    """Record an optional model that failed verification; the export goes on without it."""
    reason = str(error).replace(" — nothing was written", "")
    skipped.append({"format": "onnx", "file": ONNX_FILES[precision], "precision": precision,
                    "reason": reason})
    log.warning("left out %s (optional): %s", ONNX_FILES[precision], reason)


def _int8_model(layers, g, metadata: dict) -> tuple[onnx.ModelProto, dict]:
    """The int8 model of the first plan (hidden layers kept in fp32) that meets the int8
    tolerance, with its verification; VerificationError naming every plan's error if none does."""
    tried = []
    for fp32_layers in fp32_layer_plans(len(layers)):
        model = build_int8_onnx(layers, g.cfg, metadata, fp32_layers=fp32_layers)
        try:
            result = verify_onnx(model, g, "int8")
        except VerificationError as e:
            r = e.result
            tried.append(f"hidden layers in fp32 {list(fp32_layers) or 'none'}: uint8 max "
                         f"{r['uint8_max_diff']}, mean {r['uint8_mean_diff']:.2f}")
            continue
        if tried:
            log.info("int8: kept hidden layer(s) %s in fp32 to meet the tolerance", list(fp32_layers))
        return model, {**result, "fp32_hidden_layers": list(fp32_layers), "plans_tried": tried}
    raise VerificationError(f"the int8 ONNX model differs from the PyTorch reference beyond tolerance "
                            f"with every plan tried ({'; '.join(tried)}; tolerance "
                            f"{TOLERANCES['int8'].uint8_max} uint8 levels, mean "
                            f"{TOLERANCES['int8'].uint8_mean}) — nothing was written")


def _runtime_view(staging: Path, cfg, files: dict) -> Manifest:
    """The manifest the runtime will read, held in memory: the model files are checked through
    the real runtime (checksums included) before the one manifest.json is written."""
    return Manifest(staging, build_manifest(cfg.nz, cfg.latent, cfg.image_size, cfg.nc, files))


def _write_models(staging: Path, loaded, layers, opts: ExportOptions, want_trt: bool, out: Path,
                  skipped: list) -> tuple[dict, dict]:
    """Write and verify the ONNX models (and the engine); returns the manifest's files and
    verification entries. An optional model that fails is left out and noted in `skipped`."""
    g, cfg = loaded.generator, loaded.config
    files, verification = {}, {}
    onnx_models = {}
    metadata = {"source_sha256": loaded.sha256}
    required = opts.required()
    for precision in opts.wanted():
        filename = ONNX_FILES[precision]
        try:
            if precision == "int8":
                model, verification[filename] = _int8_model(layers, g, metadata)
                layout = "subpixel"
            else:
                model = build_onnx(layers, cfg, precision, metadata, opts.layout)
                check_tensorrt_parseable(model, filename)  # what TensorRT and Triton may read
                verification[filename], layout = verify_onnx(model, g, precision), opts.layout
        except VerificationError as e:
            if precision in required:
                raise
            _left_out(skipped, precision, e)
            continue
        if not verification[filename]["verified"]:
            log.warning("%s not verified here: %s", filename, verification[filename]["reason"])
        data = model.SerializeToString()
        onnx_models[precision] = data
        files[filename] = {"kind": "onnx", "precision": precision, "opset": OPSET, "layout": layout,
                           **_write_model(staging / filename, data)}
    engine_name, timing_cache = None, None
    if want_trt:
        engine_name = f"model.{opts.precision}.plan"
        cache_path = out.parent / timing_cache_name(gpu_info(opts.device), import_tensorrt().__version__)
        old_cache = cache_path.read_bytes() if cache_path.exists() else b""
        engine, fields, timing_cache = build_engine(onnx_models[opts.precision], cfg.nz, opts.profile,
                                                    opts.precision, old_cache, opts.device)
        files[engine_name] = {"kind": "trt", "precision": opts.precision,
                              **_write_model(staging / engine_name, engine), **fields}

    view = _runtime_view(staging, cfg, files)
    verification["runtime"] = _verify_runtime(view, g, "ort-cpu", "fp32")
    if "model.int8.onnx" in files:
        try:
            verification["runtime-int8"] = _verify_runtime(view, g, "ort-cpu", "int8")
        except VerificationError as e:
            if "int8" in required:
                raise
            _left_out(skipped, "int8", e)
            del files["model.int8.onnx"], verification["model.int8.onnx"]
            (staging / "model.int8.onnx").unlink()
    if engine_name:
        verification[engine_name] = _verify_runtime(view, g, "trt", opts.precision, opts.device)
        verification[f"{engine_name} (float output)"] = _verify_engine_float(
            onnx_models[opts.precision], g, cfg, opts, timing_cache)
        # the cache is kept only now that engines built with it verified; atomic, so a
        # concurrent export sees the old cache or the new one, never a torn file
        atomic_write_bytes(cache_path, timing_cache)
    return files, verification


def _verify_engine_float(onnx_bytes: bytes, g, cfg, opts: ExportOptions, cache: bytes) -> dict:
    """The float output of an engine built like the shipped one (same ONNX plus its float
    output, same profile and flags), against the float tolerance: the shipped engine's uint8
    output alone could hide errors of up to half a level."""
    from runtime.tensorrt_backend import TrtBackend

    model = with_float_output(onnx.load_from_string(onnx_bytes))
    engine, _, _ = build_engine(model.SerializeToString(), cfg.nz, opts.profile, opts.precision,
                                cache, opts.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "verify.plan"
        path.write_bytes(engine)
        view = _runtime_view(Path(tmp), cfg, {path.name: {"kind": "trt", "precision": opts.precision,
                                                          "sha256": sha256_file(path)}})
        z = verification_latents(g, max(VERIFY_BATCHES))
        with TrtBackend(view, view.files()[0], opts.device) as backend:
            results = []
            for b in VERIFY_BATCHES:
                if b <= backend.max_batch:
                    images, pixels = backend.infer_with_float(z[:b])
                    results.append(compare(reference(g, z[:b]), pixels, images, opts.precision))
    merged = require(merge(results), "the TensorRT engine's float output")
    return {"verified": True, "backend": "trt", **merged}


def _verify_runtime(view: Manifest, g, backend: str, precision: str, device: int = 0) -> dict:
    z = verification_latents(g, max(VERIFY_BATCHES))
    with Generator.from_manifest(view, backend=backend, precision=precision, device=device) as gen:
        batches = [b for b in VERIFY_BATCHES if gen.max_batch is None or b <= gen.max_batch]
        results = [compare(reference(g, z[:b]), None, gen.from_latents(z[:b]), precision)
                   for b in batches]
    merged = require(merge(results), f"the {backend} runtime output")
    return {"verified": True, "backend": backend, "batch_sizes": batches, **merged}


def _replace_dir(staging: Path, out: Path) -> None:
    """Move the finished staging directory to `out`, replacing an old artifact (--overwrite)."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
        os.rename(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staging, out)
