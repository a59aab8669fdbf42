"""`anomascope prepare`: build reproducible normal-only training splits from the shared public data."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy.ndimage import binary_dilation

from .layout import LayoutWriter, split_groups
from .profiles import DATASET_PROFILES

DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


class PrepareError(ValueError):
    """The source data is missing or not laid out as expected."""


def split_fractions(val_fraction: float) -> dict[str, float]:
    """The groups' shares of train, val and test for a val share: val grows at train's expense and test keeps
    its default share, so that (split_groups placing the shares in this order) the test groups are the same
    for every val share and figures on test stay comparable."""
    test = DEFAULT_FRACTIONS["test"]
    if isinstance(val_fraction, bool) or not 0 < val_fraction < 1 - test:
        raise PrepareError(
            f"the val share must be above 0 and below {1 - test:g} (test keeps {test:g}), not {val_fraction}"
        )
    # Rounded so that the default share records 0.7, as every earlier split.json does.
    return {"train": round(1 - test - val_fraction, 10), "val": val_fraction, "test": test}


def prepare(
    dataset: str,
    source: Path,
    out: Path,
    seed: int = 0,
    limit: int | None = None,
    crop_size: int = 64,
    crops_per_image: int = 4,
    overwrite: bool = False,
    tumour_margin: int = 1,
    normalise: str = "none",
    val_fraction: float = DEFAULT_FRACTIONS["val"],
) -> dict:
    check_options(dataset, tumour_margin, normalise)
    options = {
        "seed": seed,
        "limit": limit,
        "crop_size": crop_size,
        "crops_per_image": crops_per_image,
        "tumour_margin": tumour_margin,
        "normalise": normalise,
        "fractions": split_fractions(val_fraction),
    }
    source, out = Path(source), Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PrepareError(f"{out} is not empty; pass --overwrite to replace it")
    # Built beside `out` and swapped in only when whole: a missing source file found half way leaves the
    # split already there as it was.
    staging = out.parent / f".{out.name}.preparing"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        writer = LayoutWriter(staging)
        split = described(dataset, PREPARERS[dataset](source, writer, **options), options, writer)
        check_has_training_images(split)
        check_has_calibration_images(split)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return split


def check_options(dataset: str, tumour_margin: int, normalise: str) -> None:
    if dataset not in PREPARERS:
        raise PrepareError(f"unknown dataset {dataset!r}; choose one of {', '.join(PREPARERS)}")
    if tumour_margin < 0:
        raise PrepareError(f"the tumour margin must be 0 or more slices, not {tumour_margin}")
    if normalise not in NORMALISATIONS:
        raise PrepareError(f"unknown normalisation {normalise!r}; choose one of {', '.join(NORMALISATIONS)}")
    if normalise != "none" and dataset != "lgg":
        raise PrepareError(f"--normalise {normalise} is for lgg's volumes; {dataset} has none")


def check_has_training_images(split: dict) -> None:
    """A split whose train share drew no group would train on nothing; refused before it replaces anything."""
    if split["counts"].get("train/good"):
        return
    groups = len(set(split["groups"].values()))
    raise PrepareError(
        f"the split has no training images: train's share ({split['fractions']['train']:g}) of the {groups} "
        "groups drew none; lower --val-fraction, or raise --limit"
    )


def check_has_calibration_images(split: dict) -> None:
    """A split whose val share drew no normal image leaves nothing to calibrate a trained bundle's thresholds
    on: `train` would fail only after training. Refused before it replaces anything."""
    if split["counts"].get("val/good"):
        return
    groups = len(set(split["groups"].values()))
    raise PrepareError(
        f"the split has no normal val images to calibrate thresholds on: val's share "
        f"({split['fractions']['val']:g}) of the {groups} groups drew none; raise --val-fraction, or --limit"
    )


def described(dataset: str, description: dict, options: dict, writer: LayoutWriter) -> dict:
    """split.json: the preparer's description with the dataset's profile and the split's seed and shares."""
    profile = DATASET_PROFILES[dataset]
    return writer.finish(
        dict(
            description,
            dataset=dataset,
            modality=profile.modality,
            body_part=profile.body_part,
            seed=options["seed"],
            limit=options["limit"],
            fractions=options["fractions"],
        )
    )


def _require(path: Path) -> Path:
    if not path.exists():
        raise PrepareError(f"expected {path} in the source data (see the data README); it is missing")
    return path


def _limit_groups(assignment: dict[str, str], limit: int | None, seed: int) -> set[str]:
    groups = sorted(assignment)
    if limit is None or limit >= len(groups):
        return set(groups)
    chosen = np.random.default_rng(seed + 1).choice(len(groups), size=limit, replace=False)
    return {groups[i] for i in chosen}


