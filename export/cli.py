"""dcgan-export: fold BN, write verified ONNX / TensorRT / Triton artifacts with a manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from export.artifact import FORMATS, ONNX_PRECISIONS, ExportOptions, export_artifact
from export.errors import ExportError
from export.onnx_graph import LAYOUTS
from export.tensorrt_build import Profile
from runtime.cli_support import Debug, check_choice, default_input, new_app, run_app

log = logging.getLogger("dcgan-export")
app = new_app(__doc__)
DEFAULT_CHECKPOINT = Path("runs/dcgan/checkpoints/last.pt")
DEFAULT_OUT = Path("artifacts/dcgan")


@app.command()
def export_command(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A dcgan-train checkpoint or a pytorch/examples netG_epoch_N.pth "
             f"[default: {DEFAULT_CHECKPOINT}].", show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", "-f", help=f"What to build: {', '.join(FORMATS)}. "
                                        "ONNX (fp32 and fp16) is always built.")] = "onnx",
    out: Annotated[Path, typer.Option(help="Artifact directory.")] = DEFAULT_OUT,
    precision: Annotated[str, typer.Option(help="TensorRT engine precision: fp32 or fp16.")] = "fp32",
    min_batch: Annotated[int, typer.Option(min=1, help="Engine profile: smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option(min=1, help="Engine profile: the batch TensorRT tunes "
                                                       "its kernels for.")] = 64,
    max_batch: Annotated[int, typer.Option(min=1, help="Engine profile: largest batch; Triton's "
                                                       "max_batch_size.")] = 256,
    recalibrate_bn: Annotated[int, typer.Option(min=1, help="Re-estimate BN statistics on N "
                                                "batches of 64 latents before folding.")] = 50,
    no_recalibrate_bn: Annotated[bool, typer.Option("--no-recalibrate-bn", help="Keep the "
                                 "checkpoint's BN running statistics.")] = False,
    layout: Annotated[str, typer.Option(help="How stride-2 transposed convolutions are written: "
                                        "subpixel (4 convolutions + DepthToSpace, faster on "
                                        "ONNX Runtime's CPU provider) or convtranspose.")
                      ] = ExportOptions.layout,
    onnx_precisions: Annotated[str | None, typer.Option(
        help="Comma-separated ONNX models to write, each required to verify (e.g. fp32,int8) "
             "[default: fp32, plus fp16 and int8 where they verify; one that does not is left "
             "out and the manifest says why].", show_default=False)] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the last training weights of G, "
                      "not their moving average (used by default where the checkpoint has it).")
                      ] = False,
    device: Annotated[int, typer.Option(min=0, help="CUDA device for TensorRT.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    debug: Debug = False,
) -> None:
    """Export a trained generator. With no checkpoint: runs/dcgan/checkpoints/last.pt ->
    artifacts/dcgan/.

    Every model written is first checked against the PyTorch reference (eval mode, fp32, BN
    unfolded). A required model that fails writes nothing and exits 1; an optional one (fp16,
    int8 by default) that fails is left out, and the manifest and the log say why.
    """
    check_choice(format, FORMATS, "--format")
    check_choice(precision, ("fp32", "fp16"), "--precision")
    check_choice(layout, LAYOUTS, "--layout")
    wanted = None
    if onnx_precisions is not None:
        wanted = tuple(p.strip() for p in onnx_precisions.split(",") if p.strip())
        for p in wanted:
            check_choice(p, ONNX_PRECISIONS, "--onnx-precisions")
    profile = Profile(min_batch, opt_batch, max_batch)
    try:
        profile.check()
    except ExportError as e:
        raise typer.BadParameter(str(e)) from None
    checkpoint = default_input(checkpoint, DEFAULT_CHECKPOINT, "checkpoint", "dcgan-train",
                               "runs/dcgan/")
    if out == DEFAULT_OUT:
        log.info("writing %s/ (default --out)", out)
    opts = ExportOptions(format=format, precision=precision,
                         recalibrate_batches=0 if no_recalibrate_bn else recalibrate_bn,
                         profile=profile, device=device,
                         overwrite=overwrite, layout=layout, ema=not no_ema,
                         onnx_precisions=wanted)
    manifest = export_artifact(checkpoint, out, opts)
    for name, entry in manifest["files"].items():
        v = manifest["verification"].get(name, {})
        u8 = (f"uint8 max diff {v['uint8_max_diff']}, mean {v['uint8_mean_diff']:.2f}"
              if v.get("verified") else "")
        status = (f"max abs {v['max_abs']:.2e}, {u8}" if v.get("verified") and "max_abs" in v
                  else u8 or f"not verified: {v.get('reason', '-')}")
        log.info("  %-18s %s %s  (%s)", name, entry["kind"], entry["precision"], status)
    for skip in manifest["skipped"]:
        log.info("  left out %s: %s", skip.get("file", skip["format"]), skip["reason"])
    if "triton" in manifest:
        log.info("  triton/            models %s", ", ".join(manifest["triton"]["models"]))
    log.info("artifact ready: %s", out)


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-export"))


if __name__ == "__main__":
    main()
