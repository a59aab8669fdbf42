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

    def add(
        self,
        split: str,
        kind: str,
        name: str,
        image: Image.Image,
        mask: np.ndarray | None = None,
        group: str | None = None,
    ) -> None:
        """Write one image; `group` (patient, lesion, subject) lets evaluation resample by group."""
        if split == "train" and kind != "good":
            raise ValueError("training data is normal only: train/good")
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
            counts={k: len(v) for k, v in sorted(self.files.items())},
            files=self.files,
            groups=dict(sorted(self.groups.items())),
        )
        (self.root / "split.json").write_text(json.dumps(split, indent=2))
        return split
