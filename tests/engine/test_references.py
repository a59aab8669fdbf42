"""The training-free references: the FLAIR z-score of the brain MRI benchmark against a numpy
computation of its definition, and as a calibrated `eval` baseline."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from anomascope.app.cli import main
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import make_predictor, reference_bundle
from anomascope.engine.methods.flair_zscore.readout import zscore_map


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