def _lesion_free_crops(
    mask: np.ndarray, size: int, count: int, rng: np.random.Generator, margin: int = 4
) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` size×size windows with no lesion within `margin` px.

    Windows are chosen at random among the free positions, each at least size/2 from the others
    so the crops of one image are not near-duplicates.
    """
    lesion = binary_dilation(mask, iterations=margin) if mask.any() else mask
    h, w = lesion.shape
    if h < size or w < size:
        return []
    integral = np.pad(lesion.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    window = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    free = np.argwhere(window == 0)
    chosen: list[tuple[int, int]] = []
    for index in rng.permutation(len(free)):
        y, x = (int(v) for v in free[index])
        if all(max(abs(y - cy), abs(x - cx)) >= size // 2 for cy, cx in chosen):
            chosen.append((y, x))
            if len(chosen) == count:
                break
    return chosen


def prepare_ham10000(
    source: Path,
    writer: LayoutWriter,
    seed: int,
    limit: int | None,
    fractions: dict[str, float],
    crop_size: int,
    crops_per_image: int,
    **_,
) -> dict:
    root = _require(source / "ham10000" / "data")
    rows = list(csv.DictReader(_require(root / "HAM10000_metadata.csv").open()))
    assignment = split_groups([r["lesion_id"] for r in rows], fractions, seed)
    keep = _limit_groups(assignment, limit, seed)
    rng = np.random.default_rng(seed)
    sides = set()
    for row in sorted(rows, key=lambda r: r["image_id"]):
        if row["lesion_id"] not in keep:
            continue
        name, split = row["image_id"], assignment[row["lesion_id"]]
        image = Image.open(_require(root / "images" / f"{name}.jpg")).convert("RGB")
        mask = np.asarray(Image.open(_require(root / "masks_200x150" / f"{name}_segmentation.png")).convert("L")) >= 128
        if mask.shape != (image.height, image.width):
            image = image.resize((mask.shape[1], mask.shape[0]), Image.Resampling.BICUBIC)
        sides.add(max(image.size))
        for k, (y, x) in enumerate(_lesion_free_crops(mask, crop_size, crops_per_image, rng)):
            writer.add(
                split,
                "good",
                f"{name}_crop{k}",
                image.crop((x, y, x + crop_size, y + crop_size)),
                group=row["lesion_id"],
                crop=True,
            )
        if split != "train":
            writer.add(split, "lesion", name, image, mask, group=row["lesion_id"])
    return {
        "grouping": "lesion_id",
        "normal": f"lesion-free {crop_size}x{crop_size} skin crops (lesion mask dilated by 4 px), "
        f"up to {crops_per_image} per image",
        "anomalous": "whole 200x150 dermoscopy images with lesion masks (mask value >= 128)",
        # The scale the crops were cut at, which a bundle trained on them scores every photo at; crops
        # of images of several sizes have no one scale.
        "source_side": sides.pop() if len(sides) == 1 else None,
        "licence": "HAM10000 (Tschandl et al. 2018), CC BY-NC 4.0: research and non-commercial use",
    }


def prepare_hands(
    source: Path, writer: LayoutWriter, seed: int, limit: int | None, fractions: dict[str, float], **_
) -> dict:
    root = _require(source / "hands")
    folder = _require(root / "lessDataset_bregy")
    present = {p.name for p in folder.glob("*.jpg")}
    rows = [r for r in csv.DictReader(_require(root / "HandInfo.csv").open()) if r["imageName"] in present]
    assignment = split_groups([r["id"] for r in rows], fractions, seed)
    keep = _limit_groups(assignment, limit, seed)
    for row in sorted(rows, key=lambda r: r["imageName"]):
        if row["id"] not in keep:
            continue
        split = assignment[row["id"]]
        jewellery = row["accessories"].strip() == "1"
        if split == "train" and jewellery:
            continue  # normal-only training: hands with jewellery are never trained on
        image = Image.open(folder / row["imageName"]).convert("RGB")
        writer.add(split, "jewellery" if jewellery else "good", Path(row["imageName"]).stem, image, group=row["id"])
    return {
        "grouping": "subject id",
        "normal": "hands without jewellery (accessories = 0)",
        "anomalous": "hands wearing jewellery (accessories = 1), image-level label only",
        "licence": "11k Hands (Afifi 2019): academic research use",
    }


def prepare_brain_mri(
    source: Path, writer: LayoutWriter, seed: int, limit: int | None, fractions: dict[str, float], **_
) -> dict:
    root = _require(source / "brain-mri-yes-no")
    files = [(p, "good") for p in sorted(_require(root / "no").iterdir())] + [
        (p, "tumour") for p in sorted(_require(root / "yes").iterdir())
    ]
    files = [(p, kind) for p, kind in files if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    # The set records no patient identity; every file is its own group.
    groups = [f"{kind}/{p.name}" for p, kind in files]
    assignment = split_groups(groups, fractions, seed)
    keep = _limit_groups(assignment, limit, seed)
    for (path, kind), group in zip(files, groups, strict=True):
        split = assignment[group]
        if group not in keep or (split == "train" and kind != "good"):
            continue
        # MRI has no colour: the few RGB files carry only JPEG chroma noise, and one channel count
        # across the set is what a model can be trained on.
        writer.add(
            split, kind, _safe_name(f"{kind}_{path.stem}"), ImageOps.exif_transpose(Image.open(path)).convert("L")
        )
    return {
        "grouping": "file (no patient identity in the source)",
        "normal": "brain MRI slices without tumour (folder no/), stored greyscale",
        "anomalous": "slices with tumour (folder yes/), image-level label only",
        "licence": "public Kaggle brain MRI set, no stated licence: research use only",
    }


def prepare_chest_xray(
    source: Path, writer: LayoutWriter, seed: int, limit: int | None, fractions: dict[str, float], **_
) -> dict:
    root = _require(source / "chest-xray-nih1000" / "NIH1000")
    files = sorted(root.glob("*/*/*.png"))
    if not files:
        raise PrepareError(f"no PNG files under {root}")
    # NIH file names are <patient>_<follow-up>.png: group by patient so no patient spans two splits.
    groups = [p.name.split("_")[0] for p in files]
    assignment = split_groups(groups, fractions, seed)
    keep = _limit_groups(assignment, limit, seed)
    for path, group in zip(files, groups, strict=True):
        kind = "good" if path.parent.name.startswith("0") else "abnormal"
        split = assignment[group]
        if group not in keep or (split == "train" and kind != "good"):
            continue
        writer.add(split, kind, path.stem, _greyscale_if_grey(Image.open(path)), group=group)
    return {
        "grouping": "patient id (file name prefix)",
        "normal": "chest X-rays labelled normal (0_normal)",
        "anomalous": "chest X-rays with findings (1_abnormal), image-level label only",
        "licence": "NIH ChestX-ray14 subset: public, cite Wang et al. 2017",
    }


LGG_FOLDER = "lgg-flair"


@dataclass(frozen=True)
class LggSlice:
    """One FLAIR slice of the LGG set: `<patient>/<patient>_<index>.png` and its `_mask.png`."""

    patient: str
    index: int
    image: Path
    mask: Path


def prepare_lgg(
    source: Path,
    writer: LayoutWriter,
    seed: int,
    limit: int | None,
    fractions: dict[str, float],
    tumour_margin: int = 1,
    normalise: str = "none",
    **_,
) -> dict:
    slices_by_patient = _lgg_slices_by_patient(_lgg_root(source))
    assignment = split_groups(list(slices_by_patient), fractions, seed)
    keep = _limit_groups(assignment, limit, seed)
    left_out = sum(
        _add_lgg_patient(writer, assignment[p], slices_by_patient[p], tumour_margin, normalise) for p in sorted(keep)
    )
    near = "next to (index +-1)" if tumour_margin == 1 else f"within {tumour_margin} of"
    return {
        "grouping": "patient (folder name)",
        # A training patient whose every slice is tumour or next to one writes no image, so the
        # image groups alone would not show the patient split.
        "patients": {split: sorted(p for p in keep if assignment[p] == split) for split in fractions},
        "normal": "FLAIR slices with an empty mask from training patients (who have a tumour elsewhere), "
        f"leaving out slices {near} a tumour slice",
        "anomalous": "tumour slices of held-out patients with FLAIR-abnormality masks (0/255); val and test "
        "hold every slice of their patients, the tumour-free ones as good",
        "training_slices_left_out_next_to_tumour": left_out,
        **({"tumour_margin": tumour_margin} if tumour_margin != 1 else {}),
        **({"normalise": PATIENT_NORMALISATION} if normalise == "patient" else {}),
        "licence": "TCGA-LGG via TCIA: LGG segmentation dataset, Buda et al. 2019: research use; cite "
        "Buda, Saha, Mazurowski, Comput. Biol. Med. 109:218-225 (2019)",
    }


def _lgg_root(source: Path) -> Path:
    """The lgg-flair folder: `--source` may be the shared data folder (as for the others) or that folder itself."""
    nested = source / LGG_FOLDER
    return nested if nested.is_dir() else _require(source)


def _lgg_slices_by_patient(root: Path) -> dict[str, list[LggSlice]]:
    """Each patient folder's slices in slice order; folders without `<folder>_<n>.png` files are not patients."""
    slices_by_patient: dict[str, list[LggSlice]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        slices = _lgg_patient_slices(folder)
        if slices:
            slices_by_patient[folder.name] = slices
    if not slices_by_patient:
        raise PrepareError(f"no patient folders (<patient>/<patient>_<slice>.png) in {root}")
    return slices_by_patient


def _lgg_patient_slices(folder: Path) -> list[LggSlice]:
    slice_name = re.compile(rf"{re.escape(folder.name)}_(\d+)")
    slices = []
    for image in folder.glob("*.png"):
        match = slice_name.fullmatch(image.stem)
        if match is None:
            continue
        mask = image.with_name(f"{image.stem}_mask.png")
        if not mask.is_file():
            raise PrepareError(f"{folder}: no mask {mask.name} for {image.name}")
        slices.append(LggSlice(folder.name, int(match[1]), image, mask))
    # Numeric order: a lexicographic one would put slice 10 right after slice 1.
    return sorted(slices, key=lambda s: s.index)


def _add_lgg_patient(
    writer: LayoutWriter, split: str, slices: list[LggSlice], margin: int = 1, normalise: str = "none"
) -> int:
    """Write one patient's slices into its split; returns how many tumour-free slices training left out."""
    masks = [_read_lgg_mask(s) for s in slices]
    tumour_indices = {s.index for s, mask in zip(slices, masks, strict=True) if mask.any()}
    images = [np.asarray(Image.open(s.image).convert("L")) for s in slices]
    if normalise == "patient":
        images = patient_zscore(images)
    left_out = 0
    for lgg_slice, pixels, mask in zip(slices, images, masks, strict=True):
        if split == "train" and not _fit_for_training(lgg_slice.index, tumour_indices, margin):
            left_out += not mask.any()
            continue
        image = Image.fromarray(pixels)
        if mask.any():
            writer.add(split, "tumour", lgg_slice.image.stem, image, mask, group=lgg_slice.patient)
        else:
            writer.add(split, "good", lgg_slice.image.stem, image, group=lgg_slice.patient)
    return left_out


NORMALISATIONS = ("none", "patient")
# The brain: FLAIR pixels above this 8-bit level, the LGG bundles' foreground level (0.04 of 255).
LGG_BRAIN_ABOVE = 10
PATIENT_NORMALISATION = (
    "each patient's slices z-scored over the brain pixels (above 10 of 255) of all the patient's slices, "
    "z in [-3, 3] mapped to 0-255 with the brain kept above the background level; air stays 0"
)


def patient_zscore(images: list[np.ndarray]) -> list[np.ndarray]:
    """A patient's 8-bit slices z-scored with one mean and sd over the brain pixels of the whole volume:
    scans differ in gain between patients, and a per-slice z-score would change with how much tumour a
    slice holds. z in [-3, 3] maps to [0, 255]; brain pixels stay above LGG_BRAIN_ABOVE, air stays 0."""
    brain = [image > LGG_BRAIN_ABOVE for image in images]
    values = np.concatenate([image[body].astype(np.float64) for image, body in zip(images, brain, strict=True)])
    if values.size == 0:
        return images
    mean, sd = values.mean(), max(values.std(), 1e-6)
    out = []
    for image, body in zip(images, brain, strict=True):
        unit = np.clip(0.5 + (image - mean) / (6.0 * sd), 0.0, 1.0) * 255.0
        out.append(np.where(body, np.maximum(unit, LGG_BRAIN_ABOVE + 1), 0).round().astype(np.uint8))
    return out


def _read_lgg_mask(lgg_slice: LggSlice) -> np.ndarray:
    mask = Image.open(lgg_slice.mask).convert("L")
    with Image.open(lgg_slice.image) as image:
        if image.size != mask.size:
            raise PrepareError(f"{lgg_slice.mask}: mask is {mask.size}, its image {image.size}")
    return np.asarray(mask) > 0


def _fit_for_training(index: int, tumour_indices: set[int], margin: int = 1) -> bool:
    # A slice next to a tumour slice may hold the tumour's unannotated edge (partial volume), so it is
    # not trusted as normal even when its mask is empty.
    return not set(range(index - margin, index + margin + 1)) & tumour_indices


def _greyscale_if_grey(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    rgb = np.asarray(image.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return Image.fromarray(rgb[..., 0])
    return Image.fromarray(rgb)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


PREPARERS: dict[str, Callable[..., dict]] = {
    "ham10000": prepare_ham10000,
    "hands": prepare_hands,
    "brain-mri": prepare_brain_mri,
    "chest-xray": prepare_chest_xray,
    "lgg": prepare_lgg,
}
