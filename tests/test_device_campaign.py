"""bench/device/campaign.sh as the lent GPU machine runs it, tried here on the CPU: a plan's runs trained at once,
each scored on val, each bundle name's best run picked on val and alone scored on test, what goes back within
the device tool's limits, and a run cut by the limit resumed in the next window."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from anomascope.app.cli import main
from anomascope.engine.config import build_config
from anomascope.engine.methods import default_config
from anomascope.engine.training import LOSS_READ_EVERY
from tests.bench_scripts import load_bench_script
from tests.synthetic import make_blob_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_PPII = (
    "[net]\nfeatures = [8, 8, 16, 32, 32, 8]\n[ppii]\nmc_passes = 2\n[calibration]\nmax_validation_images = 2\n"
    "[train]\nbatch_size = 4\n"
)
# Not figures of the bundle: how long the scoring took, where it ran.
TIMINGS = {"seconds_per_image"}


def load_campaign():
    return load_bench_script("device/campaign.py")


def write_plan(path: Path, data: Path, config: Path, runs: list[dict], bootstrap: int = 5) -> Path:
    lines = [f'data = "{data}"', f"bootstrap = {bootstrap}"]
    for run in runs:
        lines += ["", "[[run]]", f'method = "ppii"\nconfig = "{config}"\nextra = ["--image-size", "32"]']
        lines += [f"{key} = {json.dumps(value)}" for key, value in run.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def campaign_sh(plan: Path, tmp_path: Path, runs: Path, limit: int, score_seconds: int) -> tuple[Path, dict]:
    """Runs the script from the repository root as the machine would, with this interpreter as its python3;
    ($OUT, campaign.json)."""
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        OUT=str(out),
        KIT_DIR=str(tmp_path / "kit"),
        RUNS=str(runs),
        DEVICE="cpu",
        LIMIT=str(limit),
        SCORE_SECONDS=str(score_seconds),
    )
    done = subprocess.run(
        ["bash", "bench/device/campaign.sh", str(plan)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return out, json.loads((out / "campaign.json").read_text())


def unpack(out: Path, into: Path) -> list[str]:
    """The handed-back parts, checked against their sums and unpacked; the names in the tar."""
    for line in (out / "campaign.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    whole = out / "campaign.tar"
    whole.write_bytes(b"".join(part.read_bytes() for part in sorted(out.glob("campaign.tar.part-*"))))
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(whole) as tar:
        tar.extractall(into, filter="data")
        return tar.getnames()


def eval_metrics(tmp_path: Path, data: Path, bundles: list[Path], split: str, *options: str) -> dict:
    """`anomascope eval` of the bundles, as a user runs it; its results by bundle folder name."""
    out = tmp_path / f"eval-{split}"
    arguments = [a for bundle in bundles for a in ("--bundle", str(bundle))]
    common = ["--data", str(data), "--out", str(out), "--split", split, "--bootstrap", "5", "--device", "cpu", *options]
    assert main(["eval", *arguments, *common, "--no-report"]) == 0
    results = json.loads((out / "metrics.json").read_text())["results"]
    return {name.partition(":")[0]: {name.partition(":")[2]: metrics} for name, metrics in results.items()}


def without_timings(figures: dict) -> dict:
    return {readout: {k: v for k, v in m.items() if k not in TIMINGS} for readout, m in figures.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("campaign-data")
    config = tmp_path / "ppii.toml"
    config.write_text(TINY_PPII)
    return make_blob_dataset(tmp_path / "data", n_train=4, n_val=3, n_test=2), config


@pytest.mark.slow  # six processes that each load torch: about 50 s on an idle two-core machine, 2 min busy
def test_two_seeds_are_trained_scored_on_val_and_the_better_alone_on_test(data, tmp_path):
    data_root, config = data
    plan = write_plan(
        tmp_path / "plan.toml",
        data_root,
        config,
        [{"bundle": "tiny", "seed": 0, "steps": 2}, {"bundle": "tiny", "seed": 1, "steps": 100000, "seconds": 0.001}],
    )
    runs = tmp_path / "runs"
    out, report = campaign_sh(plan, tmp_path, runs, limit=600, score_seconds=300)
    records = {record["name"]: record for record in report["runs"]}
    assert {name: r["status"] for name, r in records.items()} == {"tiny-seed0": "trained", "tiny-seed1": "trained"}
    # Seed 1's budget of seconds ends its training at the first loss read, however many steps it was given.
    assert [r["training"]["steps"] for r in records.values()] == [2, LOSS_READ_EVERY]
    # Each run's val figures are what `anomascope eval --split val` gives for its bundle.
    expected = eval_metrics(tmp_path, data_root, [runs / name for name in records], "val")
    for name, record in records.items():
        assert without_timings(record["val"]) == without_timings(expected[name]), name
    best = max(records, key=lambda name: records[name]["val"]["ppii"]["pixel_ap"])
    assert report["picked"] == {"tiny": best}
    assert [name for name, r in records.items() if r["picked"]] == [best]
    # Only the picked run was scored on test, and its figures are eval's.
    assert [name for name, r in records.items() if "test" in r] == [best]
    tested = eval_metrics(tmp_path, data_root, [runs / best], "test")[best]
    assert without_timings(records[best]["test"]) == without_timings(tested)
    # What comes back: the picked bundle alone, within the device tool's limits.
    files = sorted(p for p in out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert unpack(out, tmp_path / "back") == [f"{best}/manifest.json", f"{best}/weights.safetensors"]
    manifest = json.loads((tmp_path / "back" / best / "manifest.json").read_text())
    assert manifest["id"] == records[best]["bundle_id"] and manifest["config"]["train"]["seed"] == records[best]["seed"]


@pytest.mark.slow
def test_a_run_cut_by_the_limit_comes_back_as_a_checkpoint_and_resumes_in_the_next_window(data, tmp_path):
    data_root, _ = data
    config = tmp_path / "long.toml"
    config.write_text(TINY_PPII + "checkpoint_every = 2\n")
    plan = write_plan(tmp_path / "plan.toml", data_root, config, [{"bundle": "long", "steps": 1_000_000}])
    out, report = campaign_sh(plan, tmp_path, tmp_path / "first", limit=30, score_seconds=10)
    (record,) = report["runs"]
    assert record["status"] == "cut" and record["checkpoint"] and "val" not in record
    assert report["picked"] == {} and report["handed_back"] == ["long-seed0/checkpoint"]
    assert "long-seed0/checkpoint/checkpoint.pt" in unpack(out, tmp_path / "second")
    import torch

    def step(folder: Path) -> int:
        return torch.load(folder / "long-seed0" / "checkpoint" / "checkpoint.pt", weights_only=False)["step"]

    first = step(tmp_path / "second")
    _, again = campaign_sh(plan, tmp_path, tmp_path / "second", limit=30, score_seconds=10)
    assert again["runs"][0]["status"] == "cut"
    log = (tmp_path / "second" / "long-seed0.train.log").read_text()
    assert "resuming from the checkpoint" in log and step(tmp_path / "second") > first


@pytest.mark.slow
def test_a_plan_that_leaves_test_behind_trains_picks_on_its_lesion_cases_and_hands_back_the_untested_bundle(
    data, tmp_path
):
    data_root, config = data
    split = tmp_path / "no-test"
    shutil.copytree(data_root, split, ignore=lambda folder, names: ["test"] if Path(folder) == data_root else [])
    plan = write_plan(tmp_path / "plan.toml", split, config, [{"bundle": "tiny", "steps": 2}])
    plan.write_text("score_test = false\nanomalous_only = true\n" + plan.read_text())
    runs = tmp_path / "runs"
    out, report = campaign_sh(plan, tmp_path, runs, limit=600, score_seconds=300)
    (record,) = report["runs"]
    assert report["test_scored"] is False and report["picked"] == {"tiny": "tiny-seed0"}
    assert "test" not in record and not (runs / "tiny-seed0" / "test").exists()
    # Its val figures are eval's on the lesion cases alone, not on every val case.
    expected = eval_metrics(tmp_path, split, [runs / "tiny-seed0"], "val", "--anomalous-only")["tiny-seed0"]
    assert without_timings(record["val"]) == without_timings(expected)
    every_case = eval_metrics(tmp_path / "all", split, [runs / "tiny-seed0"], "val")["tiny-seed0"]
    assert without_timings(record["val"]) != without_timings(every_case)
    assert unpack(out, tmp_path / "back") == ["tiny-seed0/manifest.json", "tiny-seed0/weights.safetensors"]


def test_a_split_missing_a_folder_the_campaign_scores_on_is_refused_before_anything_trains(tmp_path):
    campaign = load_campaign()
    plan = tmp_path / "plan.toml"
    plan.write_text(f"data = '{tmp_path}'\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n")
    with pytest.raises(campaign.PlanError, match=re.escape(f"run 1's data {tmp_path} has no val/ folder")):
        campaign.read_plan(plan)
    (tmp_path / "val").mkdir()
    with pytest.raises(campaign.PlanError, match="has no test/ folder; carry it, or set score_test = false"):
        campaign.read_plan(plan)
    plan.write_text("score_test = false\n" + plan.read_text())
    assert campaign.read_plan(plan).score_test is False
    (tmp_path / "test").mkdir()
    plan.write_text(plan.read_text().replace("score_test = false\n", ""))
    assert campaign.read_plan(plan).score_test is True


BLOCK_DIFFUSERS = """
import sys


