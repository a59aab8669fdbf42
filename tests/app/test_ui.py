"""Review-page callbacks without a browser, on the shipped demo bundle and sample cases."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.bundles import discover
from app.review import Review, ReviewApp, ReviewError, editor_value, friendly, mask_from_editor
from engine.io import ImageReadError
from storage import Database, case_history

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"


@pytest.fixture
def app(tmp_path) -> ReviewApp:
    return ReviewApp(Database(f"sqlite:///{tmp_path / 'a.sqlite'}"), discover([ROOT / "assets" / "models"]),
                     tmp_path / "cases", torch.device("cpu"))


def _label(app: ReviewApp, method: str) -> str:
    return next(label for label, choice in app.catalogue.choices.items() if choice.method == method)


def test_catalogue_lists_each_readout_and_reports_broken_bundles(tmp_path):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    catalogue = discover([ROOT / "assets" / "models", tmp_path / "models"])
    assert {c.method for c in catalogue.choices.values()} == {"sano", "spr", "ppii", "cddpm", "dia"}
    assert catalogue.choices[catalogue.best_choice()].method != "dia"  # a method with heatmaps comes first
    assert "not valid JSON" in catalogue.unavailable[str(broken)]


def test_open_run_threshold_save_history_export(app):
    review = app.open_file(SAMPLE, "dr test")
    assert review.case_id is not None and app.worklist()[0][1] == SAMPLE.name
    review = app.run(review, _label(app, "spr"))
    assert review.result.heatmap.shape == (1, 150, 200)
    value, how = app.default_threshold(review)
    assert how == "max_f1" and value == pytest.approx(app.thresholds(review)["max_f1"])
    assert "normal validation images" in app.score_text(review)

    # Re-thresholding uses the cached map: the model must not run again.
    predictor = app.catalogue.predictor(_label(app, "spr"), app.device)
    predictor.predict = lambda *_: (_ for _ in ()).throw(AssertionError("model re-run"))
    low, high = float(review.result.heatmap.min()), float(review.result.heatmap.max())
    started = time.perf_counter()
    loose = app.overlay(review, 0, review.case.window, low + 0.1 * (high - low), 0.5, "Inferno")
    strict = app.overlay(review, 0, review.case.window, low + 0.9 * (high - low), 0.5, "Inferno")
    assert (time.perf_counter() - started) / 2 < 1.0  # generous: the benchmark measures the real figure
    assert not np.array_equal(loose, strict)
    assert app.mask(review, 0, low + 0.1 * (high - low)).sum() > app.mask(review, 0, low + 0.9 * (high - low)).sum()
    assert "px" in app.area_text(review, app.mask(review, 0, value))
    assert app.restoration(review, 0).shape == (150, 200, 3)
    assert app.heatmap_figure(review, 0, "Inferno") is not None

    mask = app.mask(review, 0, value)
    first = app.save(review, 0, mask, value, "max_f1", "dr test", "lesion", "first look")
    edited = mask.copy()
    edited[:10, :10] = True
    second = app.save(review, 0, edited, value, "max_f1", "dr test")
    assert "version 1" in first and "version 2" in second
    history = case_history(app.db, review.case_id)
    assert [a.version for a in history.annotations] == [1, 2]
    assert history.runs[0].threshold == pytest.approx(value) and history.runs[0].method == "spr"
    assert len(app.history(review)) == 4
    assert Path(app.export_file("csv")).read_text().count("\n") == 3
    assert Path(app.export_file("png")).suffix == ".zip"
    assert app.open_saved(review.case_id).case.shape == review.case.shape


def test_saving_needs_a_reader_and_a_run(app):
    review = app.open_file(SAMPLE)
    with pytest.raises(ReviewError, match="run a method"):
        app.save(review, 0, np.zeros((150, 200), bool), 1.0, "manual", "dr")
    review = app.run(review, _label(app, "sano"))
    with pytest.raises(ReviewError, match="reader's name"):
        app.save(review, 0, np.zeros((150, 200), bool), 1.0, "manual", " ")


def test_bad_inputs_are_sentences(app, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as info:
        app.open_file(bad)
    assert friendly(info.value).startswith("⚠️ photo.png: not a readable PNG")
    review = app.open_file(ROOT / "assets" / "samples" / "CT_small.dcm")
    with pytest.raises(ReviewError, match="1 channel"):
        app.run(review, _label(app, "sano"))


def test_editor_round_trip():
    base = np.zeros((5, 6, 3), np.uint8)
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    value = editor_value(base, mask)
    np.testing.assert_array_equal(mask_from_editor(value, np.zeros_like(mask)), mask)
    assert mask_from_editor(None, mask) is mask


def test_app_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMASCOPE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)
    from app.ui import build_app

    assert build_app() is not None
    assert Review().case is None


def test_uploaded_folder_becomes_one_series(app, tmp_path):
    from app.review import gather_series
    from tests.engine.test_io import _series

    root = _series(tmp_path)
    review = app.open_file(gather_series([str(p) for p in sorted(root.iterdir())]), "dr")
    assert review.case.format == "dicom-series" and review.case.shape == (5, 1, 4, 6)


def test_corrections_apply_to_the_current_threshold_mask():
    from app.review import corrected_mask

    loaded = np.zeros((4, 4), bool)
    loaded[:2] = True  # mask when the editor was loaded
    edited = loaded.copy()
    edited[3, 3] = True  # brush
    edited[0, 0] = False  # eraser
    current = np.zeros((4, 4), bool)
    current[:1] = True  # the threshold moved since
    expected = current.copy()
    expected[3, 3] = True
    expected[0, 0] = False
    np.testing.assert_array_equal(corrected_mask(current, loaded, edited), expected)
    np.testing.assert_array_equal(corrected_mask(current, loaded, loaded), current)  # no strokes: the threshold mask


def test_image_level_method_flags_images_and_saves_the_drawn_mask(app):
    review = app.run(app.open_file(ROOT / "assets" / "samples" / "chest-xray.png", "dr test"), _label(app, "dia"))
    assert review.result.heatmap is None and review.result.restoration.shape == (1, 1, 64, 64)
    assert not app.mask(review, 0, 0.0).any()  # no map to threshold: the reader draws the mask
    low, high = app.threshold_range(review)
    assert low <= review.result.image_score <= high
    text = app.score_text(review)
    assert "makes no heatmap" in text and ("**flagged**" in text or "**not flagged**" in text)
    assert app.overlay(review, 0, review.case.window, 0.0, 0.5, "Inferno").shape == (64, 64, 3)
    drawn = np.zeros((64, 64), bool)
    drawn[20:30, 20:30] = True
    value, how = app.default_threshold(review)
    assert "Saved annotation" in app.save(review, 0, drawn, value, how, "dr test")
    history = case_history(app.db, review.case_id)
    assert history.runs[0].method == "dia" and history.annotations[0].mask_shape == [64, 64]
