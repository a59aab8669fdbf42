"""A reusable training loop: seeded batches, Adam/AdamW, EMA, clipping, checkpoints and resume, on one
process or data-parallel across several (engine/distributed.py)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .distributed import Processes, process_device
from .nets.precision import REDUCED_DTYPES

CHECKPOINT_NAME = "checkpoint.pt"
LOSS_READ_EVERY = 25
NOISE_SEED_STRIDE = 7919  # apart from the batch seed (seed) and the main process's noise seed (seed + 1)


def pick_device(preferred: str | None = None) -> torch.device:
    """`preferred`, else the GPU (this process's own one under a launcher), else the CPU."""
    return process_device(preferred)


class EMA:
    """Exponential moving average of weights, warmed up as min(decay, (1 + n) / (10 + n)) so short
    runs are not dominated by the random initialisation (the rule of TensorFlow's EMA with num_updates)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        # One fused call for all parameters: a per-tensor loop costs hundreds of kernel launches a step.
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


@dataclass
class TrainResult:
    model: torch.nn.Module  # the EMA weights: what inference uses
    steps: int
    seconds: float
    device: str
    losses: list[float] = field(default_factory=list)


def total_steps(config: TrainConfig, n_samples: int) -> int:
    if config.steps is not None:
        return int(config.steps)
    if config.epochs is None:
        raise ValueError("the training config needs steps or epochs")
    return int(config.epochs) * max(1, math.ceil(n_samples / config.batch_size))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    kind = config.optimizer.lower()
    beta1, beta2 = config.adam_betas
    if kind == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, betas=(beta1, beta2), weight_decay=config.weight_decay
        )
    if kind == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=(beta1, beta2), weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam or adamw")


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Generator], torch.Tensor],
    data: torch.Tensor,
    config: TrainConfig,
    workdir: Path,
    device: torch.device | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Minimise loss_fn(model, batch, generator) over random batches of `data`.

    A checkpoint is written to workdir every `checkpoint_every` steps and at the end; if one is
    there when training starts, training resumes from it (same step count, optimiser and RNG state).

    Under a launcher, every process draws the same global batch of `config.batch_size` indices and
    computes the loss on its own share; gradients are averaged, the recorded loss is the global batch's,
    and only the main process shows progress and writes checkpoints.
    """
    device = device or pick_device()
    processes = Processes.start(device)
    share = processes.share(config.batch_size)
    workdir.mkdir(parents=True, exist_ok=True)
    steps = total_steps(config, len(data))
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    milestones = sorted(int(round(f * steps)) for f in config.lr_milestones)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)
    ema = EMA(model, config.ema_decay)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    # Each process draws its own noise for its share; the main one draws what a single process would.
    noise_generator = torch.Generator(device=device).manual_seed(config.seed + 1 + NOISE_SEED_STRIDE * processes.rank)
    if processes.rank:  # dropout draws from the global RNG: each process its own masks
        torch.manual_seed(config.seed + 2 + NOISE_SEED_STRIDE * processes.rank)
    start, losses, elapsed = 0, [], 0.0
    checkpoint = workdir / CHECKPOINT_NAME
    if checkpoint.exists():
        start, losses, elapsed = _restore(
            checkpoint, model, ema, optimizer, scheduler, generator, noise_generator, processes.rank
        )
    parallel_model, parallel_optimizer = processes.prepare(model, optimizer)
    autocast = _autocast(device, config.mixed_precision)
    data_on_device = data.to(device)
    began = time.perf_counter() - elapsed
    bar = tqdm(
        total=steps, initial=start, disable=not (show_progress and processes.is_main), unit="step", dynamic_ncols=True
    )
    pending: list[torch.Tensor] = []
    for step in range(start, steps):
        index = torch.randint(0, len(data), (config.batch_size,), generator=generator)[share].to(device)
        with autocast:
            loss = loss_fn(parallel_model, data_on_device[index], noise_generator)
        parallel_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        parallel_optimizer.step()
        scheduler.step()
        ema.update(model)
        pending.append(loss.detach())
        done = step + 1
        # Reading the loss waits for the GPU; do it in batches so the CPU can queue steps ahead.
        if len(pending) == LOSS_READ_EVERY or done % config.checkpoint_every == 0 or done == steps:
            losses.extend(processes.mean(torch.stack(pending)).float().cpu().tolist())
            bar.update(len(pending))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            pending = []
        if done % config.checkpoint_every == 0 or done == steps:
            # Every process takes part: its noise stream, and its global RNG (dropout draws from it).
            noise_states = processes.gather({"noise": noise_generator.get_state(), "torch": _global_rng(device)})
            if processes.is_main:
                _save(
                    checkpoint,
                    done,
                    losses,
                    time.perf_counter() - began,
                    model,
                    ema,
                    optimizer,
                    scheduler,
                    generator,
                    noise_states,
                )
            processes.wait()
    bar.close()
    return TrainResult(ema.model.eval(), steps, time.perf_counter() - began, str(device), losses)


def _autocast(device: torch.device, mixed_precision: str):
    if device.type != "cuda" or mixed_precision == "no":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type="cuda", dtype=REDUCED_DTYPES[mixed_precision])


def _global_rng(device: torch.device) -> dict:
    """The global random state this process's dropout and unseeded draws use."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_global_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save(path: Path, step, losses, seconds, model, ema, optimizer, scheduler, generator, noise_states) -> None:
    state = {
        "step": step,
        "losses": losses,
        "seconds": seconds,
        "model": model.state_dict(),
        "ema": ema.model.state_dict(),
        "ema_updates": ema.updates,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "processes": noise_states,  # each process's noise generator and global RNG, in rank order
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint


def _restore(path: Path, model, ema, optimizer, scheduler, generator, noise_generator, rank: int):
    state = torch.load(path, map_location="cpu", weights_only=False)
    # Older checkpoints hold one process's noise generator and no global RNG.
    noise_states = state.get("processes") or [{"noise": state["noise_generator"]}]
    model.load_state_dict(state["model"])
    ema.model.load_state_dict(state["ema"])
    ema.updates = state["ema_updates"]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    if rank < len(noise_states):  # a process the checkpoint did not know (more of them now) keeps its seed
        noise_generator.set_state(noise_states[rank]["noise"])
        if "torch" in noise_states[rank]:
            _set_global_rng(noise_states[rank]["torch"], noise_generator.device)
    return state["step"], list(state["losses"]), float(state["seconds"])