class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "diffusers":
            raise ModuleNotFoundError(f"no module named {name!r} on this image", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def test_a_method_whose_packages_did_not_travel_is_refused_before_anything_trains(tmp_path, monkeypatch):
    campaign = load_campaign()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_DIFFUSERS)  # as a kit of `wheels.sh --ppii` is, without diffusers
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    plan = tmp_path / "plan.toml"
    ppii = campaign.Run(bundle="a", method="ppii", data=str(tmp_path))
    campaign.check_methods_load(plan, campaign.Plan(runs=(ppii,)))  # P-PII needs no diffusers
    cddpm = campaign.Run(bundle="b", method="cddpm", data=str(tmp_path))
    with pytest.raises(campaign.PlanError) as raised:
        campaign.check_methods_load(plan, campaign.Plan(runs=(ppii, cddpm)))
    assert str(raised.value) == (
        f"{plan}: method cddpm does not load on this machine (ModuleNotFoundError: no module named 'diffusers' on "
        "this image); bring its packages (bench/device/wheels.sh without --ppii brings every method's)"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[[run]]\nbundle = 'b'\n", "run 1 has no method"),
        ("pick_by = 'loss'\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "pick_by 'loss' is not one of pixel_ap"),
        ("seconds = 60\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "the plan has unknown key(s) seconds; known:"),
        ("[[run]]\nbundle = 'b'\nmethod = 'ppii'\nseconds = '60'\n", "run 1's seconds is '60', not a number"),
        ("[[run]]\nbundle = 'b'\nmethod = 'ppii'\nseconds = 0\n", "run 1's seconds must be more than 0"),
        ("[[run]]\nbundle = 'a b'\nmethod = 'ppii'\n", "run 1's bundle 'a b' must be letters, digits"),
        ("[[run]]\nbundle = 'b'\nmethod = 'ppii'\nsteps = '9'\n", "run 1's steps is '9', not an integer"),
        ("score_test = 'no'\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "score_test is 'no', not true or false"),
        ("anomalous_only = 1\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "anomalous_only is 1, not true or false"),
        ("[[run]]\nbundle = 'b'\nmethod = 'ppii'\nconfig = 'nowhere.toml'\n", "run 1's config nowhere.toml does not"),
        ("[[run]]\nbundle = 'b'\nmethod = 'ppii'\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "two runs of bundle"),
        ("data = \n", "cannot read it as TOML"),
        ("data = 'x'\n", "no [[run]] tables"),
        (
            "[[run]]\nbundle = 'b'\nmethod = 'ppii'\nextra = ['--steps', 2]\n",
            "run 1's extra is ['--steps', 2], not a list",
        ),
        ("# no data\n[[run]]\nbundle = 'b'\nmethod = 'ppii'\n", "run 1 has no data; set it at the top"),
        (
            "[[run]]\nbundle = 'b'\nmethod = 'ppii'\nextra = ['--config', 'nowhere.toml']\n",
            "run 1's extra's --config nowhere.toml does not exist",
        ),
    ],
)
def test_a_plan_it_cannot_run_is_one_sentence_naming_the_file(tmp_path, text, error):
    campaign = load_campaign()
    plan = tmp_path / "plan.toml"
    plan.write_text(text if text.startswith(("data", "# no data")) else f"data = '{tmp_path}'\n{text}")
    with pytest.raises(campaign.PlanError) as raised:
        campaign.read_plan(plan)
    assert str(raised.value).startswith(f"{plan}: ") and error in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("plan", sorted((ROOT / "bench" / "device" / "plans").glob("*.toml")), ids=lambda p: p.name)
def test_each_ready_plan_reads_once_its_split_is_prepared(plan, data, tmp_path):
    campaign = load_campaign()
    data_root, _ = data
    text = plan.read_text()
    assert text.count("\ndata = ") == 1  # one split for the whole plan, swapped here for a prepared one
    here = tmp_path / plan.name
    here.write_text(
        "\n".join(f'data = "{data_root}"' if line.startswith("data = ") else line for line in text.splitlines())
    )
    # Its configs (and those its runs layer on them) exist and every key is one the campaign knows...
    for run in campaign.read_plan(here).runs:
        # ...and each run's config builds as `anomascope train` builds it, so a key no config has fails here.
        config = build_config(default_config(run.method), [*filter(None, [run.config]), *run.layered_configs])
        assert config.method == run.method
