"""dcgan-train: train the paper's DCGAN on shapes, an image folder or an LSUN lmdb."""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Annotated

import typer

from runtime.cli_support import Debug, check_choice, new_app, run_app
from runtime.latents import DISTRIBUTIONS
from train.augment import parse_policy
from train.config import ModelConfig, TrainConfig
from train.device import parse_device
from train.errors import TrainingError
from train.loop import train
from train.recipe import RECIPE_NAMES, RECIPE_SETTINGS, recipe_settings

log = logging.getLogger("dcgan-train")
app = new_app(__doc__)
DEFAULTS = TrainConfig()


@app.command()
def train_command(
    data: Annotated[str, typer.Option(help="shapes, shapes:N, an image folder (recursive; one "
                                           "subfolder per class or flat) or an LSUN lmdb directory.")
                    ] = DEFAULTS.data,
    out: Annotated[str, typer.Option(help="Run directory for config, checkpoints, samples, "
                                          "metrics.")] = DEFAULTS.out,
    epochs: Annotated[int | None, typer.Option(min=1, help="Passes over the data [default: 1; "
                                                           "--resume: the run's own length].",
                                               show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Total optimizer steps; overrides "
                                                          "--epochs.")] = None,
    recipe: Annotated[str, typer.Option(help="Training recipe: auto (shapes on shapes data, "
                                             "paper elsewhere), paper (Radford et al. exactly), "
                                             "shapes. Options below override single settings.")
                      ] = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per step, per process "
                                                   "[paper: 128].", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Adam learning rate of G (and D "
                                             "unless --lr-d) [paper: 2e-4].", show_default=False)
                  ] = None,
    lr_d: Annotated[float | None, typer.Option(min=0.0, help="Adam learning rate of D.",
                                               show_default=False)] = None,
    beta1: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Adam beta1 [paper: 0.5].",
                                                show_default=False)] = None,
    beta2: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Adam beta2 [paper: 0.999].",
                                                show_default=False)] = None,
    nz: Annotated[int, typer.Option(min=1, help="Latent size.")] = ModelConfig.nz,
    ngf: Annotated[int, typer.Option(min=1, help="Generator width.")] = ModelConfig.ngf,
    ndf: Annotated[int, typer.Option(min=1, help="Discriminator width.")] = ModelConfig.ndf,
    nc: Annotated[int, typer.Option(min=1, max=3, help="Image channels: 3 (RGB) or 1 (grey).")
                  ] = ModelConfig.nc,
    latent: Annotated[str, typer.Option(help="Latent distribution: normal N(0,1) or uniform "
                                             "U(-1,1).")] = ModelConfig.latent,
    label_smoothing: Annotated[float | None, typer.Option(
        min=0.0, max=0.5, help="One-sided label smoothing: D's target for real images is 1 - this.",
        show_default=False)] = None,
    instance_noise: Annotated[float | None, typer.Option(
        min=0.0, help="Std of Gaussian noise added to every image D sees, at the start.",
        show_default=False)] = None,
    instance_noise_floor: Annotated[float | None, typer.Option(
        min=0.0, help="The std instance noise decays to.", show_default=False)] = None,
    instance_noise_steps: Annotated[int | None, typer.Option(
        min=0, help="Steps over which instance noise decays linearly to its floor (0: constant).",
        show_default=False)] = None,
    r1_gamma: Annotated[float | None, typer.Option(
        min=0.0, help="R1 gradient penalty on real images, weight gamma (0: none).",
        show_default=False)] = None,
    r1_every: Annotated[int | None, typer.Option(
        min=1, help="Apply R1 every N steps (lazy regularisation).", show_default=False)] = None,
    ema: Annotated[float | None, typer.Option(
        min=0.0, max=0.99999, help="Decay of the moving average of G's weights that export "
                                   "ships (0: none).", show_default=False)] = None,
    anneal_from: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Share of the run after which both learning rates and the "
                               "instance noise fall linearly to 0 (1: never).",
        show_default=False)] = None,
    augment: Annotated[str | None, typer.Option(
        help="Differentiable augmentation of real and generated images alike, before D: a "
             "comma-separated list of translation, cutout ('' for none).", show_default=False)
                       ] = None,
    quality_every: Annotated[int, typer.Option(min=0, help="Steps between quality scores of the "
                                               "shipped G on shapes data (0: never): the strict "
                                               "checker and the continuous metrics; best.pt is "
                                               "the lowest KID.")] = DEFAULTS.quality_every,
    quality_samples: Annotated[int, typer.Option(min=16, help="Samples per quality score (the "
                                                 "continuous metrics' anchors are at 1024).")
                               ] = DEFAULTS.quality_samples,
    seed: Annotated[int, typer.Option(min=0, help="Seed for init, data order and latents.")
                    ] = DEFAULTS.seed,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, "
                                             "mps.")] = DEFAULTS.device,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast: faster on GPUs and on CPUs with "
                                            "AVX512-BF16 or AMX.")] = DEFAULTS.bf16,
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format (faster on "
                                                     "CPU and tensor cores).")
                             ] = DEFAULTS.channels_last,
    workers: Annotated[int, typer.Option(min=0, help="Data-loader worker processes.")
                       ] = DEFAULTS.workers,
    save_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints/last.pt "
                                                        "rewrites.")] = DEFAULTS.save_every,
    keep_every: Annotated[int, typer.Option(min=0, help="Keep checkpoints/epoch_K.pt every K "
                                                        "epochs (0: never). On data of fewer "
                                                        "than --save-every steps per epoch, "
                                                        "epoch ends write at most once per "
                                                        "--save-every steps.")
                          ] = DEFAULTS.keep_every,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics.jsonl lines.")
                         ] = DEFAULTS.log_every,
    cache_dir: Annotated[str | None, typer.Option(help="Image cache for shapes, folder and lmdb data "
                                                       "[default: ~/.cache/dcgan].")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from "
                                              "checkpoints/last.pt (its config is kept).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start over in an --out that holds a run.")
                         ] = False,
    debug: Debug = False,
) -> None:
    """Train the DCGAN. With no options: the built-in shapes data into runs/dcgan/.

    The run directory gets config.json, checkpoints/last.pt (resumable), samples/ (a fixed-noise
    grid per epoch), metrics.jsonl, loss.png and on shapes quality.png. SIGINT/SIGTERM save a
    checkpoint and exit 130/143; --resume continues bit-exactly on CPU. Under torchrun, trains
    with DDP.
    """
    options = dict(locals())  # every option above, by the name of the config field it sets
    check_choice(latent, DISTRIBUTIONS, "--latent")
    check_choice(recipe, RECIPE_NAMES, "--recipe")
    if device != "auto":
        try:
            parse_device(device)
        except TrainingError as e:
            raise typer.BadParameter(str(e)) from None
    if augment is not None:
        try:
            parse_policy(augment)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
    if nc not in (1, 3):
        raise typer.BadParameter(f"--nc must be 1 or 3, got {nc}")
    model_cfg = ModelConfig(**_fields_of(ModelConfig, options))
    # the recipe fills each of its settings the user left unset (None)
    given = {k: options[k] for k in RECIPE_SETTINGS}
    recipe, settings = recipe_settings(recipe, data, given)
    cfg = TrainConfig(**{**_fields_of(TrainConfig, options), **settings, "recipe": recipe})
    if data == DEFAULTS.data and out == DEFAULTS.out:
        log.info("training on the built-in shapes data into %s/ (defaults)", out)
    if not resume:
        changed = ", ".join(f"{k}={v}" for k, v in given.items() if v is not None)
        log.info("recipe %s%s: %s", recipe, f" (with {changed})" if changed else "",
                 ", ".join(f"{k}={v}" for k, v in settings.items()))
    result = train(cfg, model_cfg, resume=resume, overwrite=overwrite)
    log.info("done: step %d, checkpoint %s, samples %s", result.step,
             result.run_dir / "checkpoints" / "last.pt", result.run_dir / "samples" / "last.png")


def _fields_of(config_cls, options: dict) -> dict:
    """The options that are fields of the dataclass `config_cls`."""
    return {f.name: options[f.name] for f in fields(config_cls) if f.name in options}


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-train"))


if __name__ == "__main__":
    main()
