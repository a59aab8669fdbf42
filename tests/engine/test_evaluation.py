"""`anomascope eval` end to end on synthetic data: the baseline, metrics.json keys and the report."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from anomascope.app.cli import main
from anomascope.engine.evaluation import load_test_split
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import make_predictor, reference_bundle
from tests.synthetic import make_blob_dataset

KEYS = ["pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp"]


def test_eval_baseline_writes_metrics_and_report(tmp_path):
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=6, n_test=10)
    assert (
        main(
            [
                "eval",
                "--baseline",
                "median-distance",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "out"),
                "--bootstrap",
                "50",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    result = report["results"]["median-distance"]
    for key in KEYS:
        assert key in result and f"{key}_std" in result
    # Textured blobs on smooth backgrounds are far from the median colour: the reference finds them.
    assert result["pixel_auroc"] > 0.9 and result["image_auroc"] > 0.8
    assert result["threshold_method"].startswith("max_f1")
    assert result["n_images"] == 20 and result["device"] == "cpu"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "median-distance" in html and "plotly" in html.lower() and "data:image/png;base64" in html


def test_eval_needs_something_to_evaluate(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--bundle or --baseline" in capsys.readouterr().err


def test_eval_at_a_chosen_threshold_matches_a_direct_dice(tmp_path, capsys):
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=6, n_test=10)
    images = load_test_split(data, "test")
    baseline = make_predictor(reference_bundle("median-distance"), torch.device("cpu"))
    maps = [score_case(baseline, load_case(item.path)).heatmap[0] for item in images]
    threshold = float(f"{np.percentile(np.concatenate([h.ravel() for h in maps]), 95):.6g}")
    arguments = ["eval", "--baseline", "median-distance", "--data", str(data), "--bootstrap", "20"]
    assert main([*arguments, "--out", str(tmp_path / "out"), "--threshold", str(threshold)]) == 0
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())["results"]["median-distance"]
    assert result["threshold"] == threshold and result["threshold_method"] == "manual"
    flagged = np.concatenate([(h >= threshold).ravel() for h in maps])
    truth = np.concatenate(
        [
            (item.mask if item.mask is not None else np.zeros_like(h, bool)).ravel()
            for item, h in zip(images, maps, strict=True)
        ]
    )
    assert result["dice"] == pytest.approx(2 * (flagged & truth).sum() / (flagged.sum() + truth.sum()))
    # A calibrated threshold by name; a training-free reference has no site presets to look up.
    assert main([*arguments, "--out", str(tmp_path / "out2"), "--threshold", "target_fpr"]) == 0
    named = json.loads((tmp_path / "out2" / "metrics.json").read_text())["results"]["median-distance"]
    assert named["threshold_method"].startswith("target_fpr")
    capsys.readouterr()
    assert main([*arguments, "--out", str(tmp_path / "out3"), "--threshold", "site A"]) == 2
    assert "not a number, nor a threshold of this reference" in capsys.readouterr().err


def test_eval_on_anomalous_images_only_pools_just_those(tmp_path):
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=6, n_test=6)
    arguments = ["eval", "--baseline", "median-distance", "--data", str(data), "--bootstrap", "5", "--anomalous-only"]
    assert main([*arguments, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    result = report["results"]["median-distance"]
    anomalous = [item for item in load_test_split(data, "test") if item.kind != "good"]
    baseline = make_predictor(reference_bundle("median-distance"), torch.device("cpu"))
    maps = [score_case(baseline, load_case(item.path)).heatmap[0] for item in anomalous]
    scores = np.concatenate([h.ravel() for h in maps])
    truth = np.concatenate([item.mask.ravel() for item in anomalous])
    assert report["images"] == "anomalous test images only" and result["n_images"] == len(anomalous) == 6
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)


def test_eval_of_a_folder_of_images_with_masks_equals_eval_of_the_same_prepared_split(tmp_path):
    """A reader's own folder (X.png with X_mask.png; all black for a normal image) needs no split."""
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=6, n_test=6)
    bundle = tmp_path / "reference"
    assert main(["train", "--method", "median-distance", "--data", str(data), "--out", str(bundle), "--quiet"]) == 0
    folder = tmp_path / "mine"
    folder.mkdir()
    for item in load_test_split(data, "test"):
        shutil.copy(item.path, folder / item.path.name)
        mask = item.mask if item.mask is not None else np.zeros(Image.open(item.path).size[::-1], bool)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{item.path.stem}_mask.png")
    results = {}
    for name, source in (("split", data), ("folder", folder)):
        arguments = ["eval", "--bundle", str(bundle), "--data", str(source), "--bootstrap", "5"]
        assert main([*arguments, "--out", str(tmp_path / name)]) == 0
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())["results"][
            "reference:median-distance"
        ]
    for key in ["pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp"]:
        assert results["folder"][key] == pytest.approx(results["split"][key], abs=1e-12), key
    assert results["folder"]["n_images"] == results["split"]["n_images"] == 12


