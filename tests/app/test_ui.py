"""Review-page services without a browser, on the shipped demo bundles and sample cases."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest

from anomascope.app.bundles import discover
from anomascope.app.export import export
from anomascope.app.review.annotations import Submission
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.messages import friendly
from anomascope.app.review.runs import mismatch_warnings
from anomascope.app.review.session import ReviewError, ReviewSession
from anomascope.app.viewer import from_viewer, pack_mask, read_payload, to_viewer, unpack_mask
from anomascope.engine.io import ImageReadError, load_case
from anomascope.storage import case_history, decode_mask
from tests.conftest import shipped_dicom

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "assets" / "samples" / "ISIC_0024311.jpg"


def _label(app: ReviewApp, method: str) -> str:
    return next(label for label, choice in app.catalogue.choices.items() if choice.method == method)


def _payload(session: ReviewSession, mask: np.ndarray, threshold: float | None, how: str = "manual", **extra) -> str:
    """What the viewer sends on Save (app/static/viewer.js `payload`)."""
    slices, _, rows, cols = session.case.shape
    return json.dumps(
        {
            "token": session.token,
            "dims": [cols, rows, slices],
            "mask": pack_mask(mask),
            "voxels": int(mask.sum()),
            "threshold": threshold,
            "threshold_method": how,
            "edited": False,
            "slice": 0,
            **extra,
        }
    )


def test_catalogue_lists_each_readout_and_reports_broken_bundles(tmp_path):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    catalogue = discover([ROOT / "assets" / "models", tmp_path / "models"])
    learned = {"sano", "spr", "ppii", "cddpm", "dia"}
    assert {c.method for c in catalogue.choices.values()} == learned | {"median-distance", "flair-zscore"}
    assert catalogue.choices[catalogue.best_choice()].method != "dia"  # a method with heatmaps comes first
    assert "not valid JSON" in catalogue.unavailable[str(broken)]


def test_viewer_voxel_order_and_bit_packing_round_trip():
    rng = np.random.default_rng(0)
    mask = rng.random((3, 5, 7)) > 0.5
    volume = to_viewer(mask)
    assert volume.shape == (7, 5, 3)
    # Voxel (x, y, z) of the viewer is column x, row H-1-y of slice z.
    assert volume[2, 0, 1] == mask[1, 4, 2] and volume[6, 4, 2] == mask[2, 0, 6]
    np.testing.assert_array_equal(from_viewer(volume), mask)
    np.testing.assert_array_equal(unpack_mask(pack_mask(mask), mask.shape), mask)


def test_scene_volumes_are_the_case_in_the_viewers_order(app):
    session = app.run(app.open_file(SAMPLE, "dr"), _label(app, "spr"))
    session, scene = app.scene(session)
    folder = app.volumes.root / scene["token"]
    image = np.asarray(nib.load(folder / "image.nii.gz").dataobj)
    assert scene["dims"] == [200, 150, 1] and scene["image"]["rgb"]
    np.testing.assert_array_equal(from_viewer(image["G"]), session.case.pixels[:, 1].astype(np.uint8))
    heatmap = from_viewer(np.asarray(nib.load(folder / "heatmap.nii.gz").dataobj))
    np.testing.assert_allclose(heatmap, session.run.result.heatmap, rtol=1e-6)
    assert scene["threshold"]["value"] == pytest.approx(
        app.catalogue.predictor(_label(app, "spr"), app.device).calibration.thresholds["max_f1"].value
    )
    # Opening another case drops the previous scene's files.
    _, scene2 = app.scene(app.open_file(ROOT / "assets" / "samples" / "chest-xray.png"), scene["token"])
    assert not folder.exists() and (app.volumes.root / scene2["token"]).exists()


def test_save_stores_the_mask_sent_and_corrections_continue_the_lineage(app):
    session = app.run(app.open_file(SAMPLE, "dr test"), _label(app, "spr"))
    session, _ = app.scene(session)
    threshold = session.run.threshold
    mask = session.run.result.heatmap >= np.float32(threshold)
    mask[0, :10, :10] = True  # a stroke
    session, said = app.save(
        session, Submission(_payload(session, mask, threshold, "max_f1"), "dr test", "lesion", "first look")
    )
    assert "version 1" in said and "mm²" not in said  # a JPEG has no spacing
    history = case_history(app.db, session.case_id)
    [annotation] = history.annotations
    np.testing.assert_array_equal(decode_mask(annotation.mask_shape, annotation.mask_data), mask[0])
    assert annotation.threshold == pytest.approx(threshold) and annotation.threshold_method == "max_f1"
    assert len(history.runs) == 1  # the run was stored at Run, not again at Save

    corrected = mask.copy()
    corrected[0, 50:60] = False
    session, said = app.save(session, Submission(_payload(session, corrected, threshold), "dr test"))
    # Reopen: the latest version is on screen; a correction there is version 3 of the same lineage.
    reopened = app.open_saved(session.case_id)
    np.testing.assert_array_equal(reopened.saved.mask, corrected)
    reopened, scene = app.scene(reopened)
    np.testing.assert_array_equal(unpack_mask(scene["mask"], (1, 150, 200)), corrected)
    assert "version 2 of 2" in app.mask_source(reopened)
    reopened, said = app.save(reopened, Submission(_payload(reopened, mask, threshold), "dr two"))
    versions = case_history(app.db, session.case_id).annotations
    assert [a.version for a in versions] == [1, 2, 3] and len({a.lineage for a in versions}) == 1
    assert versions[-1].run_id == versions[0].run_id
    earlier = app.show_version(reopened, 1)
    np.testing.assert_array_equal(earlier.saved.mask, mask)
    # Comparing with version 2 outlines it over the scene on screen; the viewer gets its whole mask too.
    reopened, scene = app.scene(reopened, scene["token"])
    spec = app.comparison(reopened, 2)
    outline = from_viewer(np.asarray(nib.load(app.volumes.root / scene["token"] / "version-2.nii.gz").dataobj)) > 0
    assert spec["token"] == scene["token"] and outline.sum() > 0 and (outline <= corrected).all()
    assert not outline[0, 1:-1, 1:-1][
        corrected[0, :-2, 1:-1]
        & corrected[0, 2:, 1:-1]
        & corrected[0, 1:-1, :-2]
        & corrected[0, 1:-1, 2:]
        & corrected[0, 1:-1, 1:-1]
    ].any()  # no interior voxel
    np.testing.assert_array_equal(unpack_mask(spec["mask"], (1, 150, 200)), corrected)
    assert app.comparison(reopened, None) == {}
    with pytest.raises(ReviewError, match="no saved version 9"):
        app.comparison(reopened, 9)
    assert Path(app.export_file("csv")).read_text().count("\n") == 4
    assert Path(app.export_file("png")).suffix == ".zip"


def test_save_refuses_what_was_not_shown(app):
    session = app.open_file(SAMPLE, "dr")
    session, _ = app.scene(session)
    mask = np.zeros((1, 150, 200), bool)
    with pytest.raises(ReviewError, match="no method has run on it"):  # a threshold of no run: another case's
        app.save(session, Submission(_payload(session, mask, 1.0), "dr"))
    session, _ = app.scene(app.run(session, _label(app, "sano")), session.token)
    with pytest.raises(ReviewError, match="reader's name"):
        app.save(session, Submission(_payload(session, mask, 1.0), " "))
    with pytest.raises(ReviewError, match="another image"):
        app.save(session, Submission(_payload(session, mask, 1.0, token="stale"), "dr"))
    with pytest.raises(ReviewError, match="voxels but the viewer showed"):
        app.save(session, Submission(_payload(session, mask, 1.0, voxels=5), "dr"))
    with pytest.raises(ReviewError, match="grid"):
        app.save(session, Submission(_payload(session, mask, 1.0, dims=[150, 200, 1]), "dr"))
    assert case_history(app.db, session.case_id).annotations == []


def test_a_mask_drawn_before_any_run_is_saved_as_a_manual_annotation(app, tmp_path):
    """Issue 33: Save refused a reader who draws by hand, and the strokes were lost."""
    ct = app.open_file(shipped_dicom("CT_small.dcm"), "dr")
    ct, _ = app.scene(ct)
    drawn = np.zeros((1, *ct.case.shape[-2:]), bool)
    drawn[0, 20:30, 10:40] = True
    ct, said = app.save(ct, Submission(_payload(ct, drawn, None, edited=True), "dr", "nodule"))
    assert "drawn by hand (no method run)" in said
    [annotation] = case_history(app.db, ct.case_id).annotations
    assert annotation.run_id is None and annotation.threshold is None and annotation.threshold_method is None
    np.testing.assert_array_equal(decode_mask(annotation.mask_shape, annotation.mask_data), drawn[0])
    [written] = export(app.db, tmp_path / "seg", "dicom-seg")
    [segment] = hd.seg.segread(written).SegmentSequence
    assert segment.SegmentAlgorithmType == "MANUAL"


def test_payload_checks_the_grid():
    mask = np.zeros((2, 3, 4), bool)
    text = json.dumps({"token": "t", "dims": [4, 3, 2], "mask": pack_mask(mask), "voxels": 0, "threshold": 0.5})
    assert read_payload(text, "t", (2, 3, 4)).mask.shape == (2, 3, 4)
    with pytest.raises(ValueError, match="holds 8 voxels"):
        read_payload(text.replace(pack_mask(mask), pack_mask(np.zeros(8, bool).reshape(1, 2, 4))), "t", (2, 3, 4))
    # A tuning session's next case shown from its preview has no token yet: saving it is "wait", not "another image".
    opening = json.dumps({"token": None, "opening": True, "dims": [4, 3, 2], "mask": pack_mask(mask), "voxels": 0})
    with pytest.raises(ValueError, match="still opening"):
        read_payload(opening, "t", (2, 3, 4))


def test_bad_inputs_are_sentences(app, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as info:
        app.open_file(bad)
    assert friendly(info.value).startswith("⚠️ photo.png: not a readable PNG")
    review = app.open_file(ROOT / "assets" / "samples" / "CT_small.dcm")
    with pytest.raises(ReviewError, match="1 channel"):
        app.run(review, _label(app, "sano"))
    with pytest.raises(ReviewError, match="pick a case"):
        app.open_saved(None)


def test_models_meet_their_data(app, tmp_path):
    ct = app.run(app.open_file(ROOT / "assets" / "samples" / "CT_small.dcm", "dr"), _label(app, "dia"))
    assert ct.warnings and "trained on DX images" in ct.warnings[0] and "this image is CT" in ct.warnings[0]
    ct, _ = app.scene(ct)
    drawn = np.zeros((1, 128, 128), bool)
    with pytest.raises(ReviewError, match="model warning"):
        app.save(ct, Submission(_payload(ct, drawn, 1.0), "dr"))
    assert "Saved annotation" in app.save(ct, Submission(_payload(ct, drawn, 1.0), "dr", acknowledged=True))[1]
    assert not mismatch_warnings(
        {"data": {"modality": "DX"}}, load_case(ROOT / "assets" / "samples" / "chest-xray.png")
    )
    # A greyscale image stored as RGB is scored by a greyscale bundle.
    from PIL import Image

    grey = np.asarray(Image.open(ROOT / "assets" / "samples" / "chest-xray.png").convert("L"))
    rgb = tmp_path / "grey-as-rgb.png"
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(rgb)
    assert app.run(app.open_file(rgb, "dr"), _label(app, "dia")).run.result.image_score is not None


def test_cases_are_identified_by_pixels_and_geometry(app, tmp_path):
    from tests.conftest import make_dicom, write_dicom

    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 200
    a = write_dicom(tmp_path / "a.dcm", make_dicom(pixels, PixelSpacing=[0.5, 0.5]))
    b = write_dicom(tmp_path / "b.dcm", make_dicom(pixels, PixelSpacing=[0.05, 0.05]))
    assert app.open_file(a).case_id != app.open_file(b).case_id
    assert app.open_file(a).case_id == app.open_file(a).case_id


def test_image_level_verdict_and_drawn_mask(app):
    session = app.run(app.open_file(ROOT / "assets" / "samples" / "chest-xray.png", "dr test"), _label(app, "dia"))
    assert session.run.image_level and session.run.result.restoration.shape == (1, 1, 64, 64)
    session, scene = app.scene(session)
    t = scene["threshold"]
    assert t["image_level"] and t["min"] <= t["image_score"] <= t["max"] and scene["heatmap"] is None
    assert "makes no heatmap" in app.score_text(session)
    drawn = np.zeros((1, 64, 64), bool)
    drawn[0, 20:30, 20:30] = True
    session, _ = app.save(session, Submission(_payload(session, drawn, t["max"], "manual"), "dr test"))
    [annotation] = case_history(app.db, session.case_id).annotations
    assert annotation.threshold == pytest.approx(t["max"]) and annotation.mask_shape == [64, 64]
    assert case_history(app.db, session.case_id).runs[0].method == "dia"


def test_app_builds_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMASCOPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    from anomascope.app.bundles import model_dirs
    from anomascope.app.page.layout import SAMPLES, build_app

    assert build_app() is not None
    assert any((folder / "ham10000-denoiser").is_dir() for folder in model_dirs())
    assert (SAMPLES / "ISIC_0024311.jpg").exists()


def test_uploaded_folder_becomes_one_series_and_leaves_no_copy(app, tmp_path, monkeypatch):
    import tempfile

    from tests.engine.test_io import _series

    root = _series(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    review = app.open_folder([str(p) for p in sorted(root.iterdir())], "dr")
    assert review.case.format == "dicom-series" and review.case.shape == (5, 1, 4, 6)
    assert not any(scratch.iterdir())  # the gathered copy of the patient's files is gone


def test_exports_are_swept_and_removed_at_exit(app, tmp_path):
    session, _ = app.scene(app.run(app.open_file(SAMPLE, "dr"), _label(app, "spr")))
    mask = session.run.result.heatmap >= np.float32(session.run.threshold)
    app.save(session, Submission(_payload(session, mask, session.run.threshold), "dr"))
    first = Path(app.export_file("csv"))
    assert first.exists()
    os.utime(first.parent.parent, (0, 0))  # an export from long ago
    second = Path(app.export_file("csv"))
    assert second.exists() and not first.exists()
    app.exports.remove()
    assert not app.exports.root.exists()


def test_site_presets_from_tune_are_offered_beside_the_calibrated_ones(app):
    from anomascope.storage import save_preset

    label = _label(app, "spr")
    bundle_id = app.catalogue.choices[label].bundle.id
    for value in (0.5, 0.75):  # two versions: the newest is offered
        save_preset(
            app.db,
            bundle_id=bundle_id,
            name="site A",
            value=value,
            provenance="tune",
            actor="dr",
            readout="spr",
            criterion="dice",
            figure=0.8,
            n_cases=12,
        )
    save_preset(app.db, bundle_id=bundle_id, name="sano only", value=9.0, provenance="tune", actor="dr", readout="sano")
    session, scene = app.scene(app.run(app.open_file(SAMPLE, "dr"), label))
    presets = scene["threshold"]["presets"]
    assert presets["site A (site, v2)"] == 0.75 and "sano only (site, v1)" not in presets
    assert {"max_f1", "target_fpr", "k_sigma"} <= set(presets)  # the calibrated ones stay
    assert session.run.threshold_method == "max_f1"  # the calibrated default is unchanged


def _panes(session: ReviewSession, first: tuple[float, str], second: tuple[float, str]) -> str:
    """What the viewer sends on swapping the compare view's methods (app/static/viewer.js `panes`)."""
    return json.dumps(
        {
            "token": session.token,
            "first": {"threshold": first[0], "method": first[1]},
            "second": {"threshold": second[0], "method": second[1]},
        }
    )


