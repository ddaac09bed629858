"""torchrun support: DistributedDataParallel when WORLD_SIZE > 1, a no-op wrapper otherwise."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.enabled:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BN running stats) to every rank. DDP broadcasts them at the
        start of each forward, so after the last step the ranks' local updates differ."""
        if self.enabled:
            for buffer in module.buffers():
                td.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.enabled:
            td.barrier()

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Run the block on each machine's first rank, then on the others: what it builds once
        (the data cache) the other ranks then read instead of building it again."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()

    def close(self) -> None:
        if self.enabled and td.is_initialized():
            td.destroy_process_group()


def setup_distributed() -> Distributed:
    """Read torchrun's environment; join the process group (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank, local_rank, world_size)
