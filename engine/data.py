"""Image folders (the prepared MVTec layout) as model-ready tensors."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import PreprocessConfig
from .datasets.layout import median_size
from .datasets.profiles import DATASET_PROFILES
from .io import load_case
from .preprocess import to_model_input
from .profile import CaseProfile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".gz")


class DataError(ValueError):
    """A training or evaluation folder that is missing, empty or unusable."""


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected the prepared layout, e.g. from `anomascope prepare`)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise DataError(f"{folder}: no images found")
    return files


def load_training_images(files: list[Path], config: PreprocessConfig) -> torch.Tensor:
    """(N, C, S, S) in [-1, 1]: every slice of every file, resized to the training resolution."""
    resize = PreprocessConfig(**{**config.__dict__, "mode": "resize"})
    tensors = []
    for path in files:
        case = load_case(path)
        for index in range(case.shape[0]):
            x, _ = to_model_input(case.pixels[index], case.window, resize, stride=1, source=path.name)
            tensors.append(x)
    return torch.stack(tensors)


def folder_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class LabelledImage:
    path: Path
    kind: str  # "good" or the anomaly kind
    mask_path: Path | None


def labelled_split(root: Path, split: str) -> list[LabelledImage]:
    """Images of `split` ("val" or "test") with their kind and, where present, their mask file."""
    folder = root / split
    if not folder.is_dir():
        return []
    items = []
    for kind_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in list_images(kind_dir):
            mask = root / "ground_truth" / kind_dir.name / f"{path.stem}_mask.png"
            items.append(LabelledImage(path, kind_dir.name, mask if mask.exists() else None))
    return items


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) >= 128


def describe_dataset(root: Path) -> dict:
    """What a bundle records about its training data (never the data itself)."""
    split_file = root / "split.json"
    if not split_file.exists():
        return {"name": root.name}
    split = json.loads(split_file.read_text())
    return {
        key: split.get(key)
        for key in (
            "dataset",
            "seed",
            "grouping",
            "normal",
            "anomalous",
            "modality",
            "body_part",
            "native_size",
            "licence",
            "counts",
            "source_side",
        )
    }


def with_image_facts(described: dict, files: list[Path]) -> dict:
    """`described` (describe_dataset's record) with the modality, body part and typical size of the
    training images filled in where it lacks them: from its dataset's profile (a split prepared before
    they were recorded), else read from a sample of `files` (a folder of one's own images)."""
    known = DATASET_PROFILES.get(described.get("dataset") or "")
    facts = (
        {"modality": known.modality, "body_part": known.body_part, "native_size": list(known.native_size)}
        if known
        else sampled_image_facts(files)
    )
    return {**described, **{key: value for key, value in facts.items() if described.get(key) is None}}


def sampled_image_facts(files: list[Path], sample: int = 64) -> dict:
    """Modality and body part where the sampled files record them (the most common), and their median size;
    a sample spread over the folder, as reading every image twice would double a large folder's load."""
    profiles = [CaseProfile.of(load_case(path)) for path in files[:: max(1, len(files) // sample)][:sample]]

    def most_common(values: list[str | None]) -> str | None:
        known = [v for v in values if v]
        return Counter(known).most_common(1)[0][0] if known else None

    return {
        "modality": most_common([p.modality for p in profiles]),
        "body_part": most_common([p.body_part for p in profiles]),
        "native_size": median_size([p.size for p in profiles]),
    }


def at_split_scale(predictor, root: Path):
    """The predictor as it should score the images of prepared split `root`. A split that records the scale
    its images are at (`source_side`), equal to the bundle's `preprocess.scale_side`, holds images already at
    that scale, and its crops are pieces of such images, not photos framed like them: they are scored as they
    are. Anything else is scored as the bundle scores any input."""
    side = describe_dataset(root).get("source_side")
    if not side or predictor.preprocess.scale_side != side:
        return predictor
    at_scale = copy.copy(predictor)
    at_scale.preprocess = replace(predictor.preprocess, scale_side=None, pixel_spacing_mm=None)
    return at_scale


@dataclass(frozen=True)
class MaskedImage:
    """An image whose truth is known: its mask file, or None for a normal image (nothing to find)."""

    path: Path
    mask_path: Path | None
    group: str  # images of one group (a patient, a lesion) are resampled together


def masked_images(root: Path) -> list[MaskedImage]:
    """A prepared split's test images (`good` ones normal, the others with their masks; an anomalous image
    without a mask is left out), or a folder where each image X has X_mask.png beside it (an all-black
    mask marks a normal image)."""
    if (root / "test").is_dir():
        split_file = root / "split.json"
        groups = json.loads(split_file.read_text()).get("groups", {}) if split_file.exists() else {}
        return [
            MaskedImage(i.path, i.mask_path, groups.get(f"test/{i.kind}/{i.path.name}", i.path.name))
            for i in labelled_split(root, "test")
            if i.kind == "good" or i.mask_path is not None
        ]
    images = [p for p in list_images(root) if not p.name.lower().endswith("_mask.png")]
    unmasked = [p.name for p in images if not (p.parent / f"{_stem(p)}_mask.png").exists()]
    if unmasked:
        raise DataError(f"{root}: {len(unmasked)} image(s) without an X_mask.png beside them, e.g. {unmasked[0]}")
    return [MaskedImage(p, p.parent / f"{_stem(p)}_mask.png", _stem(p)) for p in images]


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem


def validation_sample(data_root: Path, max_images: int) -> tuple[list, list]:
    items = labelled_split(data_root, "val")
    if not any(item.kind == "good" for item in items):
        raise DataError(f"{data_root}: no val/good images to calibrate thresholds on; run `anomascope prepare`")
    rng = np.random.default_rng(0)
    return (
        _sample([i for i in items if i.kind == "good"], max_images, rng),
        _sample([i for i in items if i.kind != "good"], max_images, rng),
    )


def _sample(items: list, count: int, rng: np.random.Generator) -> list:
    if len(items) <= count:
        return items
    return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False))]
