"""What a method is, as data: its name, paper, default config, read-out, training plan and the
command-line options it needs. Importing this imports no torch (the CLI's --help reads it)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """A command-line option of `anomascope train` that one method needs.

    With `config_key`, the value overrides that entry of the method's config (e.g. ("cddpm", "folds"));
    without, it reaches the method's training plan as `inputs.options[name]` (e.g. DIA's denoiser bundle)."""

    name: str  # the argparse destination; the flag is --name with dashes
    help: str
    type: Callable[[str], Any] = str
    metavar: str | None = None
    config_key: tuple[str, ...] = ()
    required: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Method:
    """One anomaly method. `predictor` and `plan` name "module:attribute" so that the registry can list
    methods without importing their networks.

    - `defaults()` returns the method's config dataclass with the paper's defaults; the dataclass has a
      `method` field, `preprocess`, `train` and `calibration` sections, and one section per read-out
      holding at least `k_sigma`.
    - `predictor` is a `Predictor` subclass built as `cls(bundle, device, precision)`.
    - `plan` is a function `(config, inputs: TrainingInputs) -> TrainingPlan`: the networks to train,
      the read-outs the bundle offers and what follows training. A plan with no networks makes a
      training-free method: its bundle holds only the config and the calibration.
    - `reference`: a training-free reference that `anomascope eval --baseline` calibrates on the split
      it evaluates, so that every table has it; the review page labels its bundles as references and
      opens no case with one while a learned method can read it.
    - `maps`: whether its predictor makes per-pixel maps (a MapPredictor); False for image-level methods,
      whose masks are what the reader draws."""

    name: str
    summary: str  # what its map is, one line (README's method table)
    paper: str  # the paper it follows, or what it is judged against
    defaults: Callable[[], Any]
    predictor: str
    plan: str
    options: tuple[Option, ...] = ()
    reference: bool = False
    maps: bool = True
    restoration: str = "Pseudo-healthy restoration"  # what its side image is, where it makes one (a caption)
    source: str = field(default="anomascope", compare=False)  # the distribution that registered it

    def predictor_class(self) -> type:
        return load_attribute(self.predictor)

    def training_plan(self) -> Callable:
        return load_attribute(self.plan)


def load_attribute(reference: str) -> Any:
    """The attribute that "package.module:attribute" names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
