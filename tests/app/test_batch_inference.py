"""`anomascope infer` over an archive: folders and list files of many inputs, shards (by --shard and by
processes under a launcher) that share one output folder and together score every input once, the
results table (CSV and Parquet), restarts that skip what is done, and bad files as rows, never a stop."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from pydicom.uid import generate_uid

from anomascope.app.cli import EXIT_BAD_INPUT, main
from anomascope.app.cli.batch_inference import ArchiveError, Shard, gather_inputs
from anomascope.engine.bundle import load_bundle
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor
from tests.conftest import make_dicom, shipped_dicom, write_dicom
from tests.synthetic import make_stripe_dataset


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The training-free colour reference, calibrated on a small synthetic split: fast to score."""
    data = make_stripe_dataset(tmp_path_factory.mktemp("stripes"), n_train=4)
    out = tmp_path_factory.mktemp("bundle") / "median-distance"
    fit_method(default_config("median-distance"), data, out, torch.device("cpu"), show_progress=False)
    return out


@pytest.fixture
def archive(tmp_path) -> Path:
    """Photos at the top and in a sub-folder (two of them named alike), a DICOM series folder whose files
    have no suffix, a file that is not an image, and files that are not inputs."""
    root = tmp_path / "archive"
    (root / "clinic-b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for folder, names in ((root, ["a.png", "b.jpg", "same.png"]), (root / "clinic-b", ["c.png", "same.png"])):
        for name in names:
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    series = root / "clinic-b" / "series"
    series.mkdir()
    uids = {"SeriesInstanceUID": generate_uid(), "StudyInstanceUID": generate_uid()}
    for k in range(3):
        pixels = rng.integers(0, 1000, (16, 16)).astype(np.uint16)
        slice_k = make_dicom(pixels, ImagePositionPatient=[0, 0, 2.0 * k], InstanceNumber=k + 1, **uids)
        write_dicom(series / f"IM{k:04d}", slice_k)
    (root / "clinic-b" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("not an input")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def rows(out: Path) -> list[dict]:
    found = []
    for table in sorted((out / "results" / "csv").glob("*.csv")):
        with table.open(newline="") as f:
            found += list(csv.DictReader(f))
    return found


def infer(bundle: Path, out: Path, *args) -> int:
    return main(["infer", "--bundle", str(bundle), "--out", str(out), "--device", "cpu", *map(str, args)])


def test_a_folder_is_walked_for_its_inputs_and_a_series_folder_is_one(archive, tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(f"# the reader's extra cases\n\n{shipped_dicom('CT_small.dcm')}\n{archive / 'a.png'}\n")
    inputs = gather_inputs([str(archive)], listed)
    names = [str(p.relative_to(archive)) if archive in p.parents else p.name for p in inputs]
    assert sorted(names) == sorted(
        [
            "CT_small.dcm",
            "a.png",
            "b.jpg",
            "same.png",
            "clinic-b/broken.png",
            "clinic-b/c.png",
            "clinic-b/same.png",
            "clinic-b/series",
        ]
    )
    assert gather_inputs([str(archive / "clinic-b" / "series")]) == [archive / "clinic-b" / "series"]
    with pytest.raises(ArchiveError, match="no inputs"):
        gather_inputs([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="empty: no images or DICOM series in this folder"):
        gather_inputs([str(tmp_path / "empty")])
    with pytest.raises(ArchiveError, match="cannot be read"):
        gather_inputs([], tmp_path / "missing.txt")


def test_shards_cover_every_input_once():
    inputs = [Path(f"{k}.png") for k in range(11)]
    parts = [Shard(i, 3).take(inputs) for i in range(3)]
    assert sorted(sum(parts, []), key=str) == sorted(inputs, key=str)
    assert sum(len(p) for p in parts) == len(inputs)
    # Processes under a launcher split their own shard, whatever the other shards' process counts.
    shard = Shard(1, 2)
    parts = [shard.within(processes=3, rank=rank).take(inputs) for rank in range(3)]
    assert sorted(sum(parts, []), key=str) == sorted(shard.take(inputs), key=str)
    assert sum(len(p) for p in parts) == len(shard.take(inputs))
    assert Shard.parse("2/4") == Shard(2, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(ArchiveError, match="--shard"):
            Shard.parse(bad)


def test_an_archive_in_shards_gives_one_row_per_input_with_the_right_scores(bundle, archive, tmp_path):
    out = tmp_path / "out"
    inputs = gather_inputs([str(archive)])
    for index in range(3):  # as three array jobs sharing one output folder
        assert infer(bundle, out, "--shard", f"{index}/3", archive) == (
            EXIT_BAD_INPUT if archive / "clinic-b" / "broken.png" in Shard(index, 3).take(inputs) else 0
        )
    table = rows(out)
    assert sorted(row["file"] for row in table) == sorted(str(p.resolve()) for p in inputs)
    assert {row["shard"] for row in table} == {"shard-0-of-3", "shard-1-of-3", "shard-2-of-3"}
    [broken] = [row for row in table if row["status"] == "failed"]
    assert broken["file"].endswith("broken.png") and "not a readable PNG" in broken["error"]
    assert len({row["stem"] for row in table}) == len(table)  # same.png twice: two stems, nothing overwritten
    predictor = make_predictor(load_bundle(bundle), torch.device("cpu"))
    for row in table:
        if row["status"] != "ok":
            continue
        expected = score_case(predictor, load_case(row["file"])).image_score
        assert float(row["score"]) == pytest.approx(expected, rel=1e-6)
        outputs = json.loads(row["outputs"])
        assert all((out / name).exists() for name in outputs)
        assert json.loads((out / f"{row['stem']}.json").read_text())["source"] == row["file"]
    parquet = pq.read_table(out / "results" / "parquet").to_pylist()  # every shard's table at once
    assert sorted((r["file"], r["status"], r["score"]) for r in parquet) == sorted(
        (r["file"], r["status"], float(r["score"]) if r["score"] else None) for r in table
    )


def test_a_restart_skips_what_is_done_and_tries_the_failures_again(bundle, archive, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(bundle, out, archive) == EXIT_BAD_INPUT
    first = {row["file"]: row for row in rows(out)}
    capsys.readouterr()
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(archive / "new.png")
    assert infer(bundle, out, archive) == EXIT_BAD_INPUT  # broken.png fails again
    scored = [json.loads(line)["file"] for line in capsys.readouterr().out.splitlines()]
    assert scored == ["new.png"]
    again = {row["file"]: row for row in rows(out)}
    assert set(again) == set(first) | {str((archive / "new.png").resolve())}  # still one row per input
    assert all(again[f]["seconds"] == first[f]["seconds"] for f in first if first[f]["status"] == "ok")
    # Other settings are another result: everything is scored again.
    assert infer(bundle, out, "--threshold", "0.5", archive) == EXIT_BAD_INPUT
    assert len(capsys.readouterr().out.splitlines()) == len(again) - 1
    assert len(rows(out)) == len(again)


def test_links_that_loop_are_bad_inputs_named_in_one_sentence(bundle, archive, tmp_path, capsys):
    series = archive / "clinic-b" / "series"
    (series / "a").symlink_to("b")
    (series / "b").symlink_to("a")
    (archive / "loop.png").symlink_to("loop.png")  # walked as an input: its name says it is one
    out = tmp_path / "out"
    assert infer(bundle, out, archive) == EXIT_BAD_INPUT
    errors = capsys.readouterr().err
    assert "anomascope infer: series: a is a link that loops" in errors
    assert "anomascope infer: loop.png: a link that loops" in errors
    assert "RuntimeError" not in errors and "Traceback" not in errors
    failed = {Path(row["file"]).name: row["error"] for row in rows(out) if row["status"] == "failed"}
    assert set(failed) == {"series", "loop.png", "broken.png"} and "loops" in failed["loop.png"]


def test_processes_under_a_launcher_split_the_inputs(bundle, archive, tmp_path):
    """Two processes under torch's launcher (gloo on the CPU): accelerate gives each its part."""
    out = tmp_path / "out"
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "anomascope.app.cli"]
        + ["infer", "--bundle", str(bundle), "--out", str(out), str(archive)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode != 0 and "not a readable PNG" in launched.stderr  # reported, and every input scored
    table = rows(out)
    assert sorted(row["file"] for row in table) == sorted(str(p.resolve()) for p in gather_inputs([str(archive)]))
    assert {row["shard"] for row in table} == {"shard-0-of-2", "shard-1-of-2"}
