"""How near a bundle's training images are to a case, so that the method offered for a case is the one
trained on images most like it: same modality, same body part, then the nearest size and channels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from .datasets.profiles import DATASET_PROFILES
from .io import Case
from .preprocess import grey_as_rgb

PHOTO_FORMATS = ("png", "jpeg")

# Radiographs and photographs are single images: a volume of several slices is none of them, whatever its
# file (NIfTI, say) leaves unrecorded.
SINGLE_IMAGE_MODALITIES = frozenset({"DX", "CR", "MG", "XC"})

# Scanners file one region under several DICOM terms; a brain model suits a case filed as HEAD.
SAME_REGION = {"BRAIN": "HEAD", "SKULL": "HEAD", "LUNG": "CHEST", "THORAX": "CHEST"}


@dataclass(frozen=True)
class TrainingProfile:
    """What a bundle was trained on, as far as its manifest tells; None where it does not."""

    modality: str | None
    body_part: str | None
    native_size: tuple[int, int] | None  # (rows, columns) of its typical whole image
    channels: int  # 0: any
    images: str  # what the training images are, in a reader's words

    @classmethod
    def from_manifest(cls, manifest: dict) -> TrainingProfile:
        """The manifest's own record, else what its dataset's name tells (bundles trained before the
        record held body part and size)."""
        data = manifest.get("data") or {}
        known = DATASET_PROFILES.get(data.get("dataset") or "")
        size = data.get("native_size") or (known.native_size if known else None)
        name = data.get("dataset") or data.get("folder") or data.get("name") or "unnamed"
        return cls(
            modality=data.get("modality") or (known.modality if known else None),
            body_part=data.get("body_part") or (known.body_part if known else None),
            native_size=(int(size[0]), int(size[1])) if size else None,
            channels=int(manifest.get("config", {}).get("preprocess", {}).get("channels", 0)),
            images=known.images if known else f"{name} images",
        )

    def summary(self) -> str:
        """E.g. "chest radiographs (DX, 64 px)"."""
        facts = [fact for fact in (self.modality, size_text(self.native_size)) if fact]
        return f"{self.images} ({', '.join(facts)})" if facts else self.images


@dataclass(frozen=True)
class CaseProfile:
    """What is known of a case's images: modality and body part where the file records them."""

    modality: str | None
    body_part: str | None
    size: tuple[int, int]  # (rows, columns)
    channels: int  # 1 for greyscale stored as RGB: its content is grey
    slices: int

    @classmethod
    def of(cls, case: Case) -> CaseProfile:
        grey = grey_as_rgb(case.pixels)
        # OT says nothing of the modality, and a photo's XC is the reader's guess from its colour channels,
        # wrong for a greyscale scan saved as RGB.
        guessed = case.modality == "OT" or (case.format in PHOTO_FORMATS and grey)
        body_part = str(case.metadata.get("BodyPartExamined") or "").strip().upper()
        return cls(
            modality=None if guessed else case.modality,
            body_part=body_part or None,
            size=(case.shape[2], case.shape[3]),
            channels=1 if grey else case.shape[1],
            slices=case.shape[0],
        )


class Nearness(NamedTuple):
    """How far a bundle's training images are from a case, compared in this order; smaller is nearer.
    Modality and body part: 0 the same, 1 unknown on either side, 2 different."""

    modality: int
    body_part: int
    size: float  # |log| of the ratio of the image areas; infinite where the bundle records no size
    channels: int  # 0 the same (or a bundle that takes any), 1 different


def nearness(training: TrainingProfile, case: CaseProfile) -> Nearness:
    return Nearness(
        modality=_modality_agreement(training.modality, case),
        body_part=_agreement(region(training.body_part), region(case.body_part)),
        size=_size_distance(training.native_size, case.size),
        channels=int(training.channels not in (0, case.channels)),
    )


def region(body_part: str | None) -> str | None:
    return SAME_REGION.get(body_part, body_part) if body_part else None


def size_text(size: tuple[int, int] | None) -> str | None:
    """(rows, columns) as a reader states an image size: "64 px" when square, else "200×150 px" (width first)."""
    if size is None:
        return None
    rows, columns = size
    return f"{rows} px" if rows == columns else f"{columns}×{rows} px"


def _modality_agreement(trained: str | None, case: CaseProfile) -> int:
    if case.modality is None and case.slices > 1 and trained in SINGLE_IMAGE_MODALITIES:
        return 2
    return _agreement(trained, case.modality)


def _agreement(trained: str | None, seen: str | None) -> int:
    if trained is None or seen is None:
        return 1
    return 0 if trained == seen else 2


def _size_distance(trained: tuple[int, int] | None, seen: tuple[int, int]) -> float:
    if trained is None:
        return math.inf
    return abs(math.log((trained[0] * trained[1]) / (seen[0] * seen[1])))
