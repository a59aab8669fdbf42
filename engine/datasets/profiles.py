"""What the images of each dataset `prepare` builds are: modality, body part, typical size.

`prepare` records these in the split, and training copies them into the bundle's manifest. A bundle
trained before they were recorded has them derived from its dataset's name through this same table, so
that the review page can tell a chest radiograph model from a brain MRI one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetProfile:
    modality: str  # DICOM Modality
    body_part: str  # DICOM BodyPartExamined
    native_size: tuple[int, int]  # (rows, columns) of its whole images, as prepared
    images: str  # what the images are, in a reader's words


DATASET_PROFILES: dict[str, DatasetProfile] = {
    # The 600x450 originals are prepared at their masks' 200x150 grid (the scale the bundles score at).
    "ham10000": DatasetProfile("XC", "SKIN", (150, 200), "dermoscopy photographs"),
    "hands": DatasetProfile("XC", "HAND", (180, 180), "photographs of hands"),
    # Mixed sizes: the median height and width of its 253 images.
    "brain-mri": DatasetProfile("MR", "BRAIN", (331, 278), "brain MRI slices"),
    "chest-xray": DatasetProfile("DX", "CHEST", (64, 64), "chest radiographs"),
    "lgg": DatasetProfile("MR", "BRAIN", (128, 128), "brain MRI FLAIR slices"),
}
