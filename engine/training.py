"""A reusable training loop: seeded batches, Adam/AdamW, EMA, clipping, checkpoints and resume, on one
process or data-parallel across several (engine/distributed.py)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from tqdm.auto import tqdm

from .config import TrainConfig
from .devices import on_device
from .distributed import Processes, process_device
from .nets.precision import REDUCED_DTYPES

CHECKPOINT_NAME = "checkpoint.pt"
COMPILE_MODES = ("no", "default", "reduce-overhead", "max-autotune")
OPTIMIZER_KERNELS = ("auto", "fused", "foreach")
LOSS_READ_EVERY = 25
# Relative L2 distance allowed between a compiled network's gradients and eager ones on one batch. Float32
# rounding is orders of magnitude below it; inductor on torch 2.13's CPU build, which zeroes or corrupts most
# of a diffusers U-Net's gradients, was measured 0.16 (the shipped denoiser) and 0.26 (a tiny one) away.
COMPILE_GRADIENT_TOLERANCE = 0.1
NOISE_SEED_STRIDE = 7919  # apart from the batch seed (seed) and the main process's noise seed (seed + 1)


class TrainingSetupError(ValueError):
    """A training setting that cannot be used as given, or that would train a network wrongly."""


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


def check_settings(config: TrainConfig) -> None:
    """Refuse a training section that names an optimiser, kernels, compile mode or precision that does not
    exist, before any data is loaded."""
    choices = {
        "optimizer": (config.optimizer.lower(), ("adam", "adamw")),
        "optimizer_kernels": (config.optimizer_kernels, OPTIMIZER_KERNELS),
        "compile": (config.compile, COMPILE_MODES),
        "mixed_precision": (config.mixed_precision, tuple(REDUCED_DTYPES) + ("no",)),
    }
    for key, (value, known) in choices.items():
        if value not in known:
            raise TrainingSetupError(f"unknown train.{key} {value!r}; use one of {', '.join(known)}")
    for key in ("channels_last", "bf16_on_cpu"):
        if not isinstance(getattr(config, key), bool):
            raise TrainingSetupError(f"train.{key} is {getattr(config, key)!r}; use true or false")
    budget = config.max_seconds
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise TrainingSetupError(f"train.max_seconds is {config.max_seconds!r}; give a positive number of seconds")


def make_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device | None = None
) -> torch.optim.Optimizer:
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.optimizer.lower()]  # check_settings
    beta1, beta2 = config.adam_betas
    return kind(
        model.parameters(),
        lr=config.learning_rate,
        betas=(beta1, beta2),
        weight_decay=config.weight_decay,
        **optimizer_kernels(config.optimizer_kernels, device or torch.device("cpu")),
    )


def optimizer_kernels(choice: str, device: torch.device) -> dict:
    """Adam's keyword for its kernels. "auto" fuses the whole update into one kernel on CUDA (hundreds of
    launches a step fewer) and leaves torch's default elsewhere, so CPU runs are unchanged."""
    if choice == "auto":
        return {"fused": True} if device.type == "cuda" else {}
    return {choice: True}


def compiled(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """The network as the loop calls it: itself, or torch.compile of it (which shares its parameters, so
    checkpoints and the EMA keep reading the plain module)."""
    if mode == "no":
        return model
    return cast(torch.nn.Module, torch.compile(model, mode=None if mode == "default" else mode))


def check_compiled(model, network, loss_fn, batch: torch.Tensor, autocast, processes: Processes) -> None:
    """Refuse a compiled network whose gradients on `batch` are not the eager network's: a compiler bug
    would otherwise train a wrong model without a sign. Measured in eval mode, with the same noise for both:
    dropout off, since compiled code draws its own random numbers, and BatchNorm reading its running
    statistics without updating them. The train-mode graph is compiled on the first step and not compared.
    Every process decides on the largest distance of them all, so that none waits alone for the others."""
    eager = _gradients(model, loss_fn, batch, autocast)
    try:
        fast = _gradients(network, loss_fn, batch, autocast)  # the first call compiles
    except torch._dynamo.exc.TorchDynamoException as error:  # inductor's errors too
        raise TrainingSetupError(
            f"torch.compile cannot compile the network on this machine (torch {torch.__version__}):"
            f" {_first_cause(error)};"
            ' train with train.compile = "no"'
        ) from error
    distance = max(processes.gather(float((fast - eager).norm() / eager.norm().clamp_min(1e-12))))
    if not distance <= COMPILE_GRADIENT_TOLERANCE:
        raise TrainingSetupError(
            f"torch.compile gives gradients {distance:.2f} (relative L2) away from the uncompiled network's on"
            f' this device (torch {torch.__version__}); train with train.compile = "no"'
        )


def _first_cause(error: BaseException) -> str:
    """The exception dynamo wrapped (a missing compiler, say), in one line."""
    inner = getattr(error, "inner_exception", None) or error.__cause__
    while isinstance(inner, BaseException):
        error, inner = inner, getattr(inner, "inner_exception", None) or inner.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _gradients(network, loss_fn, batch: torch.Tensor, autocast) -> torch.Tensor:
    parameters = [p for p in network.parameters() if p.requires_grad]
    network.eval()
    try:
        with autocast:
            loss = loss_fn(network, batch, torch.Generator(device=batch.device).manual_seed(0))
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    finally:
        network.train()
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).flatten().float()
            for g, p in zip(grads, parameters, strict=True)
        ]
    )


