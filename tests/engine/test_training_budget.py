"""train.max_seconds: a wall-clock budget that ends training early, at a loss read, with the same steps an
unbudgeted run takes up to there, a checkpoint where it stopped, and no further steps when resumed."""

from __future__ import annotations

import pytest
import torch

from anomascope.engine.training import LOSS_READ_EVERY, TrainingSetupError, check_settings
from tests.engine.test_training_throughput import TINY, run


def checkpoint_step(folder) -> int:
    return torch.load(folder / "checkpoint.pt", weights_only=False)["step"]


def test_a_spent_budget_stops_at_the_next_loss_read_and_a_resumed_run_trains_no_further(tmp_path):
    settings = {"checkpoint_every": 1000, "max_seconds": 1e-9}
    budgeted = run(tmp_path, "budget", steps=1000, **settings)
    assert budgeted.steps == len(budgeted.losses) == LOSS_READ_EVERY
    assert checkpoint_step(tmp_path / "budget") == LOSS_READ_EVERY
    # The steps it took are those of a run planned that short: the budget changes where training ends only.
    planned = run(tmp_path, "planned", steps=LOSS_READ_EVERY, checkpoint_every=1000)
    assert budgeted.losses == planned.losses
    resumed = run(tmp_path, "budget", steps=1000, **settings)
    assert resumed.steps == LOSS_READ_EVERY and resumed.losses == budgeted.losses


@pytest.mark.parametrize("budget", [0, -5, True, "ten"])
def test_a_budget_that_is_not_a_positive_number_of_seconds_is_refused(budget):
    from anomascope.engine.config import TrainConfig

    config = TrainConfig(**{**TINY["train"], "max_seconds": budget})
    with pytest.raises(TrainingSetupError, match=f"train.max_seconds is {budget!r}; give a positive number"):
        check_settings(config)
