"""The training loop: set-up, then one `gan_step` per batch, then the run's bookkeeping.

`train` checks everything that can fail before it touches the run directory (device, data,
checkpoint to resume), builds a `Run` (models, optimizers, counters, RNG streams and the files
they write) and loops over epochs of the dataset. Each batch is one update of D and G
(train/step.py); after it, the run logs metrics, scores quality, writes sample grids and saves
checkpoints. A checkpoint holds exactly the run's state, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from runtime.errors import Interrupted
from runtime.images import make_grid, save_image
from runtime.outdir import claimed
from train.checkpoint import restore_rng, save_checkpoint, training_state
from train.config import ModelConfig, TrainConfig
from train.continuous import load_anchors, score_continuous
from train.data import collate_uint8, open_dataset, to_unit_range
from train.device import check_bf16, pick_device
from train.distributed import Distributed, setup_distributed
from train.ema import ema_decay, update_ema
from train.errors import TrainingError
from train.latent import sample_latent
from train.models import build_models
from train.plot import plot_losses, plot_quality
from train.quality import score_images
from train.rundir import last_checkpoint, prepare_run_dir, stored_run
from train.shapes import CLASSES
from train.shipping import sample_images, shipping_generator
from train.step import StepResult, anneal_scale, gan_step

log = logging.getLogger(__name__)

SAMPLE_COUNT = 64  # images per sample grid (8x8): images 0..63 of SAMPLE_SEED, as dcgan-generate draws them
SAMPLE_SEED = 0
QUALITY_SEED = 1  # the quality score's latents: images 0..N-1 of this seed


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    generator: torch.nn.Module = field(repr=False)
    discriminator: torch.nn.Module = field(repr=False)
    generator_ema: torch.nn.Module | None = field(default=None, repr=False)


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
    state = None
    if resume:  # the stored run defines the model, the recipe and, unless given, the length
        state, model_cfg = stored_run(run_dir, cfg, model_cfg)

    # Everything that can fail is checked before the run directory is touched.
    device = pick_device(cfg.device, dist.local_rank)
    if cfg.bf16:
        check_bf16(device)
    with dist.local_main_first():
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
    total_steps = cfg.steps if cfg.steps is not None else (cfg.epochs or 1) * steps_per_epoch
    config = {"model": model_cfg.to_dict(), "train": {k: v for k, v in asdict(cfg).items()
                                                      if k not in ("epochs", "steps", "out")}}
    # One process at a time in a run directory: a second dcgan-train aimed at it is refused
    # before it writes anything (rank 0 holds the lock for the whole run).
    run_dir.mkdir(parents=True, exist_ok=True)
    with claimed(run_dir, "dcgan-train") if dist.is_main else contextlib.nullcontext():
        if dist.is_main:
            prepare_run_dir(run_dir, config, resume, overwrite)
        dist.barrier()
        return _loop(cfg, model_cfg, run_dir, dist, device, dataset, sampler, steps_per_epoch,
                     total_steps, state)


def _loop(cfg: TrainConfig, model_cfg: ModelConfig, run_dir: Path, dist: Distributed,
          device: torch.device, dataset, sampler: DistributedSampler, steps_per_epoch: int,
          total_steps: int, state: dict | None) -> TrainResult:
    """Build the run (or restore it from `state`) and train it to `total_steps`."""
    run = Run(cfg, model_cfg, run_dir, dist, device, dataset.fingerprint, steps_per_epoch)
    if state is not None:
        run.restore(state)
        log.info("resuming %s at step %d (epoch %d)", run_dir, run.step, run.epoch)
    run.score_quality = (cfg.quality_every > 0 and dataset.classes == list(CLASSES)
                         and model_cfg.nc == 3)
    g_train, d_train = dist.wrap(run.g, device), dist.wrap(run.d, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    with _stop_signals() as stop_signal, run.outputs(total_steps):
        while run.step < total_steps:
            for real in _epoch_batches(run, dataset, sampler):
                z = sample_latent(real.size(0), model_cfg, device, run.latent_rng)
                anneal = anneal_scale(cfg, run.step, total_steps)
                run.scale_learning_rates(anneal)
                result = gan_step(g_train, d_train, run.opt_g, run.opt_d, real, z, cfg, run.step,
                                  autocast, anneal)
                run.after_step(result, real.size(0), total_steps)
                if stop_signal:
                    if dist.is_main:
                        run.save()
                    name = signal.Signals(stop_signal[0]).name
                    raise Interrupted(stop_signal[0], f"stopped by {name}; checkpoint saved to "
                                      f"{last_checkpoint(run_dir)} — continue with --resume")
                if run.step >= total_steps or run.epoch_step == 0:
                    break  # a new epoch re-seeds the sampler
        dist.sync_buffers(run.g)
        dist.sync_buffers(run.d)
        if dist.is_main:
            run.finish()
    return TrainResult(run_dir, run.step, run.epoch, run.g, run.d, run.g_ema)


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of raising mid-step: the loop stops after the step it is in
    and saves a checkpoint."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _epoch_batches(run: Run, dataset, sampler: DistributedSampler) -> Iterator[torch.Tensor]:
    """The rest of the current epoch's batches, as float NCHW in [-1, 1] on the run's device."""
    cfg = run.cfg
    sampler.set_epoch(run.epoch)
    order = list(sampler)[run.epoch_step * cfg.batch_size:]
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=order,
                        num_workers=cfg.workers, collate_fn=collate_uint8, drop_last=True,
                        pin_memory=run.device.type == "cuda",
                        # its own generator: creating an iterator must not draw from the global
                        # RNG, or a resumed run would see different latents
                        generator=torch.Generator().manual_seed(cfg.seed + run.epoch))
    for images, _ in loader:
        # uint8 NHWC -> float NCHW in [-1, 1], the inverse of to_uint8
        real = to_unit_range(images.to(run.device, non_blocking=True).permute(0, 3, 1, 2))
        yield real.contiguous(memory_format=run.memory_format)


class Run:
    """One training run: models, optimizers, counters and RNG streams (what a checkpoint holds),
    and the files it writes (metrics, sample grids, quality scores, checkpoints, loss plot)."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, run_dir: Path,
                 dist: Distributed, device: torch.device, data_fingerprint: str,
                 steps_per_epoch: int):
        self.cfg, self.model_cfg, self.run_dir, self.dist = cfg, model_cfg, run_dir, dist
        self.device, self.data_fingerprint, self.steps_per_epoch = device, data_fingerprint, steps_per_epoch
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        torch.manual_seed(cfg.seed)
        self.g, self.d = build_models(model_cfg)
        self.g.to(device, memory_format=self.memory_format)
        self.d.to(device, memory_format=self.memory_format)
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False) if cfg.ema else None
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas)
        self.step = self.epoch = self.epoch_step = 0
        self.best: dict | None = None  # the lowest-KID quality score so far (checkpoints/best.pt)
        self.score_quality = False
        # Training latents come from their own stream, never the init's: reseeding the global RNG
        # with the init seed would make the first latents equal to G's first-layer weights / 0.02.
        self.latent_rng = torch.Generator().manual_seed(self._latent_seed())
        self.metrics = None
        self.bar = None
        self._t_last, self._images_since = time.perf_counter(), 0

    def scale_learning_rates(self, scale: float) -> None:
        """Both optimizers at `scale` times their configured learning rate (set every step, so a
        resumed run follows the same schedule)."""
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d or self.cfg.lr)):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _latent_seed(self) -> int:
        return self.cfg.seed * 1_000_003 + 7919 * (self.dist.rank + 1)

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict:
        return training_state(
            model_cfg=self.model_cfg, train_cfg=self.cfg, generator=self.g, discriminator=self.d,
            generator_ema=self.g_ema, opt_g=self.opt_g, opt_d=self.opt_d, step=self.step,
            epoch=self.epoch, epoch_step=self.epoch_step, latent_rng=self.latent_rng,
            best_quality=self.best, data_fingerprint=self.data_fingerprint)

    def restore(self, state: dict) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        if self.g_ema is not None:
            self.g_ema.load_state_dict(state.get("generator_ema", state["generator"]))
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.epoch, self.epoch_step = state["step"], state["epoch"], state["epoch_step"]
        self.best = state.get("best_quality")
        if self.dist.is_main:
            restore_rng(state["rng"])
            self.latent_rng.set_state(state["latent_rng"])
        else:  # only rank 0's stream is stored; other ranks continue on a fresh one
            self.latent_rng.manual_seed(self._latent_seed() + self.step)

    def save(self, name: str = "last") -> None:
        save_checkpoint(self.run_dir / "checkpoints" / f"{name}.pt", self.state())

    # -- after every step ----------------------------------------------------------------------

    def after_step(self, result: StepResult, batch: int, total_steps: int) -> None:
        """EMA update, divergence check, counters; then whatever this step is due to write."""
        cfg = self.cfg
        if self.g_ema is not None:
            update_ema(self.g_ema, self.g, ema_decay(cfg.ema, self.step))
        loss_d, loss_g = result.loss_d.item(), result.loss_g.item()
        if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
            path = last_checkpoint(self.run_dir)
            kept = (f"the last good checkpoint {path} was kept" if path.exists()
                    else "no checkpoint had been written yet")
            raise TrainingError(f"loss became non-finite at step {self.step + 1} "
                                f"(loss_d={loss_d}, loss_g={loss_g}) — lower --lr; {kept}")
        self.step += 1
        self.epoch_step += 1
        self._images_since += batch * self.dist.world_size
        self.bar.update(1)
        if self.step % cfg.log_every == 0 or self.step == total_steps:
            self._log_metrics(result.metrics())
        if self.dist.is_main and self.score_quality and self.step % cfg.quality_every == 0:
            self._log_quality()
            self._t_last = time.perf_counter()  # the score's time is not training time
        if self.epoch_step == self.steps_per_epoch:
            self.epoch, self.epoch_step = self.epoch + 1, 0
            if self.dist.is_main and self._epoch_end_writes():
                self._end_epoch()
        elif self.dist.is_main and self.step % cfg.save_every == 0:
            self.save()

    def _log_metrics(self, row: dict) -> None:
        now = time.perf_counter()
        rate = self._images_since / (now - self._t_last)
        self._t_last, self._images_since = now, 0
        self.bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                             img_s=f"{rate:.1f}")
        if self.metrics:
            row = {"step": self.step, "epoch": self.epoch, **row, "images_per_s": round(rate, 2)}
            self.metrics.write(json.dumps(row) + "\n")
            self.metrics.flush()

    def _epoch_end_writes(self) -> bool:
        """Whether this epoch end writes its grid, checkpoints and loss plot: every one on data
        of at least --save-every steps per epoch; on smaller data (a few hundred icons) only the
        one that passes the next multiple of --save-every, or writing would take longer than
        training. A function of the step alone, so a resumed run writes the same files."""
        every = self.cfg.save_every
        return self.step // every != (self.step - self.steps_per_epoch) // every

    def _end_epoch(self) -> None:
        self._write_samples(f"epoch_{self.epoch:03d}")
        if self.cfg.keep_every and self.epoch % self.cfg.keep_every == 0:
            self.save(f"epoch_{self.epoch:03d}")
        self.save()
        self._plot()

    def finish(self) -> None:
        """The end of the run: a last score, checkpoint, grid and loss plot."""
        if self.score_quality and self.step % self.cfg.quality_every:
            self._log_quality()
        self.save()
        if self.epoch_step:  # ended mid-epoch: the epoch-end grid was not written
            self._write_samples(f"step_{self.step:06d}")
        self._plot()

    def _plot(self) -> None:
        """loss.png, and quality.png where the run scores quality."""
        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
        if self.score_quality:
            plot_quality(self.run_dir / "metrics.jsonl", self.run_dir / "quality.png", load_anchors())

    # -- what the shipped generator draws ------------------------------------------------------

    def _shipped(self) -> torch.nn.Module:
        """The generator as export will ship it (EMA weights, BN recalibrated, eval mode)."""
        return shipping_generator(self.g_ema if self.g_ema is not None else self.g)

    def _write_samples(self, name: str, shipped: torch.nn.Module | None = None) -> None:
        grid = make_grid(sample_images(shipped or self._shipped(), SAMPLE_COUNT, SAMPLE_SEED), ncols=8)
        save_image(self.run_dir / "samples" / f"{name}.png", grid)
        save_image(self.run_dir / "samples" / "last.png", grid)

    def _log_quality(self) -> None:
        """Score the shipped generator with the strict checker and the continuous metrics (one
        `quality` record in metrics.jsonl holding both).

        checkpoints/best.pt is the checkpoint of the lowest KID so far: KID moves from the first
        steps on, where the valid share sits at 0 for most of a run. A best score recorded before
        KID was (a resumed older run) is replaced by the next score.
        """
        shipped = self._shipped()
        images = sample_images(shipped, self.cfg.quality_samples, QUALITY_SEED)
        result, continuous = score_images(images), score_continuous(images)
        self._write_samples(f"step_{self.step:06d}", shipped)
        record = {**result.to_dict(), **continuous.to_dict()}
        improved = self.best is None or continuous.kid < self.best.get("kid", float("inf"))
        if improved:
            self.best = {"step": self.step, **record}
        self.metrics.write(json.dumps({"step": self.step, "quality": record}) + "\n")
        self.metrics.flush()
        shares = ", ".join(f"{k} {v:.0%}" for k, v in continuous.class_shares.items())
        tqdm.write(f"step {self.step}: {result.summary()}; KID {continuous.kid:.2e}, precision "
                   f"{continuous.precision:.1%}, recall {continuous.recall:.1%}, {shares}")
        if improved:
            self.save("best")

    @contextmanager
    def outputs(self, total_steps: int) -> Iterator[None]:
        """Open the metrics file (main process) and the progress bar for the loop's duration."""
        self.metrics = open(self.run_dir / "metrics.jsonl", "a") if self.dist.is_main else None
        self.bar = tqdm(total=total_steps, initial=self.step, unit="step",
                        disable=not self.dist.is_main, dynamic_ncols=True)
        self._t_last, self._images_since = time.perf_counter(), 0
        try:
            yield
        finally:
            self.bar.close()
            if self.metrics:
                self.metrics.close()
