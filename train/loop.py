"""The training loop: one function, read top to bottom (pytorch/examples dcgan update order)."""

from __future__ import annotations

import copy
import json
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from runtime.errors import DcganError
from runtime.files import atomic_write_text
from runtime.images import make_grid, save_image
from train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from train.config import ModelConfig
from train.data import collate_uint8, open_dataset, to_unit_range
from train.distributed import Distributed, setup_distributed
from train.ema import ema_decay, update_ema
from train.latent import sample_latent
from train.models import build_models
from train.plot import plot_losses
from train.quality import score_images
from train.shapes import CLASSES
from train.shipping import sample_images, shipping_generator

log = logging.getLogger(__name__)

# What a resumed run takes from its checkpoint rather than the command line: the recipe.
RECIPE_KEYS = ("data", "batch_size", "lr", "lr_d", "beta1", "beta2", "seed", "label_smoothing",
               "instance_noise", "instance_noise_floor", "instance_noise_steps", "r1_gamma",
               "r1_every", "ema", "recipe")

SAMPLE_COUNT = 64  # images per sample grid (8x8): images 0..63 of SAMPLE_SEED, as dcgan-generate draws them
SAMPLE_SEED = 0
QUALITY_SEED = 1  # the quality score's latents: images 0..N-1 of this seed


class TrainingError(DcganError):
    """A run that cannot start or cannot go on (bad run dir, diverged loss, ...)."""


class Interrupted(DcganError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved. `exit_code` is 128 + signal number."""

    def __init__(self, signum: int, checkpoint: Path):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint saved to {checkpoint}")


@dataclass
class TrainConfig:
    data: str = "shapes"  # shapes, shapes:N, an image folder or an lmdb directory
    out: str = "runs/dcgan"  # the run directory
    epochs: int = 1  # passes over the data (ignored when steps is set)
    steps: int | None = None  # total optimizer steps, overriding epochs
    batch_size: int = 128  # per process
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "auto"  # auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps
    bf16: bool = False  # bf16 autocast, CUDA only
    channels_last: bool = False
    workers: int = 2  # data-loader worker processes
    save_every: int = 500  # steps between rewrites of checkpoints/last.pt
    keep_every: int = 1  # keep checkpoints/epoch_K.pt every K epochs (0: never)
    log_every: int = 10  # steps between metrics.jsonl lines
    label_smoothing: float = 0.0  # D's target for real images is 1 - this (one-sided smoothing)
    instance_noise: float = 0.0  # std of Gaussian noise added to every image D sees, at step 0
    instance_noise_floor: float = 0.0  # the std it decays to (linearly) ...
    instance_noise_steps: int = 0  # ... over this many steps (0: constant)
    lr_d: float | None = None  # D's learning rate (None: lr)
    r1_gamma: float = 0.0  # R1 penalty weight, gamma/2 * E|grad D(x)|^2 on real images (Mescheder 2018)
    r1_every: int = 16  # lazy R1: applied every this many steps, scaled up to match
    ema: float = 0.0  # decay of an exponential moving average of G's weights (0: none)
    quality_every: int = 0  # steps between quality scores of the shipped G on shapes data (0: never)
    quality_samples: int = 256  # samples per quality score
    recipe: str = "paper"  # the recipe these settings came from (train/recipe.py), for the record
    cache_dir: str | None = None  # image cache for folder/lmdb data (default ~/.cache/dcgan)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    generator: torch.nn.Module = field(repr=False)
    discriminator: torch.nn.Module = field(repr=False)
    generator_ema: torch.nn.Module | None = field(default=None, repr=False)


DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def parse_device(name: str) -> torch.device:
    """A torch device from a --device string; TrainingError (one line) for anything else."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainingError(f"--device {name!r} is not a device — use {DEVICE_HELP}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"--device {name!r} is not supported — use {DEVICE_HELP}")
    return device


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = parse_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name} asked for CUDA, but torch sees no CUDA GPU "
                            f"(torch {torch.__version__}) — use --device cpu or a CUDA build of torch")
    return device


