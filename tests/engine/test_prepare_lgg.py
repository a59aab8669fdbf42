"""`prepare lgg`: a patient-grouped split of FLAIR slices, trained only on slices away from any tumour."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomascope.app.cli import build_parser
from anomascope.engine.datasets import PrepareError, prepare
from anomascope.engine.datasets.layout import split_groups
from anomascope.engine.datasets.prepare import patient_zscore, split_fractions

# Slices 8..13 cross 9 -> 10, where a lexicographic sort ("10" < "8") would scramble the neighbours.
SLICES = range(8, 14)

# Written out by hand, not computed: patient number -> (tumour slices, slices fit for training, i.e.
# tumour-free and not next to a tumour slice of the same patient).
LAYOUT = {
    0: ({9}, {11, 12, 13}),
    1: ({10, 11}, {8, 13}),
    2: (set(), {8, 9, 10, 11, 12, 13}),
    3: ({13}, {8, 9, 10, 11}),
    4: ({8}, {10, 11, 12, 13}),
    5: ({10}, {8, 12, 13}),
    6: ({9, 10}, {12, 13}),
    7: ({12}, {8, 9, 10}),
    8: ({8, 13}, {10, 11}),
    9: ({11}, {8, 9, 13}),
}


def _patient(number: int) -> str:
    # Underscores and digits inside the patient name, as in the real TCGA_CS_4941_19960909.
    return f"TCGA_ZZ_{1000 + number}_19990101"


PATIENTS = {_patient(n): layout for n, layout in LAYOUT.items()}


def _write_lgg(root: Path) -> Path:
    """A tiny lgg-flair folder: 10 patients x 6 slices of 16x16 noise, random-blob masks on tumour slices."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    (root / "data.csv").write_text("Patient,death01\n" + "".join(f"{p[:13]},0\n" for p in PATIENTS))
    for patient, (tumour, _) in PATIENTS.items():
        folder = root / patient
        folder.mkdir()
        for index in SLICES:
            mask = (rng.random((16, 16)) > 0.6) if index in tumour else np.zeros((16, 16), bool)
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{patient}_{index}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{patient}_{index}_mask.png")
    return root


@pytest.fixture(scope="module")
def lgg_source(tmp_path_factory) -> Path:
    return _write_lgg(tmp_path_factory.mktemp("shared") / "lgg-flair")


def _source_file(source: Path, name: str, mask: bool = False) -> Path:
    patient = name.rsplit("_", 1)[0]
    return source / patient / (f"{name}_mask.png" if mask else f"{name}.png")


def _images(split: dict, folder: str) -> list[tuple[str, int]]:
    """(patient, slice) of every image in e.g. 'train/good'."""
    names = [name.removesuffix(".png").rsplit("_", 1) for name in split["files"].get(folder, [])]
    return [(patient, int(index)) for patient, index in names]


