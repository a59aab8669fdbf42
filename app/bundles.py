"""Finding bundles (trained, or training-free references) for the method picker; the ones that fail to load are
listed with why."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from anomascope.engine.bundle import BundleError, ModelBundle, load_bundle
from anomascope.engine.calibration import Calibration
from anomascope.engine.io import Case
from anomascope.engine.methods import make_predictor, registry
from anomascope.engine.methods.base import Predictor
from anomascope.engine.preprocess import grey_as_rgb
from anomascope.engine.profile import CaseProfile, Nearness, TrainingProfile, nearness

# The shipped bundles and demo cases, found from the installed project wherever the app is started.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL_DIRS = (ASSETS / "models",)


def model_dirs() -> list[Path]:
    """assets/models plus any folders in ANOMASCOPE_MODELS (os.pathsep-separated)."""
    extra = [Path(p) for p in os.environ.get("ANOMASCOPE_MODELS", "").split(os.pathsep) if p]
    return [*DEFAULT_MODEL_DIRS, *extra]


@dataclass
class MethodChoice:
    label: str
    bundle: ModelBundle
    method: str

    @property
    def reference(self) -> bool:
        """A training-free reference: offered to compare against, never as the method a case opens with."""
        return is_reference(self.method)


@dataclass
class Catalogue:
    choices: dict[str, MethodChoice] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # folder -> reason
    precision: str = "auto"  # what the predictors' networks run in (engine.config.PRECISIONS)
    _predictors: dict[str, Predictor] = field(default_factory=dict)

    def takes(self, label: str, channels: int) -> bool:
        """Whether method `label`'s bundle takes images of `channels` channels (a bundle of 0 takes any)."""
        preprocess = self.choices[label].bundle.manifest.get("config", {}).get("preprocess", {})
        return int(preprocess.get("channels", 0)) in (0, channels)

    def reads(self, label: str, case: Case) -> bool:
        """Whether method `label` can score `case`; a greyscale bundle also takes greyscale stored as RGB."""
        return self.takes(label, case.shape[1]) or (self.takes(label, 1) and grey_as_rgb(case.pixels))

    def best_choice(self, suits: Callable[[str], bool] | None = None) -> str | None:
        """The method offered first (among those that `suits`, when given): a learned one before a
        reference, then by merit."""
        suited = [label for label in self.choices if suits is None or suits(label)]
        return max(suited, key=lambda label: (not self.choices[label].reference, *self._merit(label)), default=None)

    def nearest_choice(self, case: Case) -> str | None:
        """The method offered for `case`: among those that can score it, a learned one before a reference
        (a reference is what a learned method is compared with, even one trained on images farther from the
        case), then the one trained on images nearest it (modality, body part, size, channels), then the
        best by merit."""
        seen = CaseProfile.of(case)
        readers = [label for label in self.choices if self.reads(label, case)]
        return min(
            readers,
            key=lambda label: (
                self.choices[label].reference,
                self._nearness(label, seen),
                _demerit(self._merit(label)),
            ),
            default=None,
        )

    def choice_for(self, case: Case, current: str | None) -> str | None:
        """The method for a newly opened `case`: the reader's `current` pick where it can score the case and
        was trained on images at least as near it as the offered method's, else the offered one. At least,
        not just as near: a reference the reader picked may be nearer than the learned method offered."""
        nearest = self.nearest_choice(case)
        if nearest is None or current not in self.choices or not self.reads(current, case):
            return nearest
        seen = CaseProfile.of(case)
        return current if self._nearness(current, seen) <= self._nearness(nearest, seen) else nearest

    def why_picked(self, label: str) -> str:
        """Why method `label` is offered for a case, in one short sentence of plain text."""
        choice = self.choices[label]
        name = f"{choice.method.upper()} ({choice.bundle.path.name})"
        if choice.reference:  # offered only when no learned method can read the case
            return (
                f"{name} is picked: a training-free reference calibrated on {self.training(label).summary()};"
                " no trained method can read this image"
            )
        return f"{name} is picked: trained on {self.training(label).summary()}, nearest this image"

    def training(self, label: str) -> TrainingProfile:
        return TrainingProfile.from_manifest(self.choices[label].bundle.manifest)

    def _nearness(self, label: str, seen: CaseProfile) -> Nearness:
        return nearness(self.training(label), seen)

    def _merit(self, label: str) -> tuple[bool, float]:
        """A method with heatmaps before an image-level one, then the best validation AUROC (pixel, else image)."""
        choice = self.choices[label]
        metrics = choice.bundle.manifest.get("validation_metrics", {}).get(choice.method, {})
        pixel = metrics.get("pixel_auroc")
        return pixel is not None, pixel or metrics.get("image_auroc") or 0.0

    def predictor(self, label: str, device: torch.device) -> Predictor:
        if label not in self._predictors:
            choice = self.choices[label]
            self._predictors[label] = make_predictor(choice.bundle, device, choice.method, self.precision)
        return self._predictors[label]


