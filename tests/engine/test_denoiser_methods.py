"""SANO and SPR on a tiny denoiser: training, bundles, resume, and inputs that do not fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anomascope.engine.bundle import BundleError, load_bundle
from anomascope.engine.config import build_config
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import NonFiniteResultError, score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor
from anomascope.engine.methods.denoiser.config import DenoiserMethodConfig
from anomascope.engine.methods.denoiser.model import epsilon_loss, new_denoiser
from anomascope.engine.preprocess import InputMismatchError
from anomascope.engine.schedules import VPSchedule, spr_noise_scale
from anomascope.engine.training import train
from tests.cli import anomascope, infer_one, train_tiny
from tests.conftest import shipped_dicom
from tests.synthetic import make_blob_dataset

CPU = torch.device("cpu")
TINY = {
    "net": {"block_out_channels": [16, 32, 32], "attention_levels": [False, False, True], "layers_per_block": 1},
    "preprocess": {"image_size": 32},
    "train": {"batch_size": 16, "learning_rate": 1e-3, "steps": 40, "checkpoint_every": 20, "seed": 0},
    "calibration": {"max_validation_images": 8},
}


def tiny_config(method: str = "sano", **train_overrides) -> DenoiserMethodConfig:
    return build_config(default_config(method), None, {**TINY, "train": {**TINY["train"], **train_overrides}})


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    return make_blob_dataset(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def trained(blobs, tmp_path_factory):
    return fit_method(tiny_config(), blobs, tmp_path_factory.mktemp("bundle") / "sano", CPU, show_progress=False)


@pytest.fixture(scope="module")
def untrained(blobs, tmp_path_factory):
    return fit_method(
        tiny_config(steps=0), blobs, tmp_path_factory.mktemp("bundle") / "untrained", CPU, show_progress=False
    )


@pytest.mark.parametrize("readout", ["sano", "spr"])
def test_training_localises_planted_blobs(trained, untrained, readout):
    metrics = trained.manifest["validation_metrics"][readout]
    assert metrics["pixel_auroc"] > 0.95
    assert metrics["pixel_ap"] > 0.8
    # Learning did the work: the same network before training is far less precise.
    assert metrics["pixel_ap"] > untrained.manifest["validation_metrics"][readout]["pixel_ap"] + 0.2


def test_manifest_records_config_data_and_calibration(trained):
    manifest = load_bundle(trained.path).manifest
    assert manifest["config"]["schedule"] == {"beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}
    assert manifest["config"]["sano"]["smoothing_sigma_at_256"] == 4.0
    assert manifest["data"]["n_train_files"] == 48 and len(manifest["data"]["sha256"]) == 64
    assert manifest["training"]["steps"] == 40
    for readout in ("sano", "spr"):
        thresholds = manifest["calibration"][readout]["thresholds"]
        assert set(thresholds) == {"k_sigma", "target_fpr", "max_f1"}
        normal = manifest["calibration"][readout]["normal"]
        assert normal["pixel_percentiles"]["50"] < thresholds["target_fpr"]["value"]
    assert not (trained.path / "checkpoint").exists()


@pytest.mark.parametrize("readout", ["sano", "spr"])
def test_bundle_round_trip_gives_identical_predictions(trained, blobs, readout):
    case = load_case(next((blobs / "test" / "blob").iterdir()))
    first = score_case(make_predictor(load_bundle(trained.path), CPU, readout), case)
    second = score_case(make_predictor(load_bundle(trained.path), CPU, readout), case)
    np.testing.assert_array_equal(first.heatmap, second.heatmap)
    assert first.heatmap.shape == (1, 32, 32)
    if readout == "spr":
        assert first.restoration.shape == (1, 3, 32, 32)
        assert 0.0 <= first.restoration.min() and first.restoration.max() <= 1.0


def test_corrupted_weights_are_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="do not match the manifest"):
        load_bundle(copy)


def test_resume_continues_the_step_count(blobs, tmp_path):
    from anomascope.engine.data import list_images, load_training_images

    config = tiny_config(steps=6, checkpoint_every=3)
    data = load_training_images(list_images(blobs / "train" / "good"), config.preprocess)
    loss = epsilon_loss(VPSchedule(config.schedule))

    def run(steps: int, workdir: Path):
        torch.manual_seed(0)
        model = new_denoiser(config)
        settings = build_config(config, None, {"train": {"steps": steps}}).train
        return train(model, loss, data, settings, workdir, CPU, False)

    straight = run(6, tmp_path / "straight")
    run(3, tmp_path / "interrupted")  # stops after its checkpoint at step 3
    resumed = run(6, tmp_path / "interrupted")
    assert resumed.steps == 6 and len(resumed.losses) == 6
    assert resumed.losses[:3] == straight.losses[:3]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_wrong_channels_and_sizes_are_clear_errors(trained):
    predictor = make_predictor(trained, CPU, "sano")
    with pytest.raises(InputMismatchError, match="MR_small.dcm: has 1 channel.*3-channel"):
        score_case(predictor, load_case(shipped_dicom("MR_small.dcm")))
    tiny = load_case(shipped_dicom("SC_rgb_small_odd_jpeg.dcm"))  # 3x3 px
    with pytest.raises(InputMismatchError, match="smaller than the 16 px minimum"):
        score_case(predictor, tiny)


def test_non_finite_values_never_reach_a_map(trained, blobs, monkeypatch):
    predictor = make_predictor(trained, CPU, "spr")
    case = load_case(next((blobs / "test" / "blob").iterdir()))
    case.pixels[0, 0, 3, 4] = np.nan  # an image that reached the engine without the readers' check
    with pytest.raises(InputMismatchError, match="NaN or infinite intensities"):
        score_case(predictor, case)
    case.pixels[0, 0, 3, 4] = 0.0
    predict = predictor.predict

    def broken(batch):
        result = predict(batch)
        result.heatmap[:, 5, 5] = float("inf")
        return result

    monkeypatch.setattr(predictor, "predict", broken)
    with pytest.raises(NonFiniteResultError, match=r"spr produced [\d,]+ NaN or infinite values in its heatmap"):
        score_case(predictor, case)


def test_volume_is_scored_slice_by_slice_on_the_original_grid(trained):
    case = load_case(shipped_dicom("examples_ybr_color.dcm"))  # 30 RGB frames, 240x320
    result = score_case(make_predictor(trained, CPU, "spr"), case)
    assert result.heatmap.shape == (30, 240, 320)
    assert result.restoration.shape == (30, 3, 240, 320)
    assert result.image_score == pytest.approx(result.slice_scores.max())


def test_cli_train_and_infer(blobs, tmp_path):
    bundle = tmp_path / "bundle"
    manifest = train_tiny(
        "spr",
        blobs,
        bundle,
        "[net]\nblock_out_channels = [16, 32, 32]\n"
        "attention_levels = [false, false, true]\nlayers_per_block = 1\n"
        "[train]\nbatch_size = 8\n[calibration]\nmax_validation_images = 2\n",
    )
    assert manifest["method"] == "spr" and manifest["config"]["train"]["optimizer"] == "adamw"
    image = next((blobs / "test" / "blob").iterdir())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    twin = tmp_path / "elsewhere" / image.name  # another image with the same name, in another folder
    twin.parent.mkdir()
    twin.write_bytes(next((blobs / "test" / "good").iterdir()).read_bytes())
    inferred = anomascope(
        "infer", "--bundle", bundle, "--out", out, bad, image, shipped_dicom("examples_ybr_color.dcm"), twin
    )
    assert inferred.returncode == 2  # one unreadable file among four; the three after it are still scored
    assert "bad.png: not a readable PNG" in inferred.stderr and "Traceback" not in inferred.stderr
    assert "1 of 4 inputs failed" in inferred.stderr
    stems = [json.loads(line)["stem"] for line in inferred.stdout.splitlines()]
    assert len(stems) == 3 and stems[0] == image.stem and stems[2].startswith(f"{image.stem}-")
    summary = json.loads((out / f"{image.stem}.json").read_text())
    twin_summary = json.loads((out / f"{stems[2]}.json").read_text())
    assert summary["source"] == str(image.resolve()) and twin_summary["source"] == str(twin.resolve())
    assert not np.array_equal(np.load(out / f"{image.stem}_heatmap.npy"), np.load(out / f"{stems[2]}_heatmap.npy"))
    assert summary["method"] == "spr" and summary["bundle_id"] == manifest["id"]
    assert summary["input_shape"] == [1, 3, 32, 32] and summary["heatmap_shape"] == [1, 32, 32]
    assert np.load(out / f"{image.stem}_heatmap.npy").shape == (1, 32, 32)
    for suffix in ("_overlay.png", "_restoration.png"):
        assert (out / f"{image.stem}{suffix}").exists()
    assert np.load(out / "examples_ybr_color_heatmap.npy").shape == (30, 240, 320)
    # The same bundle read out as SANO (shared denoiser): no restoration.
    sano = infer_one(bundle, image, tmp_path / "sano", "--method", "sano", "--precision", "bf16")
    assert sano["restoration"] is None and sano["parameters"]["precision"] == "bf16"
    assert summary["parameters"]["precision"] == "fp32"  # auto on the CPU


def test_schedule_and_spr_noise_scale_follow_the_papers():
    schedule = VPSchedule(default_config("sano").schedule)
    betas = schedule.scheduler.betas
    assert float(betas[0]) == pytest.approx(1e-4) and float(betas[-1]) == pytest.approx(0.02)
    assert len(betas) == 1000
    # sigma_k = sqrt((25^0.002 - 1) / (2 ln 25)) ~ 0.0317 on [0, 1] images
    assert spr_noise_scale(25.0, 0.001) == pytest.approx(math.sqrt((25**0.002 - 1) / (2 * math.log(25))))
    assert spr_noise_scale(25.0, 0.001) == pytest.approx(0.0317, abs=1e-4)
    t = schedule.timestep_for_noise_to_signal(2 * 0.0317)
    assert schedule.noise_to_signal(t) == pytest.approx(0.0634, rel=0.15)


def test_spr_defaults_are_the_papers():
    config = default_config("spr")
    assert (config.spr.sigma, config.spr.k, config.spr.num_perturbations, config.spr.box_filter_at_256) == (
        25.0,
        0.001,
        3,
        31,
    )
    assert (config.train.optimizer, config.train.learning_rate, config.train.weight_decay) == ("adamw", 1e-4, 1e-3)
    assert (config.train.batch_size, config.train.epochs, config.train.ema_decay) == (16, 3000, 0.9999)
    assert config.preprocess.image_size == 192
    sano = default_config("sano")
    assert (sano.train.optimizer, sano.train.learning_rate, sano.train.batch_size, sano.train.steps) == (
        "adam",
        2e-4,
        64,
        400_000,
    )
    assert sano.preprocess.image_size == 256


def test_eval_compares_both_readouts_of_a_bundle(trained, blobs, tmp_path):
    from anomascope.app.cli import main

    assert (
        main(
            [
                "eval",
                "--bundle",
                str(trained.path),
                "--baseline",
                "median-distance",
                "--data",
                str(blobs),
                "--out",
                str(tmp_path),
                "--bootstrap",
                "20",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "metrics.json").read_text())["results"]
    assert set(results) == {"sano:sano", "sano:spr", "median-distance"}
    assert results["sano:spr"]["pixel_auroc"] > 0.9
    assert results["sano:sano"]["threshold_method"].startswith("max_f1")
