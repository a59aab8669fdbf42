"""What a bundle was trained on and what a case is: recorded by prepare and train, derived for older
bundles from their dataset's name, and compared to rank the bundles nearest a case first."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomascope.engine.data import sampled_image_facts
from anomascope.engine.datasets import PREPARERS, prepare
from anomascope.engine.datasets.profiles import DATASET_PROFILES
from anomascope.engine.fit import fit_method
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config
from anomascope.engine.profile import CaseProfile, TrainingProfile, nearness
from tests.conftest import make_dicom, write_dicom
from tests.engine.test_prepare_lgg import _write_lgg

ROOT = Path(__file__).parents[2]
SAMPLES = ROOT / "assets" / "samples"


def _manifest(name: str) -> dict:
    return json.loads((ROOT / "assets" / "models" / name / "manifest.json").read_text())


def test_every_dataset_prepare_builds_has_a_profile():
    assert set(DATASET_PROFILES) == set(PREPARERS)


def test_a_newly_trained_bundle_records_body_part_and_native_size(tmp_path):
    split = prepare("lgg", _write_lgg(tmp_path / "lgg-flair"), tmp_path / "lgg", seed=0)
    assert (split["modality"], split["body_part"], split["native_size"]) == ("MR", "BRAIN", [16, 16])
    # The training-free reference: calibrated only, so the test trains nothing.
    bundle = fit_method(default_config("median-distance"), tmp_path / "lgg", tmp_path / "b", torch.device("cpu"), False)
    data = json.loads((tmp_path / "b" / "manifest.json").read_text())["data"]
    assert bundle.manifest["data"] == data
    assert (data["modality"], data["body_part"], data["native_size"]) == ("MR", "BRAIN", [16, 16])


def test_a_split_prepared_before_the_record_gets_its_datasets_facts(tmp_path):
    prepare("lgg", _write_lgg(tmp_path / "lgg-flair"), tmp_path / "lgg", seed=0)
    split_file = tmp_path / "lgg" / "split.json"
    split = json.loads(split_file.read_text())
    split_file.write_text(json.dumps({k: v for k, v in split.items() if k not in ("body_part", "native_size")}))
    bundle = fit_method(default_config("median-distance"), tmp_path / "lgg", tmp_path / "b", torch.device("cpu"), False)
    # The table's size for the whole LGG set, not this stand-in's 16 px: the dataset, not a measurement.
    assert (bundle.manifest["data"]["body_part"], bundle.manifest["data"]["native_size"]) == ("BRAIN", [128, 128])


def test_a_folder_of_ones_own_images_records_what_its_files_tell(tmp_path):
    for index in range(3):
        pixels = np.full((20, 30), 100 * index, np.uint16)
        write_dicom(tmp_path / f"{index}.dcm", make_dicom(pixels, BodyPartExamined="CHEST" if index else "ABDOMEN"))
    facts = sampled_image_facts(sorted(tmp_path.glob("*.dcm")))
    assert facts == {"modality": "CT", "body_part": "CHEST", "native_size": [20, 30]}


def test_an_old_manifest_derives_what_it_lacks_from_its_dataset():
    lgg = _manifest("lgg-cddpm")
    assert "body_part" not in lgg["data"] and "native_size" not in lgg["data"]  # as shipped
    profile = TrainingProfile.from_manifest(lgg)
    assert (profile.modality, profile.body_part, profile.native_size, profile.channels) == (
        "MR",
        "BRAIN",
        (128, 128),
        1,
    )
    assert profile.summary() == "brain MRI FLAIR slices (MR, 128 px)"
    # A manifest that names only its dataset (no modality either) is told apart all the same.
    oldest = TrainingProfile.from_manifest({"data": {"dataset": "chest-xray"}, "config": {}})
    assert (oldest.modality, oldest.body_part, oldest.native_size) == ("DX", "CHEST", (64, 64))
    ham = TrainingProfile.from_manifest(_manifest("ham10000-ppii"))
    assert ham.summary() == "dermoscopy photographs (XC, 200×150 px)"
    # A bundle trained on an unknown folder that records nothing: everything unknown, and said so.
    unknown = TrainingProfile.from_manifest({"data": {"name": "scans"}, "config": {}})
    assert (unknown.modality, unknown.body_part, unknown.native_size) == (None, None, None)
    assert unknown.summary() == "scans images"


def test_a_case_tells_only_what_its_file_records(tmp_path):
    chest = load_case(SAMPLES / "chest-xray.png")
    assert CaseProfile.of(chest) == CaseProfile(None, None, (64, 64), 1, 1)  # a PNG records no modality
    grey = tmp_path / "grey-as-rgb.png"
    Image.fromarray(np.repeat(np.asarray(Image.open(SAMPLES / "chest-xray.png"))[..., None], 3, axis=2)).save(grey)
    assert CaseProfile.of(load_case(grey)) == CaseProfile(None, None, (64, 64), 1, 1)  # XC was only a guess
    assert CaseProfile.of(load_case(SAMPLES / "ISIC_0024311.jpg")) == CaseProfile("XC", None, (150, 200), 3, 1)
    assert CaseProfile.of(load_case(SAMPLES / "CT_small.dcm")).modality == "CT"
    dicom = write_dicom(
        tmp_path / "h.dcm", make_dicom(np.zeros((8, 8), np.uint16), Modality="MR", BodyPartExamined="HEAD")
    )
    assert CaseProfile.of(load_case(dicom)) == CaseProfile("MR", "HEAD", (8, 8), 1, 1)


def test_nearness_weighs_modality_then_body_part_then_size_then_channels():
    brain_mr = TrainingProfile("MR", "BRAIN", (128, 128), 1, "brain slices")
    chest_dx = TrainingProfile("DX", "CHEST", (64, 64), 1, "chest radiographs")
    head_mr = CaseProfile("MR", "HEAD", (512, 512), 1, 1)
    # The same modality and region (BRAIN and HEAD are one) outweigh a size that matches better.
    assert nearness(brain_mr, head_mr) < nearness(replace(chest_dx, native_size=(512, 512)), head_mr)
    assert nearness(brain_mr, replace(head_mr, body_part="CHEST")) > nearness(
        brain_mr, replace(head_mr, body_part=None)
    )
    unknown = CaseProfile(None, None, (64, 64), 1, 1)
    assert nearness(chest_dx, unknown) < nearness(brain_mr, unknown)  # only the size tells them apart
    assert nearness(chest_dx, unknown).size == 0 and nearness(brain_mr, unknown).size == pytest.approx(math.log(4))
    assert nearness(replace(chest_dx, channels=3), unknown) > nearness(chest_dx, unknown)
    assert nearness(replace(chest_dx, native_size=None), unknown).size == math.inf
    # A volume of several slices is no radiograph, though its file (NIfTI) records no modality.
    volume = replace(unknown, slices=20)
    assert nearness(chest_dx, volume).modality == 2 and nearness(brain_mr, volume).modality == 1