def _demerit(merit: tuple[bool, float]) -> tuple[int, float]:
    """`merit` as a key that sorts the best first."""
    has_heatmap, auroc = merit
    return -int(has_heatmap), -auroc


def discover(folders: list[Path], precision: str = "auto") -> Catalogue:
    """The bundles in `folders`, one choice per read-out of an installed method; bundles that fail to
    load, read-outs of methods that are not installed, and method plugins that failed to load are
    listed as unavailable with the reason."""
    methods = registry()
    catalogue = Catalogue(precision=precision)
    for name, reason in methods.unavailable.items():
        catalogue.unavailable[f"method plugin {name}"] = reason
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                bundle = load_bundle(path)
            except BundleError as exc:
                catalogue.unavailable[str(path)] = str(exc)
                continue
            for method in bundle.manifest.get("readouts", [bundle.method]):
                if method not in methods.methods:
                    catalogue.unavailable[f"{path} ({method})"] = (
                        methods.unavailable.get(method) or f"method {method!r} is not installed"
                    )
                    continue
                catalogue.choices[describe(bundle, method)] = MethodChoice(describe(bundle, method), bundle, method)
    return catalogue


def is_reference(method: str) -> bool:
    return registry().get(method).reference


def describe(bundle: ModelBundle, method: str) -> str:
    data = bundle.manifest.get("data", {})
    dataset = data.get("dataset") or data.get("folder", "?")
    if is_reference(method):
        return f"{method.upper()} · {bundle.path.name} · training-free reference, calibrated on {dataset}"
    return f"{method.upper()} · {bundle.path.name} · trained on {dataset}"


def calibration_summary(bundle: ModelBundle, method: str) -> str:
    calibration = Calibration.from_manifest(bundle.manifest, method)
    licence = bundle.manifest.get("data", {}).get("licence", "licence not recorded")
    lines = [f"**{method.upper()}** — bundle `{bundle.id}`, data: {licence}"]
    if is_reference(method):
        lines.append(
            "- a training-free reference: its map comes from the image alone, nothing learned, and a learned"
            " method must beat it to earn its place; a case opens with a learned method whenever one can read it"
        )
    for name, threshold in calibration.thresholds.items():
        lines.append(f"- {name}: {threshold.value:.4g} ({threshold.provenance})")
    metrics = calibration.validation_metrics
    if metrics.get("pixel_auroc") is not None:
        image_auroc = metrics.get("image_auroc") or float("nan")
        lines.append(f"- validation pixel AUROC {metrics['pixel_auroc']:.3f}, image AUROC {image_auroc:.3f}")
    elif metrics.get("image_auroc") is not None:
        lines.append(f"- scores whole images (no heatmap); validation image AUROC {metrics['image_auroc']:.3f}")
    return "\n".join(lines)
