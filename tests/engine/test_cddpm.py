"""Image-conditioned diffusion restoration: conditioning, folds, a tiny training run, ensembles, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anomascope.engine.bundle import load_bundle, save_bundle
from anomascope.engine.config import build_config, to_dict
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor
from anomascope.engine.methods.cddpm.foreign import foreign_images
from anomascope.engine.methods.cddpm.model import corrupt, new_conditional_unet, task_folds
from anomascope.engine.methods.cddpm.tasks import TASK_NAMES, make_tasks
from anomascope.engine.preprocess import InputMismatchError, standardize_foreground
from tests.cli import anomascope, infer_one, train_tiny
from tests.conftest import shipped_dicom
from tests.synthetic import make_blob_dataset, plant_blob, smooth_image

CPU = torch.device("cpu")
TINY = {
    "net": {"block_out_channels": [16, 32, 32], "attention_levels": [False, False, False], "layers_per_block": 1},
    "preprocess": {"image_size": 32},
    "train": {"steps": 150, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 1000},
    "cddpm": {"folds": 1, "sampler": "ddim", "sampling_steps": 8, "prediction_type": "sample", "monitor_images": 4},
    "calibration": {"max_validation_images": 4},
}


def tiny_config(**overrides):
    config = build_config(default_config("cddpm"), None, TINY)
    return build_config(config, None, overrides)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    return make_blob_dataset(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
def trained(blobs, tmp_path_factory):
    return fit_method(tiny_config(), blobs, tmp_path_factory.mktemp("cddpm") / "bundle", CPU, show_progress=False)


def test_defaults_are_the_papers():
    config = default_config("cddpm")
    assert config.cddpm.folds == 10 and config.cddpm.clean_fraction == 0.2
    assert config.cddpm.prediction_type == "epsilon" and config.cddpm.sampler == "ddpm"
    assert config.preprocess.image_size == 128 and config.train.batch_size == 32


def test_folds_train_on_three_tasks_and_monitor_the_other_two():
    folds = task_folds(10)
    assert len({f.train_tasks for f in folds}) == 10
    for fold in folds:
        assert len(fold.train_tasks) == 3 and len(fold.monitor_tasks) == 2
        assert set(fold.train_tasks) | set(fold.monitor_tasks) == set(TASK_NAMES)
    with pytest.raises(ValueError, match="between 1 and 10"):
        task_folds(11)


def test_a_run_of_one_fold_can_start_at_a_chosen_split():
    (fold,) = task_folds(1, first=2)
    assert fold.index == 2 and fold.component == "fold2"
    assert fold.train_tasks == ("intra_dataset_blend", "foreign_blend", "smooth_intensity_change")
    assert [f.train_tasks for f in task_folds(3, first=7)] == [f.train_tasks for f in task_folds(10)[7:]]
    with pytest.raises(ValueError, match="between 1 and 3 from split 7"):
        task_folds(4, first=7)
    with pytest.raises(ValueError, match="first_fold must be between 0 and 9"):
        task_folds(1, first=10)


def test_a_bundle_of_a_later_split_reads_its_own_network(trained, tmp_path):
    config = tiny_config(cddpm={"first_fold": 2})
    network = new_conditional_unet(config)
    network.load_state_dict(trained.state_dict("fold0"))
    bundle = save_bundle(tmp_path / "fold2", dict(trained.manifest, config=to_dict(config)), {"fold2": network})
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    expected = make_predictor(trained, CPU).predict(x)
    np.testing.assert_array_equal(make_predictor(bundle, CPU).predict(x).heatmap, expected.heatmap)


def test_a_standardised_bundle_restores_the_z_scored_image(trained, blobs, tmp_path):
    with pytest.raises(ValueError, match="unknown cddpm.intensity 'gamma'"):
        fit_method(tiny_config(cddpm={"intensity": "gamma"}), blobs, tmp_path / "refused", CPU, show_progress=False)
    assert not (tmp_path / "refused" / "manifest.json").exists()
    config = tiny_config(cddpm={"intensity": "standardise"})
    network = new_conditional_unet(config)
    network.load_state_dict(trained.state_dict("fold0"))
    bundle = save_bundle(tmp_path / "z", dict(trained.manifest, config=to_dict(config)), {"fold0": network})
    unit = 0.3 + 0.4 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    standardised = make_predictor(bundle, CPU).predict(unit * 2 - 1)
    z = standardize_foreground(unit, config.preprocess.foreground_above)
    as_windowed = make_predictor(trained, CPU).predict(z * 2 - 1)  # the same weights fed the z-scores
    np.testing.assert_allclose(standardised.heatmap, as_windowed.heatmap, atol=1e-5)
    np.testing.assert_allclose(standardised.restoration, as_windowed.restoration, atol=1e-5)
    brighter = make_predictor(bundle, CPU).predict(unit * 1.3 * 2 - 1)  # a scan with more gain: the same map
    np.testing.assert_allclose(brighter.heatmap, standardised.heatmap, atol=1e-4)


def test_conditioning_doubles_the_input_channels():
    config = tiny_config()
    model = new_conditional_unet(config)
    assert model.config.in_channels == 6 and model.config.out_channels == 3
    x = torch.zeros(2, 6, 32, 32)
    assert model(x, torch.tensor([0, 999])).sample.shape == (2, 3, 32, 32)


def test_a_fifth_of_conditions_stay_clean():
    images = torch.rand(200, 3, 16, 16) * 0.5 + 0.25
    tasks = make_tasks(foreign_images(16))
    condition = corrupt(
        images, tasks, task_folds(1)[0].train_tasks, 0.2, torch.Generator().manual_seed(0), tiny_config().tasks
    )
    clean = (condition == images).flatten(1).all(dim=1).float().mean().item()
    assert 0.12 < clean < 0.28


def test_which_samples_get_which_task_comes_from_the_parameter_generator(monkeypatch):
    # On a GPU these draws come from a CPU companion generator (no wait for the device per batch).
    for module in ("anomascope.engine.methods.cddpm.model", "anomascope.engine.methods.cddpm.tasks"):
        monkeypatch.setattr(f"{module}.parameter_generator", lambda _: torch.Generator().manual_seed(5))
    images = torch.rand(12, 3, 16, 16)
    tasks = make_tasks(foreign_images(16))

    def condition(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return corrupt(images, tasks, task_folds(1)[0].train_tasks, 0.2, generator, tiny_config().tasks)

    assert torch.equal(condition(0), condition(1))


def test_restoration_of_a_planted_anomaly_is_closer_to_the_clean_image(trained):
    rng = np.random.default_rng(123)
    clean = smooth_image(rng, 32)
    anomalous, mask = plant_blob(rng, clean)
    predictor = make_predictor(trained, CPU)
    x = torch.from_numpy(anomalous.transpose(2, 0, 1)).float()[None] * 2 - 1
    result = predictor.predict(x)
    restored = result.restoration[0].transpose(1, 2, 0)
    before = ((anomalous - clean) ** 2)[mask].mean()
    after = ((restored - clean) ** 2)[mask].mean()
    assert after < 0.5 * before
    assert result.heatmap[0][mask].mean() > result.heatmap[0][~mask].mean()


def test_training_localises_planted_blobs(trained):
    metrics = trained.manifest["validation_metrics"]["cddpm"]
    assert metrics["pixel_auroc"] > 0.9
    monitor = trained.manifest["training"]["monitor_pixel_ap"]
    assert set(monitor) == set(task_folds(1)[0].monitor_tasks)


def test_output_is_deterministic_for_a_seed(trained, blobs):
    case = load_case(next((blobs / "test" / "blob").iterdir()))
    first = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    second = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    np.testing.assert_array_equal(first.restoration, second.restoration)
    np.testing.assert_array_equal(first.heatmap, second.heatmap)
    other = make_predictor(load_bundle(trained.path), CPU)
    other.config.seed = 1
    assert not np.array_equal(score_case(other, case).restoration, first.restoration)


def test_ensemble_averages_the_fold_maps(trained, tmp_path):
    # A two-fold bundle made of the trained fold and a second, different network.
    config = tiny_config(cddpm={"folds": 2})
    second = new_conditional_unet(config)
    fold0 = new_conditional_unet(config)
    fold0.load_state_dict(trained.state_dict("fold0"))
    manifest = dict(trained.manifest, config=to_dict(config))
    bundle = save_bundle(tmp_path / "two", manifest, {"fold0": fold0, "fold1": second})
    predictor = make_predictor(bundle, CPU)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    ensemble = predictor.predict(x)
    singles = []
    for model in predictor.models:
        predictor_one = make_predictor(bundle, CPU)
        predictor_one.models = [model]
        singles.append(predictor_one.predict(x))
    np.testing.assert_allclose(ensemble.heatmap, (singles[0].heatmap + singles[1].heatmap) / 2, atol=1e-6)
    np.testing.assert_allclose(ensemble.restoration, (singles[0].restoration + singles[1].restoration) / 2, atol=1e-6)
    assert ensemble.uncertainty is not None and singles[0].uncertainty is None


def test_wrong_channels_are_a_clear_error(trained):
    with pytest.raises(InputMismatchError, match="MR_small.dcm: has 1 channel"):
        score_case(make_predictor(trained, CPU), load_case(shipped_dicom("MR_small.dcm")))


def test_cli_trains_folds_and_records_sampling_in_each_run(blobs, tmp_path):
    bundle = tmp_path / "bundle"
    manifest = train_tiny(
        "cddpm",
        blobs,
        bundle,
        "[net]\nblock_out_channels = [16, 32, 32]\n"
        "attention_levels = [false, false, false]\nlayers_per_block = 1\n"
        '[cddpm]\nsampler = "ddim"\nsampling_steps = 3\nmonitor_images = 2\n'
        "[calibration]\nmax_validation_images = 2\n",
        "--folds",
        2,
    )
    assert [c["component"] for c in manifest["training"]["components"]] == ["fold0", "fold1"]
    image = next((blobs / "test" / "blob").iterdir())
    out = tmp_path / "out"
    summary = infer_one(bundle, image, out)
    assert summary["parameters"]["sampler"] == "ddim" and summary["parameters"]["sampling_steps"] == 3
    assert summary["parameters"]["seed"] == 0 and summary["restoration"] == f"{image.stem}_restoration.png"
    wrong = anomascope("train", "--method", "ppii", "--folds", 2, "--data", blobs, "--out", tmp_path / "x")
    assert wrong.returncode == 2 and "--folds applies to --method cddpm only" in wrong.stderr


def test_full_ddpm_sampler_runs_seeded(trained):
    predictor = make_predictor(load_bundle(trained.path), CPU)
    predictor.method_config.cddpm.sampler = "ddpm"  # ancestral sampling, the paper's; 25 of its steps here
    predictor.method_config.cddpm.sampling_steps = 25
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    first, second = predictor.predict(x), predictor.predict(x)
    np.testing.assert_array_equal(first.restoration, second.restoration)
    assert first.heatmap.shape == (1, 32, 32) and np.isfinite(first.heatmap).all()
