"""The MVTec-AD folder layout every prepared dataset uses, and grouped seeded splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")


def split_groups(groups: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Assign each distinct group (patient, lesion, subject) wholly to one split.

    Deterministic for a seed: groups are sorted before the seeded shuffle, so input order is irrelevant.
    """
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names]) / sum(fractions.values())
    assignment = {}
    for rank, index in enumerate(order):
        position = (rank + 0.5) / len(unique)
        assignment[unique[index]] = names[int(np.searchsorted(bounds, position))]
    return assignment


@dataclass
class LayoutWriter:
    """Writes images into train/good, {val,test}/{good,<kind>} and ground_truth/<kind>/<name>_mask.png."""

    root: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    whole_sizes: list[tuple[int, int]] = field(default_factory=list)  # (rows, columns) of every image but crops

    def add(
        self,
        split: str,
        kind: str,
        name: str,
        image: Image.Image,
        mask: np.ndarray | None = None,
        group: str | None = None,
        crop: bool = False,
    ) -> None:
        """Write one image; `group` (patient, lesion, subject) lets evaluation resample by group. A `crop` is
        a piece of a whole image, so it does not count towards the split's typical image size."""
        if split == "train" and kind != "good":
            raise ValueError("training data is normal only: train/good")
        if not crop:
            self.whole_sizes.append((image.height, image.width))
        folder = self.root / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{name}.png")
        self.files.setdefault(f"{split}/{kind}", []).append(f"{name}.png")
        self.groups[f"{split}/{kind}/{name}.png"] = group or name
        if mask is not None:
            mask_folder = self.root / "ground_truth" / kind
            mask_folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((mask > 0).astype(np.uint8) * 255).save(mask_folder / f"{name}_mask.png")

    def finish(self, description: dict) -> dict:
        for names in self.files.values():
            names.sort()
        split = dict(
            description,
            native_size=median_size(self.whole_sizes),
            counts={k: len(v) for k, v in sorted(self.files.items())},
            files=self.files,
            groups=dict(sorted(self.groups.items())),
        )
        (self.root / "split.json").write_text(json.dumps(split, indent=2))
        return split


def median_size(sizes: list[tuple[int, int]]) -> list[int] | None:
    """The median [rows, columns] of `sizes`, each taken on its own; None for no sizes."""
    if not sizes:
        return None
    rows, columns = np.median(np.array(sizes), axis=0)
    return [int(rows), int(columns)]
