"""`anomascope eval` end to end on synthetic data: the baseline, metrics.json keys and the report."""

from __future__ import annotations

import json

from anomascope.app.cli import main
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
