"""Reduced-precision inference: only the networks run under autocast; maps, scores and restorations
stay float32 and agree with the float32 read-out. Checked on the shipped bundles with bf16 autocast on
the CPU, and on CUDA where there is one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.models.unets.unet_2d import UNet2DOutput

from anomascope.engine.bundle import load_bundle
from anomascope.engine.inference import score_case
from anomascope.engine.io import Case, load_case
from anomascope.engine.methods import make_predictor
from anomascope.engine.nets.precision import AutocastNetwork, as_float32, resolve_precision

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "assets" / "models"
CPU = torch.device("cpu")
READOUTS = [
    ("ham10000-denoiser", "sano"),
    ("ham10000-denoiser", "spr"),
    ("ham10000-ppii", "ppii"),
    ("ham10000-cddpm", "cddpm"),
    ("chest-xray-dia", "dia"),
]


SAMPLES = {3: ROOT / "assets" / "samples" / "ISIC_0024311.jpg", 1: ROOT / "assets" / "samples" / "chest-xray.png"}


def small_case(channels: int) -> Case:
    """The sample case with that channel count: the skin models' 200 x 150 photo whole (it is their training
    scale, so a crop would be resampled as a whole photo of another field of view), the chest X-ray's
    centre 128 x 128."""
    case = load_case(SAMPLES[channels])
    if channels == 3:
        return case
    h, w = case.pixels.shape[-2:]
    top, left = (h - 128) // 2, (w - 128) // 2
    return dataclasses.replace(case, pixels=case.pixels[..., top : top + 128, left : left + 128])


def test_auto_is_float32_on_the_cpu_and_unknown_names_are_refused():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", CPU)


def test_network_outputs_come_back_as_float32():
    output = UNet2DOutput(sample=torch.ones(1, 2, dtype=torch.bfloat16))
    assert as_float32(output).sample.dtype == torch.float32
    z, index = as_float32((torch.ones(2, dtype=torch.float16), torch.tensor([1])))
    assert z.dtype == torch.float32 and index.dtype == torch.int64
    conv = torch.nn.Conv2d(1, 1, 3)
    inside = {}
    conv.register_forward_hook(lambda module, args, out: inside.update(dtype=out.dtype))
    result = AutocastNetwork(conv, torch.bfloat16)(torch.rand(1, 1, 8, 8))
    assert inside["dtype"] == torch.bfloat16 and result.dtype == torch.float32


DEVICES = [
    CPU,
    pytest.param(
        torch.device("cuda"),
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device: the CPU case covers the code path"
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("folder,readout", READOUTS)
def test_bf16_read_out_is_float32_and_agrees_with_fp32(folder, readout, device):
    bundle = load_bundle(MODELS / folder)
    full = make_predictor(bundle, device, readout, precision="fp32")
    reduced = make_predictor(bundle, device, readout, precision="bf16")
    assert reduced.parameters["precision"] == "bf16" and full.parameters["precision"] == "fp32"
    case = small_case(full.preprocess.channels or 3)
    a, b = score_case(full, case), score_case(reduced, case)
    assert b.image_score == pytest.approx(a.image_score, rel=0.05, abs=0.05)
    assert b.image_score != a.image_score  # the networks did run in bf16
    for exact, approximate in ((a.heatmap, b.heatmap), (a.restoration, b.restoration)):
        if exact is None:
            assert approximate is None
            continue
        assert approximate.dtype == np.float32
        assert np.corrcoef(exact.ravel(), approximate.ravel())[0, 1] > 0.98


def test_training_on_the_cpu_is_fp32_unless_bf16_is_asked_for():
    from anomascope.engine.config import TrainConfig
    from anomascope.engine.training import TrainingSetupError, _autocast, check_settings

    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    cpu = torch.device("cpu")
    with _autocast(cpu, TrainConfig()):  # mixed_precision "bf16" is the GPU's; the CPU ignores it
        assert layer(x).dtype == torch.float32
    with _autocast(cpu, TrainConfig(bf16_on_cpu=True)):
        assert layer(x).dtype == torch.bfloat16
    with pytest.raises(TrainingSetupError, match="train.bf16_on_cpu is 'yes'"):
        check_settings(TrainConfig(bf16_on_cpu="yes"))