def _patients_by_split(split: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, patient in split["groups"].items():
        found.setdefault(patient, set()).add(key.split("/")[0])
    return found


def test_split_is_by_patient_70_10_20(lgg_source, tmp_path):
    split = prepare("lgg", lgg_source, tmp_path / "out", seed=0)
    assert all(len(splits) == 1 for splits in _patients_by_split(split).values())
    assert {name: len(patients) for name, patients in split["patients"].items()} == {"train": 7, "val": 1, "test": 2}
    assert sorted(sum(split["patients"].values(), [])) == sorted(PATIENTS)
    for name, patients in split["patients"].items():
        assert {p for p, splits in _patients_by_split(split).items() if name in splits} == set(patients)


def test_training_holds_exactly_the_slices_away_from_any_tumour(lgg_source, tmp_path):
    trained_on: set[str] = set()
    for seed in range(4):  # over a few seeds every synthetic patient is a training patient at least once
        split = prepare("lgg", lgg_source, tmp_path / f"seed{seed}", seed=seed)
        assert "train/tumour" not in split["files"]
        training = _images(split, "train/good")
        for patient, index in training:
            source_mask = np.asarray(Image.open(_source_file(lgg_source, f"{patient}_{index}", mask=True)))
            assert not source_mask.any()
        for patient in split["patients"]["train"]:
            assert {i for p, i in training if p == patient} == PATIENTS[patient][1]
        trained_on |= set(split["patients"]["train"])
    assert trained_on == set(PATIENTS)


def test_a_wider_margin_leaves_out_every_slice_within_it_and_keeps_val_and_test(lgg_source, tmp_path):
    near = prepare("lgg", lgg_source, tmp_path / "near", seed=0)
    far = prepare("lgg", lgg_source, tmp_path / "far", seed=0, tumour_margin=2)
    for patient in far["patients"]["train"]:
        tumour = PATIENTS[patient][0]
        kept = {i for p, i in _images(far, "train/good") if p == patient}
        assert kept == {i for i in SLICES if all(abs(i - t) > 2 for t in tumour)}
    for folder in ("val/good", "val/tumour", "test/good", "test/tumour"):
        assert far["files"].get(folder) == near["files"].get(folder)
    assert "within 2 of a tumour slice" in far["normal"] and far["tumour_margin"] == 2
    assert "tumour_margin" not in near  # margin 1's description is the one older bundles recorded
    with pytest.raises(PrepareError, match="margin"):
        prepare("lgg", lgg_source, tmp_path / "negative", seed=0, tumour_margin=-1)


def test_a_larger_val_share_takes_its_patients_from_train_and_keeps_test(lgg_source, tmp_path):
    for seed in range(3):
        usual = prepare("lgg", lgg_source, tmp_path / f"usual{seed}", seed=seed)
        wider = prepare("lgg", lgg_source, tmp_path / f"wider{seed}", seed=seed, val_fraction=0.3)
        assert {name: len(patients) for name, patients in wider["patients"].items()} == {
            "train": 5,
            "val": 3,
            "test": 2,
        }
        assert wider["patients"]["test"] == usual["patients"]["test"]
        for folder in ("test/good", "test/tumour"):
            assert wider["files"].get(folder) == usual["files"].get(folder)
        moved = set(wider["patients"]["val"]) - set(usual["patients"]["val"])
        assert set(usual["patients"]["val"]) <= set(wider["patients"]["val"])
        assert moved and moved <= set(usual["patients"]["train"])
        assert set(wider["patients"]["train"]) == set(usual["patients"]["train"]) - moved
        assert wider["fractions"] == {"train": 0.5, "val": 0.3, "test": 0.2}
        assert usual["fractions"] == {"train": 0.7, "val": 0.1, "test": 0.2}


@pytest.mark.parametrize("share", [0, 0.8, -0.1, 1.5, True])
def test_a_val_share_that_leaves_no_train_or_no_val_is_refused(lgg_source, tmp_path, share):
    with pytest.raises(PrepareError, match="val share must be above 0 and below 0.8"):
        prepare("lgg", lgg_source, tmp_path / "out", val_fraction=share)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize(
    ("share", "refusal"),
    [
        # 0.79 of 10 patients leaves train 0.01: every patient falls in val or test.
        (0.79, r"no training images: train's share \(0.01\) of the 10 groups"),
        # 0.01 of 10 patients: none falls in val, so a trained bundle would have no thresholds.
        (0.01, r"no normal val images to calibrate thresholds on: val's share \(0.01\) of the 10 groups"),
    ],
)
def test_a_val_share_that_empties_train_or_val_is_refused_and_keeps_the_split_there(
    lgg_source, tmp_path, share, refusal
):
    out = tmp_path / "prepared"
    prepare("lgg", lgg_source, out, seed=0)
    before = _tree(out)
    with pytest.raises(PrepareError, match=refusal):
        prepare("lgg", lgg_source, out, seed=0, overwrite=True, val_fraction=share)
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # no half-built folder left


def test_split_groups_keeps_the_test_groups_for_every_val_share():
    for count in range(1, 120):
        groups = [f"g{i}" for i in range(count)]
        splits = [split_groups(groups, split_fractions(share), seed=count) for share in (0.05, 0.1, 0.2, 0.4, 0.7)]
        tests = [{g for g, s in split.items() if s == "test"} for split in splits]
        vals = [{g for g, s in split.items() if s == "val"} for split in splits]
        assert all(test == tests[0] for test in tests)
        assert all(smaller <= larger for smaller, larger in itertools.pairwise(vals))  # a larger val only adds groups


def test_val_and_test_hold_every_slice_of_their_patients(lgg_source, tmp_path):
    split = prepare("lgg", lgg_source, tmp_path / "out", seed=0)
    for name in ("val", "test"):
        for patient in split["patients"][name]:
            tumour = {i for p, i in _images(split, f"{name}/tumour") if p == patient}
            good = {i for p, i in _images(split, f"{name}/good") if p == patient}
            assert tumour == PATIENTS[patient][0]
            assert good == set(SLICES) - PATIENTS[patient][0]


def test_tumour_masks_and_images_are_the_source_pixels(lgg_source, tmp_path):
    out = tmp_path / "out"
    split = prepare("lgg", lgg_source, out, seed=0)
    tumour_images = split["files"]["val/tumour"] + split["files"]["test/tumour"]
    assert tumour_images
    for file in tumour_images:
        name = file.removesuffix(".png")
        written = np.asarray(Image.open(out / "ground_truth" / "tumour" / f"{name}_mask.png"))
        np.testing.assert_array_equal(written, np.asarray(Image.open(_source_file(lgg_source, name, mask=True))))
        folder = "val" if file in split["files"]["val/tumour"] else "test"
        image = np.asarray(Image.open(out / folder / "tumour" / file))
        np.testing.assert_array_equal(image, np.asarray(Image.open(_source_file(lgg_source, name))))
    assert not (out / "ground_truth" / "good").exists()


def test_patient_of_every_image_is_recorded_for_the_grouped_bootstrap(lgg_source, tmp_path):
    split = prepare("lgg", lgg_source, tmp_path / "out", seed=0)
    written = [f"{folder}/{name}" for folder, names in split["files"].items() for name in names]
    assert sorted(split["groups"]) == sorted(written)
    for key, patient in split["groups"].items():
        assert key.split("/")[-1].startswith(f"{patient}_")
    assert "patient" in split["grouping"]
    on_disk = json.loads((tmp_path / "out" / "split.json").read_text())
    assert on_disk["groups"] == split["groups"]


def test_same_seed_same_split_other_seed_another(lgg_source, tmp_path):
    first = prepare("lgg", lgg_source, tmp_path / "a", seed=3)
    again = prepare("lgg", lgg_source, tmp_path / "b", seed=3)
    other = prepare("lgg", lgg_source, tmp_path / "c", seed=4)
    assert first["files"] == again["files"] and first["patients"] == again["patients"]
    assert first["patients"] != other["patients"]


def test_limit_counts_patients(lgg_source, tmp_path):
    # 7 of the 10 patients: enough for the 70/10/20 shares to draw a val patient.
    split = prepare("lgg", lgg_source, tmp_path / "out", seed=0, limit=7)
    assert sum(len(patients) for patients in split["patients"].values()) == 7
    assert len(set(split["groups"].values())) <= 7


def test_licence_and_counts_are_recorded(lgg_source, tmp_path):
    split = prepare("lgg", lgg_source, tmp_path / "out", seed=0)
    assert all(words in split["licence"] for words in ("TCGA-LGG", "TCIA", "Buda et al. 2019", "research use", "cite"))
    assert split["modality"] == "MR" and split["dataset"] == "lgg"
    assert split["counts"] == {folder: len(names) for folder, names in split["files"].items()}


def test_cli_takes_the_shared_data_folder_or_the_lgg_folder(lgg_source, tmp_path, capsys):
    for source in (lgg_source.parent, lgg_source):
        out = tmp_path / source.name
        # The parser and the command alone: main() would import the whole app for its error handling.
        args = build_parser().parse_args(["prepare", "lgg", "--source", str(source), "--out", str(out), "--seed", "1"])
        assert args.run(args) == 0
        assert json.loads(capsys.readouterr().out)["counts"]["train/good"] > 0
    from_shared, from_lgg = (tmp_path / s.name / "split.json" for s in (lgg_source.parent, lgg_source))
    assert from_shared.read_text() == from_lgg.read_text()


def test_cli_val_fraction_reaches_the_split(lgg_source, tmp_path, capsys):
    out = tmp_path / "wider"
    args = build_parser().parse_args(
        ["prepare", "lgg", "--source", str(lgg_source), "--out", str(out), "--val-fraction", "0.3"]
    )
    assert args.run(args) == 0
    split = json.loads((out / "split.json").read_text())
    assert split["fractions"]["val"] == 0.3 and len(split["patients"]["val"]) == 3


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_a_failed_overwrite_keeps_the_split_already_there(lgg_source, tmp_path):
    out = tmp_path / "prepared"
    prepare("lgg", lgg_source, out, seed=0)
    before = _tree(out)
    broken = _write_lgg(tmp_path / "broken" / "lgg-flair")
    patient = _patient(9)  # the last patient in order: the failure comes after other patients were written
    (broken / patient / f"{patient}_11_mask.png").unlink()
    with pytest.raises(PrepareError, match=f"no mask {patient}_11_mask.png"):
        prepare("lgg", broken, out, seed=1, overwrite=True)
    with pytest.raises(PrepareError, match="val share"):
        prepare("lgg", lgg_source, out, seed=1, overwrite=True, val_fraction=0.9)
    with pytest.raises(PrepareError, match="tumour margin"):
        prepare("lgg", lgg_source, out, seed=1, overwrite=True, tumour_margin=-1)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "prepared"]  # no half-built folder left


