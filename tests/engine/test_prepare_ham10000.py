"""`prepare ham10000` on a small stand-in of the shared layout, and the training scale it hands a bundle:
crops cut from 200x150 images make a native-mode bundle that scores every photo at that scale."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomascope.engine.bundle import load_bundle
from anomascope.engine.config import build_config
from anomascope.engine.data import at_split_scale, validation_sample
from anomascope.engine.datasets import prepare
from anomascope.engine.fit import at_training_scale, calibrate_predictor, fit_method
from anomascope.engine.methods import default_config, make_predictor
from tests.engine.test_ppii import TINY

LESIONS = 12


@pytest.fixture(scope="module")
def ham_source(tmp_path_factory) -> Path:
    """HAM10000's layout: metadata, 600x450 JPEGs and their 200x150 lesion masks, one image per lesion."""
    root = tmp_path_factory.mktemp("source")
    data = root / "ham10000" / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks_200x150").mkdir()
    rng = np.random.default_rng(0)
    with (data / "HAM10000_metadata.csv").open("w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["lesion_id", "image_id", "dx"])
        for k in range(LESIONS):
            name = f"ISIC_{k:07d}"
            table.writerow([f"HAM_{k:07d}", name, "nv"])
            skin = (rng.normal(180, 10, (450, 600, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(skin).save(data / "images" / f"{name}.jpg")
            mask = np.zeros((150, 200), np.uint8)
            mask[60:90, 80:120] = 255
            Image.fromarray(mask).save(data / "masks_200x150" / f"{name}_segmentation.png")
    return root


@pytest.fixture(scope="module")
def ham_split(ham_source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "ham10000"
    prepare("ham10000", ham_source, out, seed=0)
    return out


def _lesions_by_split(split: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, lesion in split["groups"].items():
        found.setdefault(key.split("/")[0], set()).add(lesion)
    return found


def test_a_larger_val_share_takes_its_lesions_from_train_and_keeps_test(ham_source, tmp_path):
    usual = _lesions_by_split(prepare("ham10000", ham_source, tmp_path / "usual", seed=0))
    wider = _lesions_by_split(prepare("ham10000", ham_source, tmp_path / "wider", seed=0, val_fraction=0.3))
    assert {name: len(lesions) for name, lesions in usual.items()} == {"train": 8, "val": 2, "test": 2}
    assert {name: len(lesions) for name, lesions in wider.items()} == {"train": 6, "val": 4, "test": 2}
    assert wider["test"] == usual["test"]
    assert usual["val"] < wider["val"] and wider["val"] - usual["val"] <= usual["train"]


def native_ppii(**preprocess):
    tiny = build_config(default_config("ppii"), None, TINY)
    return build_config(tiny, None, {"preprocess": {"mode": "native", **preprocess}})


def test_the_split_records_the_side_its_crops_were_cut_at(ham_split):
    split = json.loads((ham_split / "split.json").read_text())
    assert split["source_side"] == 200  # the 600x450 originals are brought to their masks' 200x150 grid
    # The typical size is the whole images', not the crops' cut from them.
    assert (split["body_part"], split["native_size"]) == ("SKIN", [150, 200])
    crop = Image.open(next((ham_split / "train" / "good").iterdir()))
    assert crop.size == (64, 64)


def test_a_native_bundle_records_the_scale_of_its_training_data(ham_split, tmp_path):
    config = build_config(native_ppii(), None, {"train": {"steps": 3}})
    bundle = fit_method(config, ham_split, tmp_path / "b", torch.device("cpu"), False)
    assert bundle.manifest["config"]["preprocess"]["scale_side"] == 200
    assert bundle.manifest["preprocessing"]["scale_side"] == 200
    assert bundle.manifest["data"]["source_side"] == 200
    # Calibrated on the split's 64x64 crops as they are (pieces of 200x150 images), not enlarged as if each
    # were a whole photo framed like the training images.
    predictor = make_predictor(load_bundle(tmp_path / "b"), torch.device("cpu"))
    assert at_split_scale(predictor, ham_split).preprocess.scale_side is None
    settings = bundle.manifest["config"]["calibration"]
    normals, anomalous = validation_sample(ham_split, settings["max_validation_images"])

    def calibration(scale_side):
        scored = copy.copy(predictor)
        scored.preprocess = replace(predictor.preprocess, scale_side=scale_side)
        k = predictor.settings["k_sigma"]
        return calibrate_predictor(scored, normals, anomalous, settings["target_fpr"], k).to_manifest()

    assert bundle.manifest["calibration"]["ppii"] == calibration(None) != calibration(200)


def test_a_scale_the_config_states_wins_and_resized_methods_keep_none(ham_split):
    assert at_training_scale(native_ppii(scale_side=150), ham_split).preprocess.scale_side == 150
    resized = build_config(default_config("ppii"), None, TINY)
    assert resized.preprocess.mode == "resize"
    assert at_training_scale(resized, ham_split).preprocess.scale_side is None
    assert at_training_scale(native_ppii(), ham_split.parent).preprocess.scale_side is None  # no split.json
