"""Which torch device a run trains on, from a --device string."""

from __future__ import annotations

import torch

from train.errors import TrainingError

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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively, so that bf16 autocast is faster, not slower:
    CUDA GPUs from Ampere on, and CPUs with AVX512-BF16 or AMX (oneDNN runs bf16 convolutions
    there; elsewhere it emulates them at a fraction of fp32's speed)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def check_bf16(device: torch.device) -> None:
    """TrainingError (one line) when --bf16 would not speed training up on `device`."""
    if not native_bf16(device):
        what = (f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has neither AVX512-BF16 "
                "nor AMX" if device.type == "cpu" else f"{device} has no native bf16")
        raise TrainingError(f"--bf16 autocast needs native bf16 and {what} — drop --bf16")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: this process's CUDA GPU, else MPS, else the CPU; any other name as parsed, with a
    one-line error for CUDA that torch cannot see."""
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
