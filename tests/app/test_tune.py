"""`anomascope tune` as a user runs it on a folder of their own images with masks, with a shipped bundle."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from anomascope.app.cli import main
from anomascope.storage import AuditEvent, Database, ThresholdPreset

ROOT = Path(__file__).parents[2]
BUNDLE = ROOT / "assets" / "models" / "ham10000-ppii"
SAMPLES = ROOT / "assets" / "samples"


def _site_folder(folder: Path) -> Path:
    """Three photos, each with X_mask.png beside it: two with a lesion outlined, one normal (all black)."""
    folder.mkdir()
    for name, box in (
        ("ISIC_0024311", (45, 45, 110, 150)),
        ("ISIC_0024318", (40, 50, 115, 160)),
        ("ISIC_0024320", None),
    ):
        shutil.copy(SAMPLES / f"{name}.jpg", folder / f"{name}.jpg")
        mask = np.zeros((150, 200), np.uint8)
        if box:
            top, left, bottom, right = box
            mask[top:bottom, left:right] = 255
        Image.fromarray(mask).save(folder / f"{name}_mask.png")
    return folder


def _tune(data: Path, url: str, criterion: str, name: str, out: Path, *extra: str) -> list[str]:
    """`anomascope tune` arguments (few bootstrap resamples: the bands are not what these tests check)."""
    return [
        "tune",
        "--bundle",
        str(BUNDLE),
        "--data",
        str(data),
        "--criterion",
        criterion,
        "--name",
        name,
        "--db",
        url,
        "--bootstrap",
        "20",
        "--out",
        str(out),
        *extra,
    ]


def test_tune_proposes_stores_and_versions_a_site_threshold(tmp_path, capsys):
    data = _site_folder(tmp_path / "site")
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(_tune(data, url, "dice", "site A", tmp_path / "out")) == 0
    printed = json.loads(capsys.readouterr().out)
    record = json.loads((tmp_path / "out" / "tuning.json").read_text())
    assert record["criterion"] == "dice" and record["n_cases"] == 3 and record["n_with_findings"] == 2
    assert record["threshold"] == printed["threshold"] and record["preset"]["version"] == 1
    # The proposed threshold is the one with the highest mean Dice on the curve it wrote.
    dice = np.array([np.nan if d is None else d for d in record["curves"]["dice"]])
    at = record["thresholds"].index(record["threshold"])
    assert dice[at] == pytest.approx(np.nanmax(dice)) == pytest.approx(record["figure"])
    assert "plotly" in (tmp_path / "out" / "tuning.html").read_text()[:200_000]
    # Again, by sensitivity: the next version of the same name; a dry run stores nothing.
    assert main(_tune(data, url, "sensitivity=0.9", "site A", tmp_path / "out2")) == 0
    assert main(_tune(data, url, "dice", "site A", tmp_path / "out3", "--dry-run")) == 0
    db = Database(url)
    with db.sessions() as session:
        presets = list(session.scalars(select(ThresholdPreset).order_by(ThresholdPreset.id)))
        assert [(p.name, p.version, p.criterion) for p in presets] == [
            ("site A", 1, "dice"),
            ("site A", 2, "sensitivity=0.9"),
        ]
        assert presets[0].value == pytest.approx(record["threshold"]) and presets[0].n_cases == 3
        assert presets[1].figure >= 0.9 and "3 cases" in presets[1].provenance
        assert [e.action for e in session.scalars(select(AuditEvent))] == ["preset.add", "preset.add"]
    db.dispose()


def test_tune_bad_input_is_one_sentence(tmp_path, capsys):
    data = _site_folder(tmp_path / "site")
    base = ["tune", "--bundle", str(BUNDLE), "--name", "x", "--out", str(tmp_path / "out"), "--dry-run"]
    assert main([*base, "--data", str(data), "--criterion", "f1"]) == 2
    assert "unknown criterion 'f1'" in capsys.readouterr().err
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "ISIC_0024320_mask.png")
    assert main([*base, "--data", str(data), "--criterion", "dice"]) == 2
    assert "ISIC_0024320_mask.png is 10x10 px but ISIC_0024320.jpg is 200x150 px" in capsys.readouterr().err
    (data / "ISIC_0024320_mask.png").unlink()
    assert main([*base, "--data", str(data), "--criterion", "dice"]) == 2
    assert "without an X_mask.png beside them, e.g. ISIC_0024320.jpg" in capsys.readouterr().err


def test_infer_writes_masks_at_a_preset_a_calibrated_threshold_or_a_number(tmp_path, capsys):
    data = _site_folder(tmp_path / "site")
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(_tune(data, url, "fpr=0.05", "site B", tmp_path / "tuning")) == 0
    preset = json.loads(capsys.readouterr().out)["threshold"]
    image = data / "ISIC_0024311.jpg"
    assert (
        main(
            [
                "infer",
                "--bundle",
                str(BUNDLE),
                "--out",
                str(tmp_path / "a"),
                "--threshold",
                "site B",
                "--db",
                url,
                str(image),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "a" / "ISIC_0024311.json").read_text())
    heatmap = np.load(tmp_path / "a" / "ISIC_0024311_heatmap.npy")
    mask = np.load(tmp_path / "a" / "ISIC_0024311_mask.npy")
    assert summary["threshold"] == preset and summary["threshold_method"].startswith("preset 'site B' v1")
    np.testing.assert_array_equal(mask, heatmap >= np.float32(preset))
    png = np.asarray(Image.open(tmp_path / "a" / "ISIC_0024311_mask.png")) > 0
    np.testing.assert_array_equal(png, mask[0])
    assert summary["mask_pixels"] == int(mask.sum())
    # A calibrated threshold by name, and a plain number.
    assert (
        main(["infer", "--bundle", str(BUNDLE), "--out", str(tmp_path / "b"), "--threshold", "target_fpr", str(image)])
        == 0
    )
    calibrated = json.loads((tmp_path / "b" / "ISIC_0024311.json").read_text())
    assert calibrated["threshold"] == calibrated["thresholds"]["target_fpr"]
    assert main(["infer", "--bundle", str(BUNDLE), "--out", str(tmp_path / "c"), "--threshold", "0.5", str(image)]) == 0
    assert json.loads((tmp_path / "c" / "ISIC_0024311.json").read_text())["threshold_method"] == "manual"
    capsys.readouterr()
    assert (
        main(
            [
                "infer",
                "--bundle",
                str(BUNDLE),
                "--out",
                str(tmp_path / "d"),
                "--threshold",
                "site C",
                "--db",
                url,
                str(image),
            ]
        )
        == 2
    )
    assert "--threshold 'site C' is not a number, nor a threshold of bundle" in capsys.readouterr().err


def test_presets_are_exported_beside_the_annotations(tmp_path, capsys):
    data = _site_folder(tmp_path / "site")
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    assert main(_tune(data, url, "=fpr", "=cmd", tmp_path / "tuning")) == 2  # "=fpr" is no criterion
    assert main(_tune(data, url, "fpr=0.05", "=cmd", tmp_path / "tuning")) == 0
    capsys.readouterr()
    assert main(["export", "--db", url, "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    with (tmp_path / "csv" / "presets.csv").open(newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["name"] == "'=cmd" and row["version"] == "1" and row["criterion"] == "fpr=0.05"  # formula-safe
    assert main(["export", "--db", url, "--format", "json", "--out", str(tmp_path / "json")]) == 0
    [record] = json.loads((tmp_path / "json" / "presets.json").read_text())
    assert record["name"] == "=cmd" and record["n_cases"] == 3 and record["bundle_id"]
