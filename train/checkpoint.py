"""The checkpoint file format, built and read here only: one file holds everything a run needs
to continue exactly where it stopped (`training_state`, `load_checkpoint`), and the generator
export ships (`stored_generator`)."""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from runtime.errors import DcganError
from runtime.files import atomic_write_bytes
from train.config import ModelConfig
from train.models import DiscriminatorNet, GeneratorNet

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "model_config", "train_config", "generator", "discriminator",
                 "opt_g", "opt_d", "step", "epoch", "epoch_step", "rng", "latent_rng", "data_fingerprint")


class CheckpointError(DcganError):
    """The file is not a dcgan checkpoint, or cannot be read."""


def capture_rng() -> dict:
    """The RNG states training draws from (torch CPU, and every CUDA device if present)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_weights(module_cls, cfg, state: dict, what: str) -> None:
    """Check that a state dict's tensors have the shapes `module_cls(cfg)` expects, before
    anything is allocated (the module is built on the meta device): a config that disagrees with
    its weights, or asks for a huge model, is refused here, not after gigabytes of allocation."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in module_cls(cfg).state_dict().items()}
    if not isinstance(state, dict):
        raise CheckpointError(f"{what}: the weights are not a state dict")
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(got))
    if missing:
        raise CheckpointError(f"{what}: missing weights {', '.join(missing[:3])} — not a checkpoint "
                              "of this model")
    wrong = [k for k in expected if got[k] != expected[k]]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{what}: {k} has shape {list(got[k])} but the stored config "
                              f"implies {list(expected[k])} — the config and weights disagree")


def training_state(*, model_cfg, train_cfg, generator, discriminator, generator_ema, opt_g, opt_d,
                   step: int, epoch: int, epoch_step: int, latent_rng: torch.Generator,
                   best_quality: dict | None, data_fingerprint: str) -> dict:
    """The checkpoint of a run (REQUIRED_KEYS, plus `generator_ema` when G's weights are averaged)."""
    state = {"model_config": model_cfg.to_dict(), "train_config": asdict(train_cfg),
             "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
             "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
             "step": step, "epoch": epoch, "epoch_step": epoch_step,
             "rng": capture_rng(), "latent_rng": latent_rng.get_state(),
             "best_quality": best_quality, "data_fingerprint": data_fingerprint}
    if generator_ema is not None:
        state["generator_ema"] = generator_ema.state_dict()
    return state


@dataclass
class StoredGenerator:
    """What export takes from a checkpoint of ours."""

    config: ModelConfig
    weights: dict  # G's state dict
    which: str  # "generator_ema" (the averaged weights, shipped where present) or "generator"
    discriminator: dict | None
    step: int | None


def is_training_checkpoint(state: dict) -> bool:
    return "model_config" in state and "generator" in state


def stored_generator(state: dict, path: str | os.PathLike, ema: bool = True) -> StoredGenerator:
    """G's config and weights from a checkpoint (the EMA weights unless `ema` is False), each
    tensor's shape checked against the config before anything is built.

    Raises:
        CheckpointError: a newer format, a bad config, or weights that disagree with it.
    """
    check_format(state, path)
    try:
        cfg = ModelConfig.from_dict(state["model_config"])
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} has a bad model config: {e}") from None
    which = "generator_ema" if ema and "generator_ema" in state else "generator"
    check_weights(GeneratorNet, cfg, state[which], str(path))
    if "discriminator" in state:
        check_weights(DiscriminatorNet, cfg, state["discriminator"], str(path))
    return StoredGenerator(cfg, state[which], which, state.get("discriminator"), state.get("step"))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` (see REQUIRED_KEYS) atomically: the old file stays whole until the new one is."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_torch_file(path: str | os.PathLike) -> dict:
    """A torch file's top-level dict, loaded safely (`weights_only=True`, no code runs) onto
    the CPU: the one place checkpoints of any kind are read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist — train one with dcgan-train "
                              "(it writes runs/dcgan/checkpoints/last.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint or state dict")
    return state


def check_format(state: dict, path: str | os.PathLike) -> None:
    if state.get("format", CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']}, newer than this "
                              f"version reads ({CHECKPOINT_FORMAT}) — upgrade dcgan")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a training checkpoint safely (`weights_only=True`) onto the CPU.

    Raises:
        CheckpointError: missing file, not a torch file, or not a dcgan training checkpoint.
    """
    state = read_torch_file(path)
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a dcgan training checkpoint (missing {', '.join(missing)})")
    check_format(state, path)
    return state