def in_layout(module: torch.nn.Module, memory_format: torch.memory_format) -> torch.nn.Module:
    """The module with its weights in `memory_format` (Module.to takes it; torch's type stubs do not say so)."""
    return cast(Any, module).to(memory_format=memory_format)


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
    check_settings(config)
    device = device or pick_device()
    processes = Processes.start(device)
    share = processes.share(config.batch_size)
    workdir.mkdir(parents=True, exist_ok=True)
    steps = total_steps(config, len(data))
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    in_layout(model.to(device), memory_format).train()
    optimizer = make_optimizer(model, config, device)
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
    network = compiled(parallel_model, config.compile)
    autocast = _autocast(device, config)
    data_on_device = data.to(device)
    if network is not parallel_model:
        # The plain module, compiled alike: gradients through DDP would be averaged among the processes.
        probe = network if parallel_model is model else compiled(model, config.compile)
        first = torch.arange(share.stop - share.start, device=device) % len(data)  # a batch shaped like a share
        check_compiled(
            model, probe, loss_fn, data_on_device[first].contiguous(memory_format=memory_format), autocast, processes
        )
    began = time.perf_counter() - elapsed
    bar = tqdm(
        total=steps, initial=start, disable=not (show_progress and processes.is_main), unit="step", dynamic_ncols=True
    )
    pending: list[torch.Tensor] = []
    done = start
    last = start if start and out_of_time(config, began, processes) else steps  # resumed with its time spent
    for step in range(start, last):
        index = on_device(torch.randint(0, len(data), (config.batch_size,), generator=generator)[share], device)
        batch = data_on_device[index].contiguous(memory_format=memory_format)
        with autocast:
            loss = loss_fn(network, batch, noise_generator)
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
        stopping = False
        if len(pending) == LOSS_READ_EVERY or done % config.checkpoint_every == 0 or done == steps:
            losses.extend(processes.mean(torch.stack(pending)).float().cpu().tolist())
            bar.update(len(pending))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            pending = []
            stopping = out_of_time(config, began, processes)
        if done % config.checkpoint_every == 0 or done == steps or stopping:
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
        if stopping:
            break
    bar.close()
    # Weights leave in the plain layout: safetensors and the read-outs expect contiguous tensors.
    trained = in_layout(ema.model, torch.contiguous_format).eval()
    return TrainResult(trained, done, time.perf_counter() - began, str(device), losses)


def out_of_time(config: TrainConfig, began: float, processes: Processes) -> bool:
    """Whether train.max_seconds has passed, decided alike by every process (each reads its own clock), so
    that none goes on to a step the others will not join."""
    if config.max_seconds is None:
        return False
    return any(processes.gather(time.perf_counter() - began >= config.max_seconds))


def _autocast(device: torch.device, config: TrainConfig):
    if device.type == "cpu" and config.bf16_on_cpu:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    if device.type != "cuda" or config.mixed_precision == "no":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type="cuda", dtype=REDUCED_DTYPES[config.mixed_precision])


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


def _in_parameters_layout(optimizer: torch.optim.Optimizer) -> None:
    """Adam's moments in their parameters' memory layout. A checkpoint written with another `channels_last`
    holds them in the old one, and the foreach and fused kernels expect one layout for all of them."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                    state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def _restore(path: Path, model, ema, optimizer, scheduler, generator, noise_generator, rank: int):
    state = torch.load(path, map_location="cpu", weights_only=False)
    # Older checkpoints hold one process's noise generator and no global RNG.
    noise_states = state.get("processes") or [{"noise": state["noise_generator"]}]
    model.load_state_dict(state["model"])
    ema.model.load_state_dict(state["ema"])
    ema.updates = state["ema_updates"]
    optimizer.load_state_dict(state["optimizer"])
    _in_parameters_layout(optimizer)
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"])
    if rank < len(noise_states):  # a process the checkpoint did not know (more of them now) keeps its seed
        noise_generator.set_state(noise_states[rank]["noise"])
        if "torch" in noise_states[rank]:
            _set_global_rng(noise_states[rank]["torch"], noise_generator.device)
    return state["step"], list(state["losses"]), float(state["seconds"])
