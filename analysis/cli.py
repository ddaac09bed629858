"""dcgan-analyze: the DCGAN paper's analyses on your model, as PNG figures and a JSON each."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from analysis.sources import AnalysisError, load_discriminator, load_images, open_generator
from runtime.cli_support import Debug, check_choice, new_app, run_app
from runtime.run_record import RunRecord

log = logging.getLogger("dcgan-analyze")
app = new_app(__doc__)

Source = Annotated[Path, typer.Argument(help="An artifact directory (dcgan-export) or a checkpoint "
                                             "(exported on the fly).")]
Checkpoint = Annotated[Path, typer.Argument(help="A dcgan-train checkpoint (holds G and D).")]
Seed = Annotated[int, typer.Option(min=0, help="Seed for latents and sampling.")]
Out = Annotated[Path, typer.Option(help="Where the figures and JSON go.")]
Data = Annotated[str, typer.Option(help="shapes, shapes:N, or a folder with one subfolder per class.")]


def _device() -> str:
    from train.device import pick_device

    return str(pick_device("auto"))


def _training_data(checkpoint: Path) -> str:
    from train.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint)["train_config"]["data"]


def _report(out: Path) -> None:
    typer.echo(f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")


@app.command()
def walk(source: Source, out: Out = Path("runs/analysis/walk"),
         rows: Annotated[int, typer.Option(min=1, help="Latent pairs, one row each.")] = 8,
         steps: Annotated[int, typer.Option(min=2, help="Images per row, endpoints included.")] = 10,
         method: Annotated[str, typer.Option(help="slerp or linear.")] = "slerp",
         seed: Seed = 0, debug: Debug = False) -> None:
    """Interpolations between random latent pairs (the paper's smooth transitions)."""
    from analysis.walk import latent_walk

    check_choice(method, ("slerp", "linear"), "--method")
    with tempfile.TemporaryDirectory() as tmp:
        with open_generator(source, Path(tmp)) as gen:
            latent_walk(gen, out, rows, steps, seed, method)
    _report(out)


@app.command()
def arithmetic(source: Source,
               a: Annotated[str, typer.Option("--a", help="Group A: indices of --run, or a .npy "
                                                         "of latents.")],
               b: Annotated[str, typer.Option("--b", help="Group B (subtracted).")],
               c: Annotated[str, typer.Option("--c", help="Group C (added).")],
               run: Annotated[Path | None, typer.Option(help="The dcgan-generate output directory the "
                                                             "indices refer to.")] = None,
               out: Out = Path("runs/analysis/arithmetic"), seed: Seed = 0,
               debug: Debug = False) -> None:
    """Vector arithmetic on averaged exemplars: mean(A) - mean(B) + mean(C), with neighbours."""
    from analysis.arithmetic import group_latents, vector_arithmetic

    if run is not None:
        RunRecord.read(run)  # a dcgan-generate run, or a one-line error before any work
    with tempfile.TemporaryDirectory() as tmp:
        with open_generator(source, Path(tmp)) as gen:
            za, zb, zc = (group_latents(gen, g, run) for g in (a, b, c))
            vector_arithmetic(gen, za, zb, zc, out, seed)
    _report(out)


@app.command()
def features(checkpoint: Checkpoint,
             data: Data = "shapes",
             labels_per_class: Annotated[int, typer.Option(
                 min=1, help="Training labels per class (the paper's SVHN test: 1000).")] = 1000,
             test_per_class: Annotated[int, typer.Option(min=1, help="Held-out images per class.")] = 500,
             svm_c: Annotated[float | None, typer.Option(
                 min=0.0, help="L2-SVM regularisation C [default: 3-fold CV on the training split "
                               "over 1e-4, 1e-3, 1e-2, 1e-1]")] = None,
             out: Out = Path("runs/analysis/features"), seed: Seed = 0,
             debug: Debug = False) -> None:
    """D's features as a representation: linear L2-SVM accuracy, trained D vs random D."""
    from analysis.classify import feature_classification

    d, cfg = load_discriminator(checkpoint)
    result = feature_classification(d, cfg, data, out, labels_per_class, test_per_class, svm_c,
                                    seed, _device())
    typer.echo(f"accuracy: trained D {result['accuracy_trained_d']:.1%}, random D "
               f"{result['accuracy_random_d']:.1%} (chance {result['chance']:.1%})")
    _report(out)


@app.command()
def neighbors(checkpoint: Checkpoint,
              data: Annotated[str | None, typer.Option(
                  help="Training data [default: the checkpoint's].")] = None,
              heldout_data: Annotated[str | None, typer.Option(help="Real images not trained on "
                                      "[default for shapes:N: images N, N+1, ...].")] = None,
              generated: Annotated[int, typer.Option(min=1, help="Generated samples.")] = 256,
              train_images: Annotated[int, typer.Option("--train", min=1, help="Training images "
                                                        "searched.")] = 5000,
              heldout: Annotated[int, typer.Option(min=1, help="Held-out real images.")] = 256,
              out: Out = Path("runs/analysis/neighbors"), seed: Seed = 0,
              debug: Debug = False) -> None:
    """The memorisation check: nearest training images of generated samples, and distances."""
    from analysis.neighbors import memorisation_check

    d, cfg = load_discriminator(checkpoint)
    data = data or _training_data(checkpoint)
    n_train_total = _length(data, cfg.nc)
    train, _, _ = _random_images(data, cfg.nc, train_images, seed)
    if heldout_data is None:
        if not data.startswith("shapes"):
            raise AnalysisError("--heldout-data is needed for folder or lmdb training data: real "
                                "images the model never saw")
        held, _, _ = load_images(f"shapes:{n_train_total + heldout}", cfg.nc,
                                 np.arange(n_train_total, n_train_total + heldout))
    else:
        n_held = _length(heldout_data, cfg.nc)
        held, _, _ = load_images(heldout_data, cfg.nc, np.arange(min(heldout, n_held)))
    with tempfile.TemporaryDirectory() as tmp:
        with open_generator(checkpoint, Path(tmp)) as gen:
            fake = gen.generate(generated, seed=seed)
    result = memorisation_check(fake, train, held, d, out, _device())
    typer.echo(result["verdict"])
    _report(out)


@app.command()
def visualize(checkpoint: Checkpoint,
              data: Data = "shapes",
              layer: Annotated[int, typer.Option(min=1, max=4, help="D's conv block, 1 (first) to 4.")] = 4,
              top: Annotated[int, typer.Option(min=1, help="Strongest feature maps shown.")] = 8,
              images: Annotated[int, typer.Option(min=1, help="Real images searched.")] = 512,
              out: Out = Path("runs/analysis/visualize"), seed: Seed = 0,
              debug: Debug = False) -> None:
    """Guided backpropagation of D's strongest features, beside a random-filter D."""
    from analysis.sources import random_discriminator
    from analysis.visualize import visualize_features

    d, cfg = load_discriminator(checkpoint)
    real, _, _ = _random_images(data, cfg.nc, images, seed)
    visualize_features(d, random_discriminator(cfg, seed), real, out, layer, top)
    _report(out)


@app.command()
def quality(source: Source,
            n: Annotated[int, typer.Option("--n", min=16, help="Samples scored (the anchors are "
                                                               "at 1024).")] = 1024,
            out: Out = Path("runs/analysis/quality"),
            seed: Annotated[int, typer.Option(min=0, help="Images 0..n-1 of this seed are scored.")
                            ] = 1,
            debug: Debug = False) -> None:
    """The shapes quality score. The strict checker: share of samples that are one clean shape of
    the spec, class balance of those, share of distinct samples. Then the continuous metrics
    (KID, Fréchet distance, precision/recall in the feature network's features, class shares of
    all samples, radius and colour against the spec), each beside its anchors: real renders, and
    renders at the edge of the strict checker. A checkpoint is scored as export ships it (EMA
    weights, BN recalibrated, eval mode); an artifact through the runtime."""
    from analysis.quality import score_source

    result, continuous = score_source(source, n, seed, out)
    typer.echo(f"{source}: {result.summary()}")
    if result.failures:
        typer.echo("failures: " + ", ".join(f"{k} {v}" for k, v in result.failures.items()))
    typer.echo(continuous.summary())
    _report(out)


@app.command("quality-curve")
def quality_curve(run_dir: Annotated[Path, typer.Argument(help="A dcgan-train run directory: "
                                                                "every checkpoints/*.pt is scored.")],
                  n: Annotated[int, typer.Option("--n", min=16, help="Samples per checkpoint.")] = 1024,
                  out: Out = Path("runs/analysis/quality-curve"),
                  seed: Annotated[int, typer.Option(min=0, help="Images 0..n-1 of this seed are "
                                                                "scored.")] = 1,
                  debug: Debug = False) -> None:
    """Score every checkpoint of a run (strict checker and continuous metrics) as export ships
    it: curve.json, a Markdown table (curve.md) with the anchors under it, and curve.png."""
    from analysis.curve import quality_curve as curve

    for row in curve(run_dir, n, seed, out):
        typer.echo(f"step {row['step']:>7} ({row['checkpoint']}): KID {row['kid']:.2e}, FD "
                   f"{row['fd']:.3g}, precision {row['precision']:.1%}, recall {row['recall']:.1%}, "
                   f"valid {row['valid']:.1%}")
    _report(out)


def _length(spec: str, nc: int) -> int:
    from train.data import open_dataset

    return len(open_dataset(spec, nc=nc))


def _random_images(spec: str, nc: int, count: int, seed: int):
    """`count` images of the data set `spec` (all of them if it has fewer), drawn by `seed`
    without replacement, in index order: load_images' (images, labels, indices)."""
    n = _length(spec, nc)
    pick = np.sort(np.random.default_rng(seed).choice(n, min(count, n), replace=False))
    return load_images(spec, nc, pick)


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-analyze"))


if __name__ == "__main__":
    main()
