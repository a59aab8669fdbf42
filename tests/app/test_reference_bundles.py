"""The shipped training-free references (#33.9): calibrated bundles like any method's, run, shown and saved
through the review services with the thresholds their manifests record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.engine.bundle import load_bundle
from anomascope.storage import case_history
from tests.app.test_method_choice import _lgg_slice
from tests.app.test_ui import _payload

ROOT = Path(__file__).parents[2]
MODELS = ROOT / "assets" / "models"
PHOTO = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"
# Each shipped reference, the dataset it is calibrated on, and the protocols its test metrics were taken in.
REFERENCES = {
    "ham10000-median-distance": ("ham10000", ("ham10000",)),
    "lgg-median-distance": ("lgg", ("lgg", "lgg (anomalous test images only)")),
    "lgg-flair-zscore": ("lgg", ("lgg", "lgg (anomalous test images only)")),
}


@pytest.mark.parametrize("name", REFERENCES)
def test_a_shipped_reference_records_its_calibration_and_test_metrics(name):
    bundle = load_bundle(MODELS / name)
    dataset, protocols = REFERENCES[name]
    manifest = bundle.manifest
    assert manifest["training"]["steps"] == 0 and manifest["data"]["dataset"] == dataset
    assert manifest["data"]["licence"]
    thresholds = manifest["calibration"][bundle.method]["thresholds"]
    assert set(thresholds) == {"k_sigma", "target_fpr", "max_f1"}
    assert all(threshold["provenance"].startswith("val split: 64 ") for threshold in thresholds.values())
    assert manifest["validation_metrics"][bundle.method]["pixel_auroc"] > 0.5
    for protocol in protocols:
        measured = manifest["test_metrics"][protocol][bundle.method]
        assert measured["split"] == "test" and measured["pixel_auroc"] > 0.5
        # Scored at the calibration's max-F1 threshold, not at one chosen on the test split.
        assert measured["threshold"] == thresholds["max_f1"]["value"]
    assert (MODELS / name / "weights.safetensors").stat().st_size < 100  # no weights: an empty tensor file


def _save_at_preset(app: ReviewApp, path: Path, name: str, preset: str = "max_f1") -> None:
    """Open `path`, run reference `name` on it and save the map thresholded at its calibrated `preset`,
    checking what the page is given and what is stored against the bundle's manifest."""
    label = next(label for label, choice in app.catalogue.choices.items() if choice.bundle.path.name == name)
    manifest = app.catalogue.choices[label].bundle.manifest
    session, scene = app.scene(app.run(app.open_file(path, "dr a"), label, "dr a"))
    thresholds = manifest["calibration"][manifest["method"]]["thresholds"]
    calibrated = {key: threshold["value"] for key, threshold in thresholds.items()}
    assert session.run.presets == calibrated == scene["threshold"]["presets"]
    assert (scene["threshold"]["value"], scene["threshold"]["method"]) == (calibrated["max_f1"], "max_f1")
    assert scene["heatmap"] is not None and scene["restoration"] is None and scene["uncertainty"] is None
    heatmap = session.run.result.heatmap
    assert heatmap.shape == (session.case.shape[0], *session.case.shape[-2:])
    mask = heatmap >= calibrated[preset]
    session, said = app.save(session, Submission(_payload(session, mask, calibrated[preset], preset), "dr a"))
    assert f"({preset})" in said
    history = case_history(app.db, session.case_id)
    [annotation] = history.annotations
    assert (annotation.threshold, annotation.threshold_method) == (calibrated[preset], preset)
    assert {(run.method, run.bundle_id) for run in history.runs} == {(manifest["method"], manifest["id"])}


def test_the_skin_reference_runs_and_saves_on_a_demo_photo(app: ReviewApp):
    _save_at_preset(app, PHOTO, "ham10000-median-distance")


@pytest.mark.parametrize("name", ["lgg-median-distance", "lgg-flair-zscore"])
def test_the_brain_references_run_and_save_on_a_flair_slice(app: ReviewApp, tmp_path, name):
    _save_at_preset(app, _lgg_slice(tmp_path), name, "k_sigma")


def test_two_references_of_one_method_are_told_apart_by_their_ids():
    """Their weights files are alike (empty): the ids that key site thresholds and re-made maps must differ."""
    manifests = [json.loads((MODELS / name / "manifest.json").read_text()) for name in REFERENCES]
    assert len({manifest["weights_sha256"] for manifest in manifests}) == 1
    assert len({manifest["id"] for manifest in manifests}) == len(REFERENCES)
