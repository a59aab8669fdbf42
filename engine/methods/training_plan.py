"""What a method's training plan returns to `engine.fit`, which runs every plan the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class TrainingInputs:
    """What a plan may use besides its config: the prepared data folder, the device, and the values of
    the method's own command-line options that are not config entries."""

    data_root: Path
    device: torch.device
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trainable:
    """One network that `anomascope train` optimises, and the loss it is optimised with."""

    component: str  # the weights' prefix in the bundle
    model: torch.nn.Module
    loss: Callable
    details: dict = field(default_factory=dict)  # recorded in the manifest beside the training figures


@dataclass
class Trained:
    """What training produced, handed to a plan's finishing step."""

    networks: dict[str, torch.nn.Module]  # component -> trained network; a finishing step may add weights
    records: list[dict]  # per network: training figures and details, in the plan's order
    data: torch.Tensor | None  # the training images, model-ready (None for a plan with no networks)
    data_root: Path
    device: torch.device


@dataclass
class TrainingPlan:
    """The networks a method optimises, the read-outs its bundle offers, and what follows training
    (cddpm's fold monitoring, DIA's feature bank). No networks: a training-free method."""

    networks: list[Trainable]
    readouts: list[str]
    finish: Callable[[Trained], dict] = lambda trained: {}  # returns extra manifest entries


def no_training(config: Any, inputs: TrainingInputs) -> TrainingPlan:
    """A training-free method's plan: nothing to train; its bundle holds the config and the calibration
    on the validation split."""
    return TrainingPlan([], [config.method])