def test_an_overwrite_replaces_the_whole_split(lgg_source, tmp_path):
    out = tmp_path / "prepared"
    prepare("lgg", lgg_source, out, seed=0)
    (out / "stale.txt").write_text("from an earlier run")
    split = prepare("lgg", lgg_source, out, seed=1, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "split.json").read_text())["patients"] == split["patients"]
    with pytest.raises(PrepareError, match="not empty; pass --overwrite"):
        prepare("lgg", lgg_source, out, seed=2)


def test_no_patient_folders_is_an_error_naming_the_folder(tmp_path):
    empty = tmp_path / "lgg-flair"
    (empty / "notes").mkdir(parents=True)
    (empty / "data.csv").write_text("Patient\n")
    with pytest.raises(PrepareError, match="no patient folders.*lgg-flair"):
        prepare("lgg", empty, tmp_path / "out")


def test_missing_mask_is_an_error_naming_the_folder_and_image(tmp_path):
    source = _write_lgg(tmp_path / "lgg-flair")
    patient = _patient(3)
    (source / patient / f"{patient}_10_mask.png").unlink()
    with pytest.raises(PrepareError, match=f"{patient}.*no mask {patient}_10_mask.png for {patient}_10.png"):
        prepare("lgg", source, tmp_path / "out")