def with_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Instance noise (Sønderby et al., 2016): D sees a noisy view of real and fake images alike,
    which keeps it from winning on pixel-exact cues (the flat colours of `shapes`)."""
    if not std:
        return x
    n, c, h, w = x.shape
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):
        # drawn NHWC and viewed as NCHW: randn_like on a channels_last tensor is ~8x slower
        noise = torch.randn(n, h, w, c, device=x.device, dtype=x.dtype).permute(0, 3, 1, 2)
    else:
        noise = torch.randn(x.shape, device=x.device, dtype=x.dtype)
    return x + std * noise


def noise_std(cfg: TrainConfig, step: int) -> float:
    """Instance noise at `step`: from cfg.instance_noise down to its floor, linearly."""
    if cfg.instance_noise_steps <= 0:
        return cfg.instance_noise
    left = max(0.0, 1.0 - step / cfg.instance_noise_steps)
    return cfg.instance_noise_floor + (cfg.instance_noise - cfg.instance_noise_floor) * left


def r1_penalty(out_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E |grad_x D(x)|^2 over the batch, differentiable (for the R1 term)."""
    (grad,) = torch.autograd.grad(out_real.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def _read_config(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None


def prepare_run_dir(run_dir: Path, config: dict, resume: bool, overwrite: bool) -> None:
    """Create the run directory, refusing to clobber another run unless asked. A directory with
    a config but no checkpoint holds a run that never saved a step: it is started afresh."""
    config_path = run_dir / "config.json"
    started = (run_dir / "checkpoints" / "last.pt").exists()
    if config_path.exists() and started and not (resume or overwrite):
        held = json.loads(config_path.read_text())
        what = "a run with a different config" if held != config else "a run"
        raise TrainingError(f"{run_dir} already holds {what} — pass --resume to continue it, "
                            "--overwrite to start over, or --out for a new directory")
    if (overwrite or not started) and not resume:
        for pattern in ("checkpoints/*.pt", "samples/*.png", "metrics.jsonl", "loss.png"):
            for p in run_dir.glob(pattern):
                p.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if not resume:
        atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False,
          overwrite: bool = False) -> TrainResult:
    """Train G and D; see TrainConfig for every knob. Returns the final (unwrapped) models.

    Raises:
        TrainingError: bad run directory or device, or a non-finite loss (the last good
            checkpoint is kept).
        Interrupted: SIGINT/SIGTERM, after saving checkpoints/last.pt.
    """
    dist = setup_distributed()
    try:
        return _train(cfg, model_cfg, resume, overwrite, dist)
    finally:
        dist.close()


def _train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool, overwrite: bool,
           dist: Distributed) -> TrainResult:
    run_dir = Path(cfg.out)
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if resume and not ckpt_path.exists():
        raise TrainingError(f"--resume: no checkpoint at {ckpt_path} — drop --resume to start a new run")
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:  # the stored run defines the model and the recipe; only length may change
        held = _read_config(run_dir)
        if held is not None and held.get("model") != state["model_config"]:
            raise TrainingError(f"--resume: {ckpt_path} holds a model of another configuration "
                                f"({state['model_config']}) than {run_dir / 'config.json'} "
                                f"({held.get('model')}) — start a new run with --out")
        try:
            model_cfg = ModelConfig.from_dict(state["model_config"])
        except (TypeError, ValueError) as e:
            raise TrainingError(f"--resume: {ckpt_path} has a bad model config ({e})") from None
        stored = state["train_config"]
        for key in RECIPE_KEYS:
            setattr(cfg, key, stored.get(key, getattr(cfg, key)))

    # Everything that can fail is checked before the run directory is touched.
    device = pick_device(cfg.device, dist.local_rank)
    if cfg.bf16 and device.type != "cuda":
        raise TrainingError("--bf16 autocast needs a CUDA device — drop --bf16 on "
                            f"{device.type}")
    dataset = open_dataset(cfg.data, nc=model_cfg.nc,
                           cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None)
    if state is not None and state["data_fingerprint"] != dataset.fingerprint:
        raise TrainingError(f"--resume: the data changed since {run_dir} started "
                            f"({state['data_fingerprint']} then, {dataset.fingerprint} now) — "
                            "resume with the same --data, or start a new run")
    # DistributedSampler with explicit rank/world also serves a single process: the epoch's
    # order is a pure function of (seed, epoch), which makes mid-epoch resume exact.
    sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"the dataset has {len(dataset)} images, fewer than one batch of "
                            f"{cfg.batch_size} per process — lower --batch-size or add data")
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    config = {"model": model_cfg.to_dict(), "train": {k: v for k, v in asdict(cfg).items()
                                                      if k not in ("epochs", "steps", "out")}}
    if dist.is_main:
        prepare_run_dir(run_dir, config, resume, overwrite)
    dist.barrier()

    torch.manual_seed(cfg.seed)
    g, d = build_models(model_cfg)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    g.to(device, memory_format=memory_format)
    d.to(device, memory_format=memory_format)
    g_ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema else None
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2))
    step, epoch, epoch_step, best = 0, 0, 0, None
    # Training latents come from their own stream, never the init's: reseeding the global RNG
    # with the init seed would make the first latents equal to G's first-layer weights / 0.02.
    latent_rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * (dist.rank + 1))
    if state is not None:
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["discriminator"])
        if g_ema is not None:
            g_ema.load_state_dict(state.get("generator_ema", state["generator"]))
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, epoch, epoch_step = state["step"], state["epoch"], state["epoch_step"]
        best = state.get("best_quality")
        if dist.is_main:
            restore_rng(state["rng"])
            latent_rng.set_state(state["latent_rng"])
        else:  # only rank 0's stream is stored; other ranks continue on a fresh one
            latent_rng.manual_seed(cfg.seed * 1_000_003 + 7919 * (dist.rank + 1) + step)
        log.info("resuming %s at step %d (epoch %d)", run_dir, step, epoch)
    g_train, d_train = dist.wrap(g, device), dist.wrap(d, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    score_quality = cfg.quality_every > 0 and dataset.classes == list(CLASSES) and model_cfg.nc == 3

    def checkpoint_state() -> dict:
        state = {"model_config": model_cfg.to_dict(), "train_config": asdict(cfg),
                 "generator": g.state_dict(), "discriminator": d.state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                 "epoch": epoch, "epoch_step": epoch_step, "rng": capture_rng(),
                 "latent_rng": latent_rng.get_state(), "best_quality": best,
                 "data_fingerprint": dataset.fingerprint}
        if g_ema is not None:
            state["generator_ema"] = g_ema.state_dict()
        return state

    def write_samples(name: str) -> None:
        """The shipped generator's grid (EMA weights, BN recalibrated, runtime latents)."""
        shipped = shipping_generator(g_ema if g_ema is not None else g)
        grid = make_grid(sample_images(shipped, SAMPLE_COUNT, SAMPLE_SEED), ncols=8)
        save_image(run_dir / "samples" / f"{name}.png", grid)
        save_image(run_dir / "samples" / "last.png", grid)

    def log_quality() -> None:
        """Score the shipped generator; keep checkpoints/best.pt by the valid share."""
        nonlocal best
        shipped = shipping_generator(g_ema if g_ema is not None else g)
        result = score_images(sample_images(shipped, cfg.quality_samples, QUALITY_SEED))
        grid = make_grid(sample_images(shipped, SAMPLE_COUNT, SAMPLE_SEED), ncols=8)
        save_image(run_dir / "samples" / f"step_{step:06d}.png", grid)
        save_image(run_dir / "samples" / "last.png", grid)
        improved = best is None or result.valid > best["valid"]
        if improved:
            best = {"step": step, **result.to_dict()}
        metrics.write(json.dumps({"step": step, "quality": result.to_dict()}) + "\n")
        metrics.flush()
        tqdm.write(f"step {step}: {result.summary()}")
        if improved:
            save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint_state())

    stop_signal: list[int] = []
    previous_handlers = {s: signal.signal(s, lambda signum, _: stop_signal.append(signum))
                         for s in (signal.SIGINT, signal.SIGTERM)}
    metrics = open(run_dir / "metrics.jsonl", "a") if dist.is_main else None
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not dist.is_main,
               dynamic_ncols=True)
    t_last, images_since = time.perf_counter(), 0
    try:
        while step < total_steps:
            sampler.set_epoch(epoch)
            order = list(sampler)[epoch_step * cfg.batch_size:]
            loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=order,
                                num_workers=cfg.workers, collate_fn=collate_uint8, drop_last=True,
                                pin_memory=device.type == "cuda",
                                # its own generator: creating an iterator must not draw from the
                                # global RNG, or a resumed run would see different latents
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            for images, _ in loader:
                # uint8 NHWC -> float NCHW in [-1, 1], the inverse of to_uint8
                real = to_unit_range(images.to(device, non_blocking=True).permute(0, 3, 1, 2))
                real = real.contiguous(memory_format=memory_format)
                b = real.size(0)
                ones = torch.ones(b, device=device)
                real_targets = torch.full((b,), 1.0 - cfg.label_smoothing, device=device)
                zeros = torch.zeros(b, device=device)
                z = sample_latent(b, model_cfg, device, latent_rng)
                noise = noise_std(cfg, step)
                lazy_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0

                # (1) D: maximise log D(x) + log(1 - D(G(z))), plus R1 on real images
                opt_d.zero_grad(set_to_none=True)
                real_in = with_noise(real, noise)
                if lazy_r1:
                    real_in = real_in.detach().requires_grad_(True)
                with autocast:
                    out_real = d_train(real_in).float()
                    loss_real = F.binary_cross_entropy_with_logits(out_real, real_targets)
                if lazy_r1:
                    loss_real = loss_real + cfg.r1_gamma / 2 * cfg.r1_every * r1_penalty(out_real, real_in)
                loss_real.backward()
                with autocast:
                    fake = g_train(z)
                    out_fake = d_train(with_noise(fake.detach(), noise)).float()
                    loss_fake = F.binary_cross_entropy_with_logits(out_fake, zeros)
                loss_fake.backward()
                opt_d.step()

                # (2) G: maximise log D(G(z)) (real labels for fakes)
                opt_g.zero_grad(set_to_none=True)
                with autocast:
                    out_gen = d_train(with_noise(fake, noise)).float()
                    loss_g = F.binary_cross_entropy_with_logits(out_gen, ones)
                loss_g.backward()
                opt_g.step()
                if g_ema is not None:
                    update_ema(g_ema, g, ema_decay(cfg.ema, step))

                loss_d = (loss_real + loss_fake).item()
                loss_g_value = loss_g.item()
                if not (math.isfinite(loss_d) and math.isfinite(loss_g_value)):
                    kept = (f"the last good checkpoint {ckpt_path} was kept" if ckpt_path.exists()
                            else "no checkpoint had been written yet")
                    raise TrainingError(
                        f"loss became non-finite at step {step + 1} (loss_d={loss_d}, "
                        f"loss_g={loss_g_value}) — lower --lr; {kept}")
                step += 1
                epoch_step += 1
                images_since += b * dist.world_size
                bar.update(1)
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    rate = images_since / (now - t_last)
                    t_last, images_since = now, 0
                    row = {"step": step, "epoch": epoch, "loss_d": loss_d, "loss_g": loss_g_value,
                           "d_x": torch.sigmoid(out_real).mean().item(),
                           "d_g_z": torch.sigmoid(out_fake).mean().item(),
                           "d_g_z_after": torch.sigmoid(out_gen).mean().item(),
                           "instance_noise": noise, "images_per_s": round(rate, 2)}
                    bar.set_postfix(loss_d=f"{loss_d:.3f}", loss_g=f"{loss_g_value:.3f}",
                                    img_s=f"{rate:.1f}")
                    if metrics:
                        metrics.write(json.dumps(row) + "\n")
                        metrics.flush()
                if dist.is_main and score_quality and step % cfg.quality_every == 0:
                    log_quality()
                    t_last = time.perf_counter()  # the score's time is not training time
                if epoch_step == steps_per_epoch:
                    epoch, epoch_step = epoch + 1, 0
                    if dist.is_main:
                        write_samples(f"epoch_{epoch:03d}")
                        if cfg.keep_every and epoch % cfg.keep_every == 0:
                            save_checkpoint(run_dir / "checkpoints" / f"epoch_{epoch:03d}.pt",
                                            checkpoint_state())
                        save_checkpoint(ckpt_path, checkpoint_state())
                        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
                elif dist.is_main and step % cfg.save_every == 0:
                    save_checkpoint(ckpt_path, checkpoint_state())
                if stop_signal:
                    if dist.is_main:
                        save_checkpoint(ckpt_path, checkpoint_state())
                    raise Interrupted(stop_signal[0], ckpt_path)
                if step >= total_steps or epoch_step == 0:
                    break  # a new epoch re-seeds the sampler
        dist.sync_buffers(g)
        dist.sync_buffers(d)
        if dist.is_main:
            if score_quality and step % cfg.quality_every:
                log_quality()
            save_checkpoint(ckpt_path, checkpoint_state())
            if epoch_step:  # ended mid-epoch: the epoch-end grid was not written
                write_samples(f"step_{step:06d}")
            plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
    finally:
        bar.close()
        if metrics:
            metrics.close()
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    return TrainResult(run_dir, step, epoch, g, d, g_ema)
