"""Data-parallel training with accelerate: `anomascope train --processes 2` on the CPU (gloo, under torch's
launcher) against the same training in one process with the same global batch and seed.

The two processes draw the same global batches as one process and each computes the loss on its half, but
they draw their own noise for it (a synthetic anomaly, a dropout mask), so the runs are two samples of the
same training, not one computation split in two. Measured on this config (P-PII, 40 steps, batch 8, on
the 2-core CPU): the 10-step running means of the losses differ by at most 0.004 (0.6 % of the loss), and
the final weights by 2.2 % (relative L2), against 0.037 and 10 % between one-process runs whose seeds
differ. The tolerances below are three times the measured values, and each is also held below the
seed-to-seed difference. A two-process run stopped at its checkpoint and resumed ends bit for bit where an
uninterrupted one does (the checkpoint holds every process's random state).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from anomascope.engine.config import build_config
from anomascope.engine.data import DataError
from anomascope.engine.distributed import Processes
from anomascope.engine.fit import fit_method
from anomascope.engine.methods import default_config
from tests.synthetic import make_stripe_dataset

CONFIG = """
[net]
features = [8, 8, 16, 32, 32, 8]
[preprocess]
image_size = 32
[train]
steps = 40
batch_size = 8
checkpoint_every = 20
[ppii]
mc_passes = 2
[calibration]
max_validation_images = 4
"""
LOSS_TOLERANCE = 0.012  # largest difference of the 10-step running means of the loss
WEIGHT_TOLERANCE = 0.065  # relative L2 difference of the final weights


def train_launched(data: Path, config: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    command = ["-m", "anomascope.app.cli", "train", "--method", "ppii", "--data", str(data), "--out", str(out)]
    command += ["--config", str(config), "--processes", "2", "--device", "cpu", "--keep-checkpoint", *extra]
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(bundle: Path) -> torch.Tensor:
    state = load_file(str(bundle / "weights.safetensors"))
    return torch.cat([state[key].flatten().float() for key in sorted(state)])


def losses(bundle: Path) -> np.ndarray:
    return np.array(torch.load(bundle / "checkpoint" / "checkpoint.pt", weights_only=False)["losses"])


def running_mean(values: np.ndarray, window: int = 10) -> np.ndarray:
    return np.convolve(values, np.ones(window) / window, mode="valid")


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("distributed")
    data = make_stripe_dataset(tmp / "stripes")
    config_file = tmp / "tiny.toml"
    config_file.write_text(CONFIG)
    config = build_config(default_config("ppii"), config_file)
    for seed in (0, 1):
        cpu = torch.device("cpu")
        seeded = build_config(config, None, {"train": {"seed": seed}})
        fit_method(seeded, data, tmp / f"one-seed{seed}", cpu, False, True)
    two = train_launched(data, config_file, tmp / "two")
    train_launched(data, config_file, tmp / "resumed", "--steps", "20", "--quiet")
    train_launched(data, config_file, tmp / "resumed", "--overwrite", "--quiet")  # from the step-20 checkpoint
    return {"tmp": tmp, "two": two}


def test_two_processes_train_like_one_with_the_same_global_batch(runs):
    tmp = runs["tmp"]
    one, two, other_seed = tmp / "one-seed0", tmp / "two", tmp / "one-seed1"
    apart = np.abs(running_mean(losses(one)) - running_mean(losses(two))).max()
    seeds_apart = np.abs(running_mean(losses(one)) - running_mean(losses(other_seed))).max()
    assert apart < min(LOSS_TOLERANCE, seeds_apart), (apart, seeds_apart)
    drift = relative(weights(one), weights(two))
    seeds_drift = relative(weights(one), weights(other_seed))
    assert drift < min(WEIGHT_TOLERANCE, seeds_drift / 2), (drift, seeds_drift)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["config"]["train"]["batch_size"] == 8 and manifest["training"]["steps"] == 40


def test_the_main_process_alone_reports_and_writes(runs):
    launched = runs["two"]
    reports = [line for line in launched.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and json.loads(reports[0])["bundle"].endswith("two")  # calibrated and written once
    assert launched.stderr.count(" 0/40 [") == 1  # one progress bar starts


def test_a_resumed_two_process_run_ends_where_an_uninterrupted_one_does(runs):
    tmp = runs["tmp"]
    assert torch.allclose(weights(tmp / "resumed"), weights(tmp / "two"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(losses(tmp / "resumed"), losses(tmp / "two"), rtol=0, atol=1e-6)


def test_a_global_batch_must_split_evenly():
    assert Processes(count=2, rank=1).share(8) == slice(4, 8)
    with pytest.raises(DataError, match="batch size 6 does not split evenly among 4 processes"):
        Processes(count=4).share(6)