def test_patient_zscore_uses_one_mean_and_sd_for_the_whole_volume_and_keeps_air_at_zero():
    rng = np.random.default_rng(3)
    volume = [rng.integers(11, 120, (8, 8), dtype=np.uint8) for _ in range(3)]
    volume[0][:2] = 0  # air
    brain = np.concatenate([v[v > 10] for v in volume]).astype(float)
    out = patient_zscore(volume)
    expected = np.clip(0.5 + (volume[1].astype(float) - brain.mean()) / (6 * brain.std()), 0, 1) * 255
    np.testing.assert_allclose(out[1], np.maximum(expected, 11).round(), atol=0.5)
    assert (out[0][:2] == 0).all() and (out[0][2:] > 10).all()
    # A scan with twice the gain is the same volume once normalised (within the 8-bit rounding).
    doubled = patient_zscore([(v.astype(np.uint16) * 2).astype(np.uint8) for v in volume])
    for a, b in zip(out, doubled, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_patient_normalisation_writes_each_patients_normalised_slices_and_says_so(lgg_source, tmp_path):
    out = tmp_path / "out"
    args = build_parser().parse_args(
        ["prepare", "lgg", "--source", str(lgg_source), "--out", str(out), "--normalise", "patient"]
    )
    assert args.run(args) == 0
    split = json.loads((out / "split.json").read_text())
    assert "z-scored" in split["normalise"]
    patient = split["patients"]["val"][0]
    source = [np.asarray(Image.open(lgg_source / patient / f"{patient}_{i}.png")) for i in SLICES]
    expected = dict(zip(SLICES, patient_zscore(source), strict=True))
    for folder in ("val/good", "val/tumour"):
        for name in split["files"].get(folder, []):
            index = int(name.removesuffix(".png").rsplit("_", 1)[1])
            np.testing.assert_array_equal(np.asarray(Image.open(out / folder / name)), expected[index])
    assert "normalise" not in prepare("lgg", lgg_source, tmp_path / "as-published", seed=0)
    with pytest.raises(PrepareError, match="ham10000"):
        prepare("ham10000", lgg_source, tmp_path / "ham", seed=0, normalise="patient")
