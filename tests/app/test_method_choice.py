"""The method offered for a case is the bundle trained on images nearest it (#33.6): on the shipped bundles
and demo cases, a chest radiograph gets the chest model and a brain slice a brain model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from anomascope.app.bundles import Catalogue, calibration_summary, discover
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.runs import mismatch_warnings
from anomascope.app.review.session import ReviewSession
from anomascope.engine.io import load_case
from tests.conftest import make_dicom, write_dicom

ROOT = Path(__file__).parents[2]
MODELS = ROOT / "assets" / "models"
SAMPLES = ROOT / "assets" / "samples"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return discover([MODELS])


def _label(catalogue: Catalogue, bundle: str, method: str | None = None) -> str:
    return next(
        label
        for label, choice in catalogue.choices.items()
        if choice.bundle.path.name == bundle and method in (None, choice.method)
    )


def _bundle(catalogue: Catalogue, label: str | None) -> str | None:
    return catalogue.choices[label].bundle.path.name if label else None


def _best_learned_for_skin(catalogue: Catalogue) -> str:
    """Of the learned HAM10000 read-outs, all trained on the same crops, the best validation pixel AUROC."""
    skin = [
        label
        for label, choice in catalogue.choices.items()
        if choice.bundle.path.name.startswith("ham10000-") and not choice.reference
    ]

    def pixel_auroc(label: str) -> float:
        choice = catalogue.choices[label]
        return choice.bundle.manifest["validation_metrics"][choice.method]["pixel_auroc"]

    return max(skin, key=pixel_auroc)


def _lgg_slice(folder: Path) -> Path:
    """A 128x128 greyscale FLAIR-like slice as the LGG set stores them: a bright ellipse on black."""
    rows, columns = np.mgrid[:128, :128]
    head = ((rows - 64) / 50) ** 2 + ((columns - 64) / 40) ** 2 <= 1
    path = folder / "TCGA_ZZ_0000_19990101_12.png"
    Image.fromarray((head * 120).astype(np.uint8)).save(path)
    return path


def test_each_demo_case_gets_the_bundle_trained_nearest_it(catalogue, tmp_path):
    # Both greyscale PNGs record no modality: their size tells the chest radiograph from the brain slice.
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(SAMPLES / "chest-xray.png"))) == "chest-xray-dia"
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(_lgg_slice(tmp_path)))) == "lgg-ppii"
    photo = load_case(SAMPLES / "ISIC_0024311.jpg")
    assert catalogue.nearest_choice(photo) == _best_learned_for_skin(catalogue)
    large = tmp_path / "large.jpg"
    Image.open(SAMPLES / "ISIC_0024311.jpg").resize((600, 450)).save(large)  # as HAM10000 distributes them
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(large))).startswith("ham10000-")
    # No shipped bundle was trained on CT: the nearest in size, with a warning that the modality differs.
    ct = load_case(SAMPLES / "CT_small.dcm")
    picked = catalogue.nearest_choice(ct)
    assert _bundle(catalogue, picked) == "lgg-ppii"
    [warning] = mismatch_warnings(catalogue.choices[picked].bundle.manifest, ct)
    assert "trained on MR images" in warning and "this image is CT" in warning
    # A NIfTI volume records no modality, but a volume is no radiograph.
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(SAMPLES / "anatomical.nii"))) == "lgg-ppii"


def test_a_readers_pick_is_kept_when_as_near_and_replaced_when_farther(catalogue):
    photo, chest = load_case(SAMPLES / "ISIC_0024311.jpg"), load_case(SAMPLES / "chest-xray.png")
    ham_ppii, lgg_ppii = _label(catalogue, "ham10000-ppii"), _label(catalogue, "lgg-ppii")
    spr = _label(catalogue, "ham10000-denoiser", "spr")
    offered = _best_learned_for_skin(catalogue)
    assert catalogue.nearest_choice(photo) == offered
    # SPR and P-PII were trained on the same photos: the reader who chose the one not offered keeps it.
    other = spr if offered == ham_ppii else ham_ppii
    assert catalogue.choice_for(photo, other) == other
    # The brain model is farther from a chest radiograph than the chest model; it cannot read a photo at all.
    assert _bundle(catalogue, catalogue.choice_for(chest, lgg_ppii)) == "chest-xray-dia"
    assert catalogue.choice_for(photo, lgg_ppii) == offered
    assert catalogue.choice_for(photo, None) == offered
    assert catalogue.why_picked(catalogue.choice_for(chest, lgg_ppii)) == (
        "DIA (chest-xray-dia) is picked: trained on chest radiographs (DX, 64 px), nearest this image"
    )


def test_old_manifests_without_body_part_or_size_still_rank(tmp_path):
    """Bundles whose manifest names only the dataset (no modality, body part or size) are told apart by it."""
    for name in ("chest-xray-dia", "lgg-ppii"):
        shutil.copytree(MODELS / name, tmp_path / name)
        manifest_file = tmp_path / name / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        manifest["data"] = {"dataset": manifest["data"]["dataset"]}
        manifest_file.write_text(json.dumps(manifest))
    catalogue = discover([tmp_path])
    assert not catalogue.unavailable
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(SAMPLES / "chest-xray.png"))) == "chest-xray-dia"
    assert _bundle(catalogue, catalogue.nearest_choice(load_case(_lgg_slice(tmp_path)))) == "lgg-ppii"


def test_a_recorded_body_part_that_differs_is_a_warning_and_an_unrecorded_modality_is_not(catalogue, tmp_path):
    lgg = catalogue.choices[_label(catalogue, "lgg-ppii")].bundle.manifest
    chest_mr = write_dicom(
        tmp_path / "chest.dcm", make_dicom(np.zeros((64, 64), np.uint16), Modality="MR", BodyPartExamined="CHEST")
    )
    [warning] = mismatch_warnings(lgg, load_case(chest_mr))
    assert "trained on images of the brain" in warning and "this image is of the chest" in warning
    head_mr = write_dicom(
        tmp_path / "head.dcm", make_dicom(np.zeros((64, 64), np.uint16), Modality="MR", BodyPartExamined="HEAD")
    )
    assert not mismatch_warnings(lgg, load_case(head_mr))  # the brain is in the head
    # A greyscale PNG saved as RGB is no colour photograph: the reader's XC guess raises no warning.
    grey = np.asarray(Image.open(SAMPLES / "chest-xray.png"))
    rgb = tmp_path / "grey-as-rgb.png"
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(rgb)
    dia = catalogue.choices[_label(catalogue, "chest-xray-dia")].bundle.manifest
    assert not mismatch_warnings(dia, load_case(rgb)) and not mismatch_warnings(lgg, load_case(rgb))


def test_opening_a_case_on_the_page_picks_the_nearest_method_and_says_why(app: ReviewApp):
    from anomascope.app.page.layout import build_app

    page = build_app(app)
    [on_worklist] = [f.fn for f in page.fns.values() if f.name == "on_worklist"]
    catalogue = app.catalogue
    lgg_ppii, ham_ppii = _label(catalogue, "lgg-ppii"), _label(catalogue, "ham10000-ppii")

    def open_on_page(path: Path, picked: str) -> dict:
        case_id = app.open_file(path, "dr").case_id
        shown = on_worklist(ReviewSession(), picked, SimpleNamespace(row_value=[case_id]))
        return {getattr(component, "elem_id", None): value for component, value in shown.items()}

    chest = open_on_page(SAMPLES / "chest-xray.png", lgg_ppii)
    assert _bundle(catalogue, chest["method"]) == "chest-xray-dia"
    assert (
        "DIA (chest-xray-dia) is picked: trained on chest radiographs (DX, 64 px), nearest this image"
        in (chest["message"])
    )
    photo = open_on_page(SAMPLES / "ISIC_0024311.jpg", ham_ppii)
    assert "method" not in photo and "picked" not in photo["message"]  # the reader's as-near pick stays


REFERENCES = ("ham10000-median-distance", "lgg-median-distance", "lgg-flair-zscore")


def test_the_shipped_references_are_offered_marked_as_references(catalogue):
    marked = {choice.bundle.path.name for label, choice in catalogue.choices.items() if "reference" in label}
    assert marked == set(REFERENCES)
    assert _label(catalogue, "lgg-median-distance") == (
        "MEDIAN-DISTANCE · lgg-median-distance · training-free reference, calibrated on lgg"
    )
    assert _label(catalogue, "lgg-ppii") == "PPII · lgg-ppii · trained on lgg"
    for name in REFERENCES:
        choice = catalogue.choices[_label(catalogue, name)]
        assert "a training-free reference" in calibration_summary(choice.bundle, choice.method)
    ppii = catalogue.choices[_label(catalogue, "lgg-ppii")]
    assert "reference" not in calibration_summary(ppii.bundle, ppii.method)


def test_a_case_opens_with_a_learned_method_though_a_reference_scores_higher(tmp_path):
    # The cddpm bundles' validation AUROC is below the references' (0.73 against median-distance's 0.81 on
    # HAM10000, 0.86 against the FLAIR z-score's 0.956 on LGG): merit alone would open cases with them.
    for name in ("ham10000-cddpm", "ham10000-median-distance", "lgg-cddpm", "lgg-flair-zscore", "chest-xray-dia"):
        shutil.copytree(MODELS / name, tmp_path / "models" / name)
    catalogue = discover([tmp_path / "models"])
    for learned, reference in (("ham10000-cddpm", "ham10000-median-distance"), ("lgg-cddpm", "lgg-flair-zscore")):
        assert catalogue._merit(_label(catalogue, reference)) > catalogue._merit(_label(catalogue, learned))
    for case, learned in (
        (load_case(SAMPLES / "ISIC_0024311.jpg"), "ham10000-cddpm"),
        (load_case(_lgg_slice(tmp_path)), "lgg-cddpm"),
        (load_case(SAMPLES / "chest-xray.png"), "chest-xray-dia"),
        (load_case(SAMPLES / "anatomical.nii"), "lgg-cddpm"),
    ):
        assert _bundle(catalogue, catalogue.nearest_choice(case)) == learned
        assert _bundle(catalogue, catalogue.choice_for(case, None)) == learned
    # The page's first offer, before any case is open.
    assert not catalogue.choices[catalogue.best_choice(lambda label: catalogue.takes(label, 3))].reference
    assert not catalogue.choices[catalogue.best_choice()].reference


def test_a_readers_reference_is_kept_when_as_near_and_replaced_when_farther(catalogue, tmp_path):
    photo, brain = load_case(SAMPLES / "ISIC_0024311.jpg"), load_case(_lgg_slice(tmp_path))
    chest = load_case(SAMPLES / "chest-xray.png")
    ham_reference = _label(catalogue, "ham10000-median-distance")
    lgg_reference = _label(catalogue, "lgg-median-distance")
    flair = _label(catalogue, "lgg-flair-zscore")
    assert catalogue.choice_for(photo, ham_reference) == ham_reference
    assert catalogue.choice_for(brain, lgg_reference) == lgg_reference
    assert catalogue.choice_for(brain, flair) == flair
    # Farther than the learned method offered: the brain reference on a photo, the photo one on a radiograph.
    assert catalogue.choice_for(photo, lgg_reference) == _best_learned_for_skin(catalogue)
    assert _bundle(catalogue, catalogue.choice_for(chest, ham_reference)) == "chest-xray-dia"


def test_a_reference_is_offered_only_where_no_learned_method_can_read_the_case(tmp_path):
    for name in ("ham10000-ppii", "chest-xray-dia", "lgg-median-distance"):
        shutil.copytree(MODELS / name, tmp_path / "models" / name)
    catalogue = discover([tmp_path / "models"])
    brain, photo = load_case(_lgg_slice(tmp_path)), load_case(SAMPLES / "ISIC_0024311.jpg")
    # The chest model reads the brain slice, though its training images are farther from it than the
    # reference's calibration images: the learned method is offered, and the reader's nearer reference kept.
    reference = _label(catalogue, "lgg-median-distance")
    assert _bundle(catalogue, catalogue.nearest_choice(brain)) == "chest-xray-dia"
    assert catalogue.choice_for(brain, reference) == reference
    assert _bundle(catalogue, catalogue.nearest_choice(photo)) == "ham10000-ppii"
    # Without the chest model, no learned method reads a greyscale slice: the reference is offered, and says so.
    shutil.rmtree(tmp_path / "models" / "chest-xray-dia")
    catalogue = discover([tmp_path / "models"])
    assert catalogue.nearest_choice(brain) == reference
    assert catalogue.why_picked(reference) == (
        "MEDIAN-DISTANCE (lgg-median-distance) is picked: a training-free reference calibrated on brain MRI"
        " FLAIR slices (MR, 128 px); no trained method can read this image"
    )
    assert catalogue.best_choice(lambda label: catalogue.reads(label, brain)) == reference


def test_the_page_opens_offering_a_learned_method(app: ReviewApp):
    from anomascope.app.page.layout import build_app

    [picker] = [block for block in build_app(app).blocks.values() if getattr(block, "elem_id", None) == "method"]
    assert picker.value in app.catalogue.choices and not app.catalogue.choices[picker.value].reference
