"""The training loop's throughput settings (#16) change how fast a step runs, never what it computes."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from anomascope.app.cli import main
from anomascope.engine.config import build_config
from anomascope.engine.methods import default_config
from anomascope.engine.methods.denoiser.model import epsilon_loss, new_denoiser
from anomascope.engine.schedules import VPSchedule
from anomascope.engine.training import TrainingSetupError, make_optimizer, optimizer_kernels, train

CPU = torch.device("cpu")
TINY = {
    "net": {"block_out_channels": [8, 16], "attention_levels": [False, False], "layers_per_block": 1},
    "preprocess": {"image_size": 16, "channels": 1},
    "train": {"batch_size": 8, "learning_rate": 1e-3, "steps": 6, "checkpoint_every": 3, "seed": 0},
}


def run(tmp_path: Path, name: str, steps: int = 6, seen: list | None = None, **settings):
    """A tiny denoiser's training; `seen` collects the memory layout of every batch the loss was given."""
    overrides = {**TINY, "train": {**TINY["train"], "steps": steps, **settings}}
    config = build_config(default_config("sano"), None, overrides)
    data = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.manual_seed(0)
    model = new_denoiser(config)
    loss = epsilon_loss(VPSchedule(config.schedule))

    def observed(network, batch, generator):
        if seen is not None:
            seen.append(batch.is_contiguous(memory_format=torch.channels_last))
        return loss(network, batch, generator)

    return train(model, observed, data, config.train, tmp_path / name, CPU, False)


def weights(result) -> torch.Tensor:
    return torch.cat([value.flatten().float() for value in result.model.state_dict().values()])


def assert_same_training(result, reference) -> None:
    """Float32 rounding apart, nothing more. Measured on this tiny run: losses within 1e-7 (relative) and
    weights within 2.5e-4 (relative L2) for NHWC and fused Adam; another seed is 0.1 and 3.2e-2 away.
    Adam amplifies rounding in near-zero gradients, so single weights may differ by about one step."""
    assert result.steps == reference.steps and len(result.losses) == len(reference.losses)
    assert result.losses == pytest.approx(reference.losses, rel=1e-5)
    distance = (weights(result) - weights(reference)).norm() / weights(reference).norm()
    assert distance < 2e-3


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run(tmp_path_factory.mktemp("plain"), "run")


def test_channels_last_trains_the_same_network_and_hands_back_plain_weights(plain, tmp_path):
    seen: list[bool] = []
    result = run(tmp_path, "nhwc", seen=seen, channels_last=True)
    assert seen == [True] * 6  # every step's batch in NHWC memory
    assert_same_training(result, plain)
    assert all(p.is_contiguous() for p in result.model.parameters())


def test_a_run_resumed_in_channels_last_keeps_adams_moments_in_its_layout(plain, tmp_path):
    run(tmp_path, "mixed", steps=3)  # a checkpoint written in NCHW
    assert_same_training(run(tmp_path, "mixed", channels_last=True), plain)
    state = torch.load(tmp_path / "mixed" / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    moments = [v for s in state.values() for k, v in s.items() if k.startswith("exp_avg") and v.dim() == 4]
    assert any(m.shape[1] > 1 and m.shape[2] * m.shape[3] > 1 for m in moments)  # where the layouts differ
    assert all(m.is_contiguous(memory_format=torch.channels_last) for m in moments)


def test_fused_adam_takes_the_same_steps(plain, tmp_path):
    result = run(tmp_path, "fused", optimizer_kernels="fused")
    assert_same_training(result, plain)


def test_kernels_are_what_the_setting_says():
    model = torch.nn.Linear(2, 2)

    def defaults(kernels: str, device: torch.device) -> dict:
        config = build_config(default_config("sano"), None, {"train": {"optimizer_kernels": kernels}}).train
        return make_optimizer(model, config, device).defaults

    assert defaults("fused", CPU)["fused"] and defaults("foreach", CPU)["foreach"]
    auto = defaults("auto", CPU)  # the CPU keeps torch's default, so CPU runs are unchanged
    assert not auto["fused"] and not auto["foreach"]
    assert optimizer_kernels("auto", torch.device("cuda")) == {"fused": True}


def test_a_compiled_network_trains_the_same_and_checkpoints_plain_weights(plain, tmp_path, monkeypatch):
    # Dynamo's capture and autograd, without inductor's code generation, which on torch 2.13's CPU build
    # zeroes most of this U-Net's gradients (the check below refuses it; see the next test).
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    result = run(tmp_path, "compiled", compile="default")
    assert_same_training(result, plain)
    state = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=False)
    assert state["model"].keys() == plain.model.state_dict().keys()  # no torch.compile prefix
    # Its checkpoint resumes in a run without compilation.
    run(tmp_path, "mixed", steps=3, compile="default")
    resumed = run(tmp_path, "mixed")
    assert_same_training(resumed, plain)


class HalvedGradients(torch.autograd.Function):
    """What a miscompiled backward might do: the forward is right, the gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 0.5


class Miscompiled(torch.nn.Module):
    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, sample, timestep):
        output = self.network(sample, timestep)
        return type(output)(sample=HalvedGradients.apply(output.sample))


def test_a_compiler_that_gets_gradients_wrong_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: Miscompiled(model))
    with pytest.raises(TrainingSetupError, match=r"torch.compile gives gradients 0.50 \(relative L2\) away"):
        run(tmp_path, "wrong", compile="default")
    assert not (tmp_path / "wrong" / "checkpoint.pt").exists()


def no_compiler(graph, example_inputs):
    raise OSError("no C++ compiler found")  # what inductor meets on a machine without one


def test_a_compiler_that_fails_is_refused_in_a_sentence_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=no_compiler))
    with pytest.raises(TrainingSetupError, match=r"cannot compile the network on this machine.*no C\+\+ compiler"):
        run(tmp_path, "failing", compile="default")
    assert not (tmp_path / "failing" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [("compile", "fast", "unknown train.compile 'fast'"), ("optimizer_kernels", "cuda", "train.optimizer_kernels")],
)
def test_unknown_settings_are_named(tmp_path, setting, value, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, "bad", **{setting: value})


def test_the_cli_refuses_an_unknown_setting_before_loading_any_data(tmp_path, capsys):
    config = tmp_path / "config.toml"
    config.write_text('[train]\ncompile = "fast"\n')
    arguments = ["train", "--method", "sano", "--data", str(tmp_path / "nothing here"), "--out", str(tmp_path / "b")]
    assert main([*arguments, "--config", str(config)]) == 2
    assert "anomascope train: unknown train.compile 'fast'; use one of no, default" in capsys.readouterr().err
