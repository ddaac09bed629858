"""Load a generator for export: our training checkpoints or pytorch/examples `netG_epoch_N.pth`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError
from runtime.files import sha256_file
from train.checkpoint import CheckpointError, is_training_checkpoint, read_torch_file, stored_generator
from train.config import ModelConfig
from train.models import DiscriminatorNet, GeneratorNet


@dataclass
class LoadedModel:
    generator: GeneratorNet  # in eval mode, fp32, on the CPU
    config: ModelConfig
    kind: str  # "dcgan" (our checkpoint) or "pytorch-examples" (a bare netG state dict)
    sha256: str  # of the checkpoint file
    step: int | None  # training step, where known
    path: str = ""  # the checkpoint as given
    discriminator: DiscriminatorNet | None = None
    weights: str = "generator"  # which weights G holds: "generator" or "generator_ema"


def config_from_generator_state(state: dict) -> ModelConfig:
    """Infer nz, ngf, nc from a pytorch/examples netG state dict's weight shapes."""
    try:
        nz, ngf8 = state["main.0.weight"].shape[:2]  # (nz, ngf*8, 4, 4)
        ngf, nc = state["main.12.weight"].shape[:2]  # (ngf, nc, 4, 4)
    except (KeyError, AttributeError, ValueError) as e:
        raise ExportError("the state dict has no DCGAN generator layout (main.0.weight, "
                          "main.12.weight) — pass a dcgan checkpoint or a netG_epoch_N.pth") from e
    if ngf8 != 8 * ngf:
        raise ExportError(f"main.0.weight has {ngf8} output channels, expected 8 x {ngf} — "
                          "this is not a DCGAN generator")
    return ModelConfig(nz=int(nz), ngf=int(ngf), nc=int(nc))


def load_for_export(path: str | Path, ema: bool = True) -> LoadedModel:
    """Read a checkpoint with `weights_only=True` and rebuild G (and D, when it is there).

    G takes the checkpoint's EMA weights where it has them, unless `ema` is False.
    """
    path = Path(path)
    try:
        state = read_torch_file(path)
        stored = stored_generator(state, path, ema) if is_training_checkpoint(state) else None
    except CheckpointError as e:
        raise ExportError(f"{e} — pass a dcgan checkpoint or a netG_epoch_N.pth") from e
    sha = sha256_file(path)
    if stored is not None:  # ours: export needs no training state
        g = GeneratorNet(stored.config)
        g.load_state_dict(stored.weights)
        d = None
        if stored.discriminator is not None:
            d = DiscriminatorNet(stored.config)
            d.load_state_dict(stored.discriminator)
            d.eval()
        return LoadedModel(g.eval(), stored.config, "dcgan", sha, stored.step, str(path), d,
                           stored.which)
    if "main.0.weight" in state and state["main.0.weight"].dim() == 4 and "main.12.weight" not in state:
        raise ExportError(f"{path} looks like a discriminator (netD) state dict — export needs "
                          "the generator, netG_epoch_N.pth")
    cfg = config_from_generator_state(state)
    g = GeneratorNet(cfg)
    try:
        g.load_state_dict(state)
    except RuntimeError as e:
        raise ExportError(f"{path} does not match the DCGAN generator layout: "
                          f"{str(e).splitlines()[0]}") from e
    return LoadedModel(g.eval(), cfg, "pytorch-examples", sha, None, str(path))
