"""The model config: one frozen dataclass, stored in every checkpoint so nothing is repeated later."""

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
