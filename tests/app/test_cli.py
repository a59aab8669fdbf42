"""The command line: inspect's JSON and exit codes, prepare's layout and determinism."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomascope.app.cli import main
from tests.conftest import shipped_dicom


def test_inspect_prints_one_json_object(capsys):
    assert main(["inspect", shipped_dicom("CT_small.dcm")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "dicom" and out["modality"] == "CT"
    assert out["shape"] == [1, 1, 128, 128]
    assert out["spacing"] == pytest.approx([0.661468, 0.661468])
    assert len(out["window"]) == 2


def test_inspect_bad_file_exit_2_one_sentence(tmp_path):
    bad = tmp_path / "scan.dcm"
    bad.write_bytes(b"\x00garbage" * 50)
    result = subprocess.run(
        [sys.executable, "-m", "anomascope.app.cli", "inspect", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("anomascope inspect: scan.dcm: ")
    assert len(result.stderr.strip().splitlines()) == 1


def _fake_ham(root: Path, n_lesions: int = 12) -> Path:
    """A tiny stand-in for the shared HAM10000 layout: lesion in the centre, skin around it."""
    data = root / "ham10000" / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks_200x150").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_lesions):
        for j in range(2):  # two images per lesion: the grouping must keep them together
            name = f"ISIC_{i:05d}{j}"
            image = rng.integers(150, 200, (150, 200, 3), dtype=np.uint8)
            mask = np.zeros((150, 200), np.uint8)
            mask[50:100, 70:130] = 255
            image[mask > 0] = 60
            Image.fromarray(image).save(data / "images" / f"{name}.jpg")
            Image.fromarray(mask).save(data / "masks_200x150" / f"{name}_segmentation.png")
            rows.append({"lesion_id": f"HAM_{i:04d}", "image_id": name, "dx": "nv"})
    with (data / "HAM10000_metadata.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["lesion_id", "image_id", "dx"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_prepare_ham10000_layout_grouping_and_determinism(tmp_path):
    source = _fake_ham(tmp_path / "src")
    for out in ("a", "b"):
        assert main(["prepare", "ham10000", "--source", str(source), "--out", str(tmp_path / out), "--seed", "3"]) == 0
    split_a = json.loads((tmp_path / "a" / "split.json").read_text())
    split_b = json.loads((tmp_path / "b" / "split.json").read_text())
    assert split_a == split_b and split_a["seed"] == 3 and split_a["grouping"] == "lesion_id"
    root = tmp_path / "a"
    assert (root / "train" / "good").is_dir() and not (root / "train" / "lesion").exists()
    for name in split_a["files"].get("test/lesion", []):
        mask = np.asarray(Image.open(root / "ground_truth" / "lesion" / name.replace(".png", "_mask.png")))
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
    # Training crops are lesion-free: the planted lesion is dark (60), skin is 150-200.
    for path in (root / "train" / "good").glob("*.png"):
        assert np.asarray(Image.open(path)).min() >= 110  # JPEG ringing aside, no lesion pixel
    # No lesion (group) on two sides of the split.
    side = {}
    for key, names in split_a["files"].items():
        for name in names:
            lesion = name[:10]
            side.setdefault(lesion, set()).add(key.split("/")[0])
    assert all(len(s) == 1 for s in side.values())


def test_prepare_other_seed_differs(tmp_path):
    source = _fake_ham(tmp_path / "src")
    main(["prepare", "ham10000", "--source", str(source), "--out", str(tmp_path / "a"), "--seed", "0"])
    main(["prepare", "ham10000", "--source", str(source), "--out", str(tmp_path / "b"), "--seed", "1"])
    a = json.loads((tmp_path / "a" / "split.json").read_text())["files"]
    b = json.loads((tmp_path / "b" / "split.json").read_text())["files"]
    assert a != b


def test_prepare_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "hands", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "expected" in capsys.readouterr().err


def test_prepare_refuses_to_overwrite(tmp_path, capsys):
    source = _fake_ham(tmp_path / "src")
    out = tmp_path / "out"
    assert main(["prepare", "ham10000", "--source", str(source), "--out", str(out)]) == 0
    assert main(["prepare", "ham10000", "--source", str(source), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_train_on_images_that_do_not_fit_the_config_is_a_clear_error(tmp_path, capsys):
    from tests.synthetic import make_blob_dataset

    data = make_blob_dataset(tmp_path / "rgb", n_train=2, n_val=1, n_test=1)
    config = tmp_path / "grey.toml"
    config.write_text("[preprocess]\nchannels = 1\nimage_size = 32\n")
    code = main(
        [
            "train",
            "--method",
            "ppii",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "b"),
            "--config",
            str(config),
            "--steps",
            "1",
            "--quiet",
        ]
    )
    assert code == 2
    assert "n000.png: has 3 channel(s) but this model was trained on 1-channel images" in capsys.readouterr().err


def test_train_seed_overrides_the_configs_and_a_method_that_trains_nothing_refuses_it(tmp_path, capsys):
    from tests.synthetic import make_blob_dataset

    data = make_blob_dataset(tmp_path / "data", n_train=2, n_val=1, n_test=1)
    config = tmp_path / "tiny.toml"
    config.write_text("[net]\nfeatures = [8, 8, 16, 32, 32, 8]\n[ppii]\nmc_passes = 2\n")
    arguments = ["train", "--data", str(data), "--quiet", "--seed", "5"]
    bundle = tmp_path / "b"
    ppii = ["--method", "ppii", "--config", str(config), "--steps", "1", "--image-size", "32", "--out", str(bundle)]
    assert main([*arguments, *ppii]) == 0
    assert json.loads((bundle / "manifest.json").read_text())["config"]["train"]["seed"] == 5
    capsys.readouterr()
    assert main([*arguments, "--method", "median-distance", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (
        "anomascope train: --steps, --seconds and --seed apply to methods that train; median-distance trains nothing\n"
    )


def test_train_seconds_ends_training_early_and_the_bundle_records_the_steps_done(tmp_path):
    from anomascope.engine.training import LOSS_READ_EVERY
    from tests.synthetic import make_blob_dataset

    data = make_blob_dataset(tmp_path / "data", n_train=2, n_val=1, n_test=1)
    config = tmp_path / "tiny.toml"
    config.write_text("[net]\nfeatures = [8, 8, 16, 32, 32, 8]\n[ppii]\nmc_passes = 2\n[train]\nbatch_size = 2\n")
    bundle = tmp_path / "b"
    arguments = ["--method", "ppii", "--data", str(data), "--config", str(config), "--image-size", "32", "--quiet"]
    assert main(["train", *arguments, "--out", str(bundle), "--steps", "100000", "--seconds", "0.001"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["training"]["steps"] == LOSS_READ_EVERY and manifest["config"]["train"]["max_seconds"] == 0.001