def test_two_methods_side_by_side_and_the_saved_run_names_the_method_the_mask_came_from(app):
    session, scene = app.scene(app.run(app.open_file(SAMPLE, "dr"), _label(app, "spr"), "dr"))
    session, spec = app.run_second(session, _label(app, "ppii"), "dr")
    # The second pane: the same scene, the second method's own map and its own threshold.
    folder = app.volumes.root / scene["token"]
    second_map = from_viewer(np.asarray(nib.load(folder / "second-heatmap.nii.gz").dataobj))
    np.testing.assert_allclose(second_map, session.second.result.heatmap, rtol=1e-6)
    assert spec["token"] == scene["token"] and spec["label"] == _label(app, "ppii")
    assert spec["threshold"]["value"] == pytest.approx(session.second.threshold)
    assert spec["threshold"]["max"] == pytest.approx(float(session.second.result.heatmap.max()))
    assert (folder / "heatmap.nii.gz").exists()  # the first method's scene is left as it was
    runs = case_history(app.db, session.case_id).runs
    assert [r.method for r in runs] == ["spr", "ppii"] and spec["run_id"] == runs[1].id

    # Swap: ppii is corrected and saved at the threshold its pane showed; spr moves to the right.
    chosen = float(np.quantile(session.second.result.heatmap, 0.97))
    swapped = app.swap_sides(session, _panes(session, (0.5, "manual"), (chosen, "manual")))
    assert swapped.run.method == "ppii" and swapped.second.method == "spr" and swapped.second.threshold == 0.5
    swapped, scene = app.scene(swapped, session.token)
    assert scene["threshold"]["value"] == chosen and scene["second"]["label"] == _label(app, "spr")
    mask = swapped.run.result.heatmap >= np.float32(chosen)
    swapped, said = app.save(swapped, Submission(_payload(swapped, mask, chosen), "dr"))
    assert f"the mask came from {_label(app, 'ppii')}" in said
    [annotation] = case_history(app.db, session.case_id).annotations
    assert annotation.run_id == runs[1].id  # the ppii run
    np.testing.assert_array_equal(decode_mask(annotation.mask_shape, annotation.mask_data), mask[0])

    # A pane for another method only; the same method, an image-level one and a stale viewer are refused.
    with pytest.raises(ReviewError, match="already on screen"):
        app.run_second(swapped, _label(app, "ppii"))
    with pytest.raises(ReviewError, match="makes no map"):
        app.run_second(swapped, _label(app, "dia"))
    with pytest.raises(ReviewError, match="image on screen has changed"):
        app.swap_sides(swapped, _panes(session, (0.5, "manual"), (chosen, "manual")))
    assert app.close_second(swapped).second is None
    # Running the first pane's method again keeps the second pane; running the second's method drops it.
    assert app.run(swapped, _label(app, "sano")).second.method == "spr"
    assert app.run(swapped, _label(app, "spr")).second is None


