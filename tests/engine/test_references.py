"""The training-free references: the FLAIR z-score of the brain MRI benchmark against a numpy
computation of its definition, and as a calibrated `eval` baseline."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from anomascope.app.cli import main
from anomascope.engine.datasets import prepare
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor, reference_bundle
from anomascope.engine.methods.flair_zscore.readout import zscore_map
from tests.engine.test_prepare_lgg import _write_lgg


def brain_slice(rng: np.random.Generator, size: int = 48, lesion: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A dark background, a textured disk of brain and, optionally, a hyperintense lesion in it (uint8)."""
    yy, xx = np.mgrid[:size, :size]
    brain = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    image = np.where(brain, rng.normal(90, 12, (size, size)), rng.uniform(0, 6, (size, size)))
    mask = np.zeros((size, size), bool)
    if lesion:
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < (size / 10) ** 2
        image[mask] += 70
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_the_zscore_map_is_the_definition():
    image, _ = brain_slice(np.random.default_rng(0))
    unit = image.astype(np.float64) / 255.0
    brain = unit > 10 / 255
    expected = (unit - unit[brain].mean()) / unit[brain].std()
    found = zscore_map(torch.from_numpy(unit * 2 - 1).float()[None, None], 10 / 255)[0].numpy()
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_a_slice_without_brain_maps_to_zero():
    empty = torch.full((1, 1, 16, 16), -1.0)
    assert torch.equal(zscore_map(empty, 10 / 255), torch.zeros(1, 16, 16))


def test_the_reference_finds_the_lesion_on_a_greyscale_slice(tmp_path):
    image, mask = brain_slice(np.random.default_rng(1))
    Image.fromarray(image).save(tmp_path / "slice.png")
    predictor = make_predictor(reference_bundle("flair-zscore"), torch.device("cpu"))
    heatmap = score_case(predictor, load_case(tmp_path / "slice.png")).heatmap[0]
    assert heatmap.shape == image.shape
    assert heatmap[mask].mean() > heatmap[~mask & (image > 10)].mean() + 3  # z-scores: the lesion stands out


def test_a_bundle_with_a_foreground_zeroes_its_maps_outside_it_and_nowhere_else(tmp_path):
    image, _ = brain_slice(np.random.default_rng(3))
    Image.fromarray(image).save(tmp_path / "slice.png")
    case = load_case(tmp_path / "slice.png")
    predictor = make_predictor(reference_bundle("median-distance"), torch.device("cpu"))
    whole = score_case(predictor, case).heatmap[0]
    predictor.preprocess = replace(predictor.preprocess, foreground_above=0.04)
    masked = score_case(predictor, case).heatmap[0]
    brain = image > 10  # 0.04 of the 0-255 window
    assert brain.any() and (~brain).any() and whole[~brain].max() > 0
    assert (masked[~brain] == 0).all()
    np.testing.assert_array_equal(masked[brain], whole[brain])


def test_eval_calibrates_the_reference_on_the_split_it_evaluates(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "data"
    for split in ("val", "test"):
        for i in range(3):
            for kind, lesion in (("good", False), ("tumour", True)):
                image, mask = brain_slice(rng, lesion=lesion)
                (root / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / kind / f"{split}{i}.png")
                if lesion:
                    (root / "ground_truth" / "tumour").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask.astype(np.uint8) * 255).save(
                        root / "ground_truth" / "tumour" / f"{split}{i}_mask.png"
                    )
    out = tmp_path / "eval"
    assert main(["eval", "--baseline", "flair-zscore", "--data", str(root), "--out", str(out), "--bootstrap", "5"]) == 0
    result = json.loads((out / "metrics.json").read_text())["results"]["flair-zscore"]
    assert result["pixel_auroc"] > 0.95
    assert result["threshold_method"].startswith("max_f1 (val split: 3 images with masks")
    assert result["image_auroc"] == pytest.approx(1.0)


def test_a_training_free_bundle_is_named_by_its_config_and_data_not_its_empty_weights(tmp_path):
    """Every training-free bundle's weights file is the same empty one: were its id the weights' hash, two
    bundles calibrated on different data would share it, and with it their site thresholds."""
    prepared = tmp_path / "lgg"
    prepare("lgg", _write_lgg(tmp_path / "lgg-flair"), prepared, seed=0)
    config, cpu = default_config("median-distance"), torch.device("cpu")
    first = fit_method(config, prepared, tmp_path / "first", cpu, show_progress=False)
    again = fit_method(config, prepared, tmp_path / "again", cpu, show_progress=False)
    assert first.id == again.id  # the same reference, made twice
    other_data = tmp_path / "lgg-other"
    shutil.copytree(prepared, other_data)
    changed = sorted((other_data / "train" / "good").iterdir())[0]
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(changed)
    other = fit_method(config, other_data, tmp_path / "other", cpu, show_progress=False)
    assert other.manifest["weights_sha256"] == first.manifest["weights_sha256"]
    assert other.id != first.id and other.id.startswith("median-distance-")
    coarser = replace(config, median_distance=replace(config.median_distance, sigma_at_256=8.0))
    assert fit_method(coarser, prepared, tmp_path / "coarser", cpu, show_progress=False).id != first.id
