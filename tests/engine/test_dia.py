"""DIA: pair layout and loss, shift labels, dissolving, scoring balance terms, a short training run,
bundles and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomascope.engine.bundle import load_bundle
from anomascope.engine.config import build_config
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor
from anomascope.engine.methods.dia.config import DiaConfig
from anomascope.engine.methods.dia.model import (
    Dissolver,
    amplified_nt_xent,
    build_feature_bank,
    contrastive_scores,
    pair_layout,
    shift_images,
    shift_labels,
    shifted_outputs,
)
from anomascope.engine.schedules import VPSchedule
from tests.cli import anomascope, infer_one, train_tiny
from tests.synthetic import make_oriented_dataset

CPU = torch.device("cpu")
DENOISER = {
    "net": {"block_out_channels": [16, 32, 32], "attention_levels": [False, False, False], "layers_per_block": 1},
    "preprocess": {"image_size": 32},
    "train": {"batch_size": 16, "learning_rate": 1e-3, "steps": 60},
    "calibration": {"max_validation_images": 4},
}
TINY = {
    "net": {"widen_factor": 0.25},
    "preprocess": {"image_size": 32},
    "train": {"steps": 150, "batch_size": 8, "checkpoint_every": 1000},
    "calibration": {"max_validation_images": 8},
}


@pytest.fixture(scope="module")
def oriented(tmp_path_factory) -> Path:
    return make_oriented_dataset(tmp_path_factory.mktemp("oriented"))


@pytest.fixture(scope="module")
def denoiser(oriented, tmp_path_factory):
    return fit_method(
        build_config(default_config("sano"), None, DENOISER),
        oriented,
        tmp_path_factory.mktemp("den") / "b",
        CPU,
        show_progress=False,
    )


@pytest.fixture(scope="module")
def trained(oriented, denoiser, tmp_path_factory):
    return fit_method(
        build_config(default_config("dia"), None, TINY),
        oriented,
        tmp_path_factory.mktemp("dia") / "b",
        CPU,
        show_progress=False,
        options={"denoiser": denoiser},
    )


def test_defaults_are_the_papers():
    config = default_config("dia")
    assert (config.dia.num_shifts, config.dia.shift) == (4, "rotation")
    assert (config.dia.dissolve_t_min, config.dia.dissolve_t_max, config.dia.dissolve_size) == (30, 130, 32)
    assert config.dia.gamma == 1.0 and config.train.batch_size == 32


def test_pair_layout_matches_the_hand_built_matrix():
    # B = 2 images, K = 2 shifts (Fig. 3): views O(k0 b0, k0 b1, k1 b0, k1 b1), O'(...), A(...).
    positive, negative = pair_layout(2, 2)
    expected_positive = torch.zeros(12, 12, dtype=torch.bool)
    for view in range(4):
        expected_positive[view, 4 + view] = expected_positive[4 + view, view] = True
    expected_negative = torch.zeros(12, 12, dtype=torch.bool)
    expected_negative[:8, :] = True  # O and O' anchors contrast with every other view, dissolved ones too
    expected_negative[expected_positive] = False
    expected_negative[torch.arange(12), torch.arange(12)] = False
    assert torch.equal(positive, expected_positive)
    assert torch.equal(negative, expected_negative)
    assert not (positive & negative).any()


def test_loss_equals_the_written_out_sum():
    torch.manual_seed(0)
    batch, shifts, tau = 2, 2, 0.5
    z = torch.randn(3 * batch * shifts, 5)
    unit = F.normalize(z, dim=1)
    positive, _ = pair_layout(batch, shifts)
    terms = []
    for i, j in positive.nonzero().tolist():
        numerator = torch.exp(unit[i] @ unit[j] / tau)
        denominator = sum(torch.exp(unit[i] @ unit[k] / tau) for k in range(len(z)) if k != i)
        terms.append(-torch.log(numerator / denominator))
    torch.testing.assert_close(amplified_nt_xent(z, batch, shifts, tau), torch.stack(terms).mean())


def test_shift_labels_follow_the_view_order():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert shift_labels(2, 4, CPU).tolist() == [0, 0, 1, 1, 2, 2, 3, 3] * 3
    rotations = [shift_images(x, k, "rotation") for k in range(4)]
    assert torch.equal(rotations[0], x) and torch.equal(rotations[1], torch.rot90(x, 1, dims=(-2, -1)))
    perms = [shift_images(x, k, "perm") for k in range(4)]
    assert torch.equal(perms[0], x)
    assert len({tuple(p.flatten().tolist()) for p in perms}) == 4
    assert torch.equal(perms[3][..., :2, :2], x[..., 2:, 2:])  # the last swaps quadrants diagonally


def test_dissolving_runs_at_32_px_and_returns_the_input_size(denoiser):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, t):
            seen.append((tuple(x.shape), t.tolist()))
            return type("Out", (), {"sample": torch.zeros_like(x)})()

    schedule = VPSchedule(default_config("sano").schedule)
    out = Dissolver(Recorder(), schedule, 32)(torch.zeros(2, 3, 96, 80), torch.tensor([30, 130]))
    assert out.shape == (2, 3, 96, 80) and seen == [((2, 3, 32, 32), [30, 130])]


def test_balance_terms_normalise_each_shift_on_the_training_set():
    torch.manual_seed(0)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(16, 6)

        def forward(self, x):
            out = self.linear(x.flatten(1)[:, :16])
            return out[:, :2], out[:, 2:]

    config = DiaConfig()
    images = torch.rand(10, 1, 4, 4)
    model = Toy()
    bank = build_feature_bank(model, images, config)
    z, logits = shifted_outputs(model, images, config)
    s_con = contrastive_scores(z, bank.features, exclude_self=True)
    torch.testing.assert_close((bank.lambda_con[:, None] * s_con).mean(dim=1), torch.ones(4))
    torch.testing.assert_close((bank.lambda_cls[:, None] * logits).mean(dim=1), torch.ones(4))


def test_short_training_detects_anomalous_images(trained, oriented, denoiser, tmp_path):
    metrics = trained.manifest["validation_metrics"]["dia"]
    assert metrics["image_auroc"] > 0.8
    untrained = fit_method(
        build_config(default_config("dia"), None, {**TINY, "train": {**TINY["train"], "steps": 0}}),
        oriented,
        tmp_path / "untrained",
        CPU,
        show_progress=False,
        options={"denoiser": denoiser},
    )
    assert metrics["image_auroc"] > untrained.manifest["validation_metrics"]["dia"]["image_auroc"] + 0.2
    assert trained.manifest["calibration"]["dia"]["level"] == "image"


def test_bundle_carries_the_bank_and_dissolver_and_scores_images_only(trained, oriented):
    manifest = load_bundle(trained.path).manifest
    assert manifest["dissolver"]["bundle_id"].startswith("sano-")
    assert load_bundle(trained.path).state_dict("bank")["features"].shape[:2] == (4, 48)
    case = load_case(next((oriented / "test" / "blob").iterdir()))
    first = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    second = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    assert first.heatmap is None and first.restoration.shape == (1, 3, 32, 32)
    assert first.image_score == second.image_score


def test_cli_needs_a_denoiser_and_infers_image_scores(oriented, denoiser, tmp_path):
    missing = anomascope("train", "--method", "dia", "--data", oriented, "--out", tmp_path / "x")
    assert missing.returncode == 2 and "--denoiser BUNDLE is required" in missing.stderr
    bundle = tmp_path / "bundle"
    manifest = train_tiny(
        "dia",
        oriented,
        bundle,
        "[net]\nwiden_factor = 0.25\n[train]\nbatch_size = 4\n[calibration]\nmax_validation_images = 2\n",
        "--denoiser",
        denoiser.path,
    )
    assert manifest["dissolver"]["bundle_id"] == denoiser.id
    image = next((oriented / "test" / "blob").iterdir())
    out = tmp_path / "out"
    summary = infer_one(bundle, image, out)
    assert summary["method"] == "dia" and summary["heatmap_shape"] is None
    assert (
        summary["restoration"] == f"{image.stem}_restoration.png" and not (out / f"{image.stem}_heatmap.npy").exists()
    )
    assert np.isfinite(summary["image_score"])