def test_the_method_offered_for_a_case_is_one_that_can_score_it():
    catalogue = discover([ROOT / "assets" / "models"])
    samples = ROOT / "assets" / "samples"
    photo, brain = load_case(SAMPLE), load_case(samples / "anatomical.nii")
    grey_as_rgb = replace(brain, pixels=np.repeat(brain.pixels, 3, axis=1))

    def channels(label: str) -> int:
        return catalogue.choices[label].bundle.manifest["config"]["preprocess"]["channels"]

    for case, wanted in ((photo, 3), (brain, 1), (grey_as_rgb, 1)):
        best = catalogue.best_choice(lambda label, case=case: catalogue.reads(label, case))
        assert catalogue.reads(best, case) and channels(best) == wanted
    # A photo model cannot score the greyscale brain volume; it can score a greyscale image stored as RGB,
    # as the greyscale models can.
    spr = next(label for label, choice in catalogue.choices.items() if choice.method == "spr")
    assert not catalogue.reads(spr, brain) and catalogue.reads(spr, grey_as_rgb)
    readers = {choice.bundle.path.name for label, choice in catalogue.choices.items() if catalogue.reads(label, brain)}
    learned = {"chest-xray-dia", "lgg-cddpm", "lgg-ppii"}
    # The references read it too: median-distance takes any channels, the FLAIR z-score greyscale.
    assert readers == learned | {"ham10000-median-distance", "lgg-median-distance", "lgg-flair-zscore"}
