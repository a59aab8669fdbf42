"""P-PII: paper defaults, histogram equalisation, a short self-supervised training run, MC-dropout
uncertainty, bundles and the command line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from scipy.ndimage import gaussian_filter
from skimage.exposure import equalize_hist

from anomascope.engine.augment import augmented
from anomascope.engine.bundle import load_bundle
from anomascope.engine.config import build_config
from anomascope.engine.fit import fit_method
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import default_config, make_predictor
from anomascope.engine.methods.ppii.model import model_input, new_ppii_net, ppii_loss, ppii_plan
from anomascope.engine.methods.ppii.net import LeveledUNet, build_segmentation_unet, segmentation_stride
from anomascope.engine.methods.training_plan import TrainingInputs
from anomascope.engine.preprocess import equalize_histogram, standardize_foreground
from tests.cli import infer_one, train_tiny
from tests.synthetic import make_stripe_dataset

CPU = torch.device("cpu")
TINY = {
    "net": {"features": [8, 8, 16, 32, 32, 8]},
    "preprocess": {"image_size": 32},
    "train": {"steps": 300, "batch_size": 16, "checkpoint_every": 1000},
    "ppii": {"mc_passes": 4},
    "calibration": {"max_validation_images": 8},
}


def tiny_config(**overrides):
    config = build_config(default_config("ppii"), None, TINY)
    return build_config(config, None, overrides)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    return make_stripe_dataset(tmp_path_factory.mktemp("stripes"))


@pytest.fixture(scope="module")
def trained(stripes, tmp_path_factory):
    return fit_method(tiny_config(), stripes, tmp_path_factory.mktemp("ppii") / "bundle", CPU, show_progress=False)


@pytest.fixture(scope="module")
def untrained(stripes, tmp_path_factory):
    return fit_method(
        tiny_config(train={"steps": 0}),
        stripes,
        tmp_path_factory.mktemp("ppii") / "untrained",
        CPU,
        show_progress=False,
    )


def test_defaults_are_the_papers():
    config = default_config("ppii")
    assert (config.generator.min_anomalies, config.generator.max_anomalies) == (1, 10)
    assert config.net.dropout == 0.1 and len(config.net.features) == 6  # five levels, MC dropout 0.1
    assert (config.train.steps, config.train.batch_size) == (100_000, 16)


def test_histogram_equalisation_matches_scikit_image():
    rng = np.random.default_rng(0)
    image = rng.beta(2, 5, (2, 3, 24, 24)).astype(np.float32)
    ours = equalize_histogram(torch.from_numpy(image)).numpy()
    theirs = np.stack([[equalize_hist(c, nbins=256) for c in img] for img in image])
    # Both map through the cumulative histogram; bin edges differ by at most one bin.
    assert np.abs(ours - theirs).max() < 2 / 256 + 0.02
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999


def test_equalisation_over_a_foreground_matches_scikit_image_with_that_mask():
    rng = np.random.default_rng(1)
    image = rng.beta(2, 5, (2, 1, 24, 24)).astype(np.float32) * 0.9 + 0.1
    image[:, :, :, :10] = rng.uniform(0, 0.03, (2, 1, 24, 10))  # a dark background strip, noise in it
    ours = equalize_histogram(torch.from_numpy(image), foreground_above=0.04).numpy()
    body = image[:, 0] > 0.04
    theirs = np.stack([equalize_hist(img[0], nbins=256, mask=fg) for img, fg in zip(image, body, strict=True)])
    assert (ours[:, 0][~body] == 0).all()  # the background stays black, its noise is not stretched
    assert np.abs(ours[:, 0][body] - theirs[body]).max() < 2 / 256 + 0.02
    # Without the foreground the background's share lifts the body: its darkest pixel sits near 10/24.
    assert equalize_histogram(torch.from_numpy(image)).numpy()[:, 0][body].min() > 0.35


def test_standardise_is_a_z_score_over_the_foreground():
    rng = np.random.default_rng(2)
    image = rng.uniform(0.2, 0.9, (2, 1, 24, 24)).astype(np.float32)
    image[:, :, :6] = 0.01  # air above the head
    ours = standardize_foreground(torch.from_numpy(image), foreground_above=0.04).numpy()
    for img, out in zip(image[:, 0], ours[:, 0], strict=True):
        body = img > 0.04
        z = (img[body] - img[body].mean()) / img[body].std()
        np.testing.assert_allclose(out[body], np.clip(0.5 + z / 6, 0, 1), atol=1e-5)
        assert (out[~body] == 0).all()


def test_intensity_options_keep_a_bright_region_bright():
    image = torch.full((1, 1, 16, 16), 0.4)
    image[..., 6:10, 6:10] = 0.9  # a hyperintensity over a quarter... of a sixteenth of the slice
    images = image * 2 - 1
    preprocess = default_config("ppii").preprocess
    unit = model_input(images, preprocess, "unit")
    torch.testing.assert_close(unit, image)
    standardised = model_input(images, preprocess, "standardise")
    assert standardised[..., 6:10, 6:10].min() > standardised[..., :4, :4].max() + 0.3
    with pytest.raises(ValueError, match="unknown intensity 'gamma'"):
        model_input(images, preprocess, "gamma")


def test_a_bundle_reads_out_with_the_intensity_it_was_trained_with(stripes, tmp_path):
    with pytest.raises(ValueError, match="unknown ppii.intensity"):
        fit_method(tiny_config(ppii={"intensity": "gamma"}), stripes, tmp_path / "refused", CPU, show_progress=False)
    assert not (tmp_path / "refused" / "manifest.json").exists()
    config = tiny_config(train={"steps": 2}, ppii={"intensity": "standardise"})
    bundle = fit_method(config, stripes, tmp_path / "standardised", CPU, show_progress=False)
    predictor = make_predictor(load_bundle(bundle.path), CPU)
    assert predictor.config.intensity == "standardise"
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    standardised = predictor.predict(images).heatmap
    predictor.config.intensity = "equalise"  # the same weights fed the paper's input
    assert np.abs(standardised - predictor.predict(images).heatmap).max() > 1e-3


def test_short_training_finds_planted_anomalies(trained, untrained):
    metrics = trained.manifest["validation_metrics"]["ppii"]
    assert metrics["pixel_auroc"] > 0.75
    assert metrics["pixel_auroc"] > untrained.manifest["validation_metrics"]["ppii"]["pixel_auroc"] + 0.15


def test_mc_dropout_gives_a_reproducible_uncertainty_map(trained, stripes):
    case = load_case(next((stripes / "test" / "blob").iterdir()))
    first = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    second = score_case(make_predictor(load_bundle(trained.path), CPU), case)
    assert first.heatmap.shape == first.uncertainty.shape == (1, 32, 32)
    np.testing.assert_array_equal(first.heatmap, second.heatmap)
    np.testing.assert_array_equal(first.uncertainty, second.uncertainty)
    assert first.uncertainty.min() >= 0 and first.uncertainty.max() > 0
    assert first.restoration is None
    assert 0 <= first.heatmap.min() and first.heatmap.max() <= 1


def test_a_smoothed_read_out_is_the_map_under_a_gaussian(trained):
    predictor = make_predictor(load_bundle(trained.path), CPU)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = predictor.predict(images)
    predictor.config = replace(predictor.config, smoothing_sigma_at_256=16.0)  # sigma 2 px at 32 px
    smooth = predictor.predict(images)
    # torch's "reflect" padding is scipy's "mirror"; both truncate the kernel at 4 sigma.
    expected = np.stack([gaussian_filter(m, 2.0, mode="mirror", truncate=4.0) for m in plain.heatmap])
    np.testing.assert_allclose(smooth.heatmap, expected, atol=1e-6)
    np.testing.assert_allclose(smooth.image_score, expected.mean(axis=(1, 2)), atol=1e-6)  # image_score "mean"
    np.testing.assert_array_equal(smooth.uncertainty, plain.uncertainty)  # the passes' spread, as it was


def test_a_map_read_at_half_scale_is_the_half_size_image_s_map_on_the_image_s_grid(trained):
    predictor = make_predictor(load_bundle(trained.path), CPU)
    # Intensities as they are: a linear input, so shrinking the image before or after it is the same.
    predictor.config = replace(predictor.config, intensity="unit")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    half = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    at_half = torch.from_numpy(predictor.predict(half).heatmap)[:, None]
    expected = F.interpolate(at_half, size=(64, 64), mode="bilinear", align_corners=False)[:, 0].numpy()
    predictor.config = replace(predictor.config, read_scale=0.5)
    read = predictor.predict(images)
    np.testing.assert_allclose(read.heatmap, expected, atol=1e-6)
    np.testing.assert_allclose(read.image_score, expected.mean(axis=(1, 2)), atol=1e-6)
    assert read.uncertainty is not None and read.uncertainty.shape == (2, 64, 64)


def test_a_read_scale_off_the_stride_comes_back_on_the_image_s_grid(trained):
    predictor = make_predictor(load_bundle(trained.path), CPU)
    predictor.config = replace(predictor.config, intensity="unit")  # linear, as above
    images = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(2)) * 2 - 1
    # 48 x 80 read at 24 x 40, padded (reflected) to the stride's 32 x 48; the padding's map is cut off.
    half = F.interpolate(images, size=(24, 40), mode="bilinear", antialias=True, align_corners=False)
    padded = F.pad(half, (0, 8, 0, 8), mode="reflect")
    at_half = torch.from_numpy(predictor.predict(padded).heatmap)[:, None, :24, :40]
    expected = F.interpolate(at_half, size=(48, 80), mode="bilinear", align_corners=False)[:, 0].numpy()
    predictor.config = replace(predictor.config, read_scale=0.5)
    result = predictor.predict(images)
    np.testing.assert_allclose(result.heatmap, expected, atol=1e-6)
    assert result.uncertainty is not None and result.uncertainty.shape == (1, 48, 80)


def test_one_pass_at_the_training_scale_is_the_network_s_map(trained):
    bundle = load_bundle(trained.path)
    bundle.manifest["config"]["ppii"]["mc_passes"] = 1  # dropout off: the network as trained
    predictor = make_predictor(bundle, CPU)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        x = model_input(images, predictor.preprocess, predictor.config.intensity)
        expected = torch.sigmoid(predictor.model(x))[:, 0]
    result = predictor.predict(images)
    np.testing.assert_array_equal(result.heatmap, expected.numpy())
    assert result.uncertainty is None


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, float("nan"), True])
def test_a_read_scale_outside_zero_to_one_is_refused_before_training_and_reading(trained, scale, tmp_path):
    with pytest.raises(ValueError, match=r"ppii.read_scale is .*; it must be a share of the training scale"):
        ppii_plan(tiny_config(ppii={"read_scale": scale}), cast(TrainingInputs, None))
    bundle = load_bundle(trained.path)
    bundle.manifest["config"]["ppii"]["read_scale"] = scale
    with pytest.raises(ValueError, match=r"ppii.read_scale is"):
        make_predictor(bundle, CPU)


def test_a_tint_for_other_channels_is_refused_before_any_image_is_read():
    config = tiny_config(preprocess={"channels": 3}, generator={"bright_tint": [1.0, 0.5]})
    with pytest.raises(ValueError, match="bright_tint has 2 entries for images of 3 channels"):
        ppii_plan(config, cast(TrainingInputs, None))  # refused before the inputs are looked at


def test_the_loss_is_taken_on_the_augmented_images_before_their_anomalies_are_made():
    config = tiny_config(augment={"scale": [0.8, 1.2], "rotation_degrees": 10.0, "elastic_sd": 0.01})
    plain = tiny_config()
    model, batch = torch.nn.Conv2d(1, 1, 3, padding=1), torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        loss = ppii_loss(config)(model, batch, torch.Generator().manual_seed(5))
        generator = torch.Generator().manual_seed(5)
        by_hand = ppii_loss(plain)(model, augmented(batch, config.augment, generator), generator)
        unaugmented = ppii_loss(plain)(model, batch, torch.Generator().manual_seed(5))
    assert float(loss) == float(by_hand) != float(unaugmented)


def test_an_augmentation_out_of_range_is_refused_before_any_image_is_read():
    with pytest.raises(ValueError, match=r"augment.scale is \[1.5, 0.5\]"):
        ppii_plan(tiny_config(augment={"scale": [1.5, 0.5]}), cast(TrainingInputs, None))


def test_a_bundle_saved_before_the_augment_key_existed_loads(trained, stripes):
    image = load_case(next((stripes / "test" / "good").iterdir()))
    before = score_case(make_predictor(load_bundle(trained.path), CPU), image).heatmap
    bundle = load_bundle(trained.path)
    del bundle.manifest["config"]["augment"]  # as bundles trained before the key existed were saved
    assert np.array_equal(score_case(make_predictor(bundle, CPU), image).heatmap, before)


def test_the_leveled_unet_at_five_levels_is_monai_s_basic_unet():
    features = (8, 8, 16, 32, 32, 8)
    basic = build_segmentation_unet(tiny_config().net, 1)
    leveled = LeveledUNet(features, 1, 1, dropout=0.1)
    assert isinstance(basic, BasicUNet) and [v.shape for v in basic.state_dict().values()] == [
        v.shape for v in leveled.state_dict().values()
    ]
    leveled.load_state_dict(dict(zip(leveled.state_dict(), basic.state_dict().values(), strict=True)))
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(leveled.eval()(x), basic.eval()(x))


def test_a_six_level_network_trains_and_reads_an_image_off_its_stride_on_the_image_s_grid(stripes, tmp_path):
    # Read at 0.75, a 40 px image is 30 px: padded to the 32 px stride, read, and brought back to 40 px.
    config = tiny_config(net={"features": [8, 8, 16, 32, 32, 32, 8]}, train={"steps": 2}, ppii={"read_scale": 0.75})
    assert segmentation_stride(config.net) == 32 and isinstance(new_ppii_net(config), LeveledUNet)
    bundle = fit_method(config, stripes, tmp_path / "six", CPU, show_progress=False)
    predictor = make_predictor(load_bundle(bundle.path), CPU)
    assert isinstance(predictor.model, LeveledUNet) and len(predictor.model.downs) == 5
    images = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    assert predictor.predict(images).heatmap.shape == (1, 40, 40)


@pytest.mark.parametrize("features", [[8, 8], [8]])
def test_a_network_without_two_levels_is_refused_before_any_image_is_read(features):
    with pytest.raises(ValueError, match=r"net.features needs at least two encoder widths and the last width"):
        ppii_plan(tiny_config(net={"features": features}), cast(TrainingInputs, None))


def test_plain_unet_has_no_uncertainty(stripes, tmp_path):
    bundle = fit_method(
        tiny_config(train={"steps": 2}, net={"dropout": 0.0}), stripes, tmp_path / "plain", CPU, show_progress=False
    )
    result = score_case(make_predictor(bundle, CPU), load_case(next((stripes / "test" / "good").iterdir())))
    assert result.uncertainty is None and result.heatmap.shape == (1, 32, 32)


def test_cli_trains_and_infers_ppii_from_a_config_layered_on_another(stripes, tmp_path):
    bundle, change = tmp_path / "bundle", tmp_path / "change.toml"
    change.write_text("[ppii]\nmc_passes = 2\n[generator]\nbright_fraction = 0.25\n")
    manifest = train_tiny(
        "ppii",
        stripes,
        bundle,
        "[net]\nfeatures = [8, 8, 16, 32, 32, 8]\n[ppii]\nmc_passes = 3\n[calibration]\nmax_validation_images = 2\n",
        "--config",
        change,
    )
    assert manifest["method"] == "ppii" and manifest["readouts"] == ["ppii"]
    # The second file wins where both set a key; the first's keys and the defaults stay elsewhere.
    config = manifest["config"]
    assert config["ppii"]["mc_passes"] == 2 and config["generator"]["bright_fraction"] == 0.25
    assert config["net"]["features"] == [8, 8, 16, 32, 32, 8] and config["calibration"]["max_validation_images"] == 2
    assert manifest["config"]["generator"]["max_anomalies"] == 10
    assert set(manifest["calibration"]["ppii"]["thresholds"]) == {"k_sigma", "target_fpr", "max_f1"}
    image = next((stripes / "test" / "blob").iterdir())
    out = tmp_path / "out"
    summary = infer_one(bundle, image, out)
    assert summary["method"] == "ppii" and summary["restoration"] is None
    assert (
        np.load(out / summary["uncertainty"]).shape == np.load(out / f"{image.stem}_heatmap.npy").shape == (1, 32, 32)
    )