def test_eval_of_a_folder_says_what_is_missing(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    assert main(["eval", "--bundle", "x", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "without an X_mask.png beside them, e.g. a.png" in capsys.readouterr().err
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a_mask.png")
    assert main(["eval", "--baseline", "median-distance", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "calibrated on a prepared split's val images" in capsys.readouterr().err


def test_eval_of_the_val_split_scores_the_val_images_alone(tmp_path):
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=4, n_test=6)
    arguments = ["eval", "--baseline", "median-distance", "--data", str(data), "--bootstrap", "5"]
    assert main([*arguments, "--out", str(tmp_path / "out"), "--split", "val", "--no-report"]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    result = report["results"]["median-distance"]
    val = load_test_split(data, "val")
    baseline = make_predictor(reference_bundle("median-distance"), torch.device("cpu"))
    scores = np.concatenate([score_case(baseline, load_case(item.path)).heatmap[0].ravel() for item in val])
    truth = np.concatenate([(item.mask if item.mask is not None else np.zeros((32, 32), bool)).ravel() for item in val])
    assert report["split"] == "val" and report["images"] == "all val images" and result["n_images"] == 8
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    assert not (tmp_path / "out" / "report.html").exists()


def test_eval_of_several_seeds_of_one_config_reports_their_spread(tmp_path):
    from anomascope.engine.config import build_config
    from anomascope.engine.fit import fit_method
    from anomascope.engine.methods import default_config

    data = make_blob_dataset(tmp_path / "data", n_train=8, n_val=4, n_test=4)
    tiny = {
        "net": {"features": [4, 4, 8, 8, 8, 4]},
        "preprocess": {"image_size": 32},
        "train": {"steps": 3, "batch_size": 4},
        "ppii": {"mc_passes": 2},
        "calibration": {"max_validation_images": 4},
    }
    paths = []
    for seed, dropout in ((0, 0.1), (1, 0.1), (2, 0.1), (0, 0.2)):  # the last is another config
        config = build_config(default_config("ppii"), None, tiny)
        config = build_config(config, None, {"train": {"seed": seed}, "net": {"dropout": dropout}})
        path = tmp_path / f"seed{seed}-dropout{dropout}" / "bundle"
        fit_method(config, data, path, torch.device("cpu"), show_progress=False)
        paths.append(str(path))
    arguments = ["eval", "--data", str(data), "--split", "val", "--bootstrap", "0", "--no-report"]
    assert main([*arguments, *[f"--bundle={p}" for p in paths], "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    names = [f"{p}:ppii" for p in paths]
    assert sorted(report["results"]) == sorted(names)  # four folders named "bundle", told apart by their paths
    [spread] = report["seed_spread"]
    assert spread["bundles"] == names[:3] and spread["seeds"] == [0, 1, 2] and spread["n"] == 3
    for figure in ("pixel_auroc", "pixel_ap", "image_auroc"):
        values = [report["results"][name][figure] for name in names[:3]]
        mean, sd = spread["figures"][figure]
        assert mean == pytest.approx(np.mean(values)) and sd == pytest.approx(np.std(values, ddof=1))
