"""The two configs every checkpoint stores: the model (frozen) and the training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from runtime.latents import DISTRIBUTIONS  # the latent distributions; one definition, the runtime's

LIMITS = {"nz": 65536, "ngf": 4096, "ndf": 4096, "nc": 3}  # sanity bounds: a config is data too


@dataclass(frozen=True)
class ModelConfig:
    nz: int = 100  # latent size; G's input is (N, nz) or (N, nz, 1, 1)
    ngf: int = 64  # G's width: channels of its last hidden layer (first is ngf*8)
    ndf: int = 64  # D's width: channels of its first layer (last hidden is ndf*8)
    nc: int = 3  # image channels (3 for RGB, 1 for grey)
    image_size: int = 64  # the paper's architecture is fixed at 64x64
    latent: str = "normal"  # z ~ N(0, 1) ("normal") or U(-1, 1) ("uniform")

    def __post_init__(self) -> None:
        for name, most in LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValueError(f"{name} must be an int in [1, {most}], got {value!r}")
        if self.image_size != 64:
            raise ValueError(f"image_size must be 64 (the DCGAN architecture), got {self.image_size}")
        if self.latent not in DISTRIBUTIONS:
            raise ValueError(f"latent must be one of {DISTRIBUTIONS}, got {self.latent!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainConfig:
    data: str = "shapes"  # shapes, shapes:N, an image folder or an lmdb directory
    out: str = "runs/dcgan"  # the run directory
    # passes over the data (ignored when steps is set). None: 1 for a new run; a resume with
    # neither this nor steps keeps the length the run was started with.
    epochs: int | None = None
    steps: int | None = None  # total optimizer steps, overriding epochs
    batch_size: int = 128  # per process
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "auto"  # auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps
    bf16: bool = False  # bf16 autocast (CUDA GPUs, CPUs with AVX512-BF16 or AMX)
    channels_last: bool = True  # channels_last memory format (faster on CPU and tensor cores)
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
    anneal_from: float = 1.0  # share of the run after which both learning rates and the
    #                           instance noise fall linearly to 0 at its end (1.0: never)
    augment: str = ""  # differentiable augmentation of what D sees: "translation,cutout" ("" none)
    quality_every: int = 500  # steps between quality scores of the shipped G on shapes data (0: never)
    quality_samples: int = 1024  # samples per quality score (the metrics' anchors are at 1,024)
    recipe: str = "paper"  # the recipe these settings came from (train/recipe.py), for the record
    cache_dir: str | None = None  # image cache for shapes, folder and lmdb data (default ~/.cache/dcgan)
