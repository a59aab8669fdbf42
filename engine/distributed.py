"""Data-parallel training across processes, on one machine or many, with Hugging Face accelerate: each
process holds the whole model, computes the loss on its share of every global batch, and accelerate's
DistributedDataParallel averages the gradients, so all processes take the same optimiser step.

Processes come from a launcher (`accelerate launch`, `torchrun`, or `anomascope train --processes N`, which
wraps torchrun); without one, training is the single-process loop it always was, with no wrapper at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .data import DataError


def launched() -> bool:
    """Whether a launcher started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """The process that writes what a run leaves behind (bundle, checkpoints, outputs): rank 0, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def process_device(preferred: str | None = None) -> torch.device:
    """The device this process trains or scores on: `preferred`, else the GPU, else the CPU; under a
    launcher a GPU is this process's own one (one per process, by local rank)."""
    if preferred:
        device = torch.device(preferred)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@dataclass
class Processes:
    """The training processes as this one sees them; `count` 1 and no accelerator when not launched."""

    count: int = 1
    rank: int = 0
    accelerator: Any = None  # accelerate.Accelerator under a launcher

    @classmethod
    def start(cls, device: torch.device) -> Processes:
        if not launched():
            return cls()
        from accelerate import Accelerator

        # The loop does its own autocast and device placement; accelerate only joins the processes.
        accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no", device_placement=False)
        return cls(accelerator.num_processes, accelerator.process_index, accelerator)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, global_batch: int) -> slice:
        """This process's part of a global batch of `global_batch` samples."""
        if global_batch % self.count:
            raise DataError(
                f"the batch size {global_batch} does not split evenly among {self.count} processes; "
                "pick a batch size that is a multiple of the process count"
            )
        size = global_batch // self.count
        return slice(self.rank * size, (self.rank + 1) * size)

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """The model wrapped for gradient averaging, and the optimiser; as they are with one process."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the processes (the global batch's loss from each process's share)."""
        return tensor if self.accelerator is None else self.accelerator.reduce(tensor, reduction="mean")

    def gather(self, value: Any) -> list:
        """`value` from every process, in rank order (on every process)."""
        if self.accelerator is None:
            return [value]
        gathered: list = [None] * self.count
        dist.all_gather_object(gathered, value)
        return gathered

    def wait(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
