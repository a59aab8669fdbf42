"""Fixtures shared by the app's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomascope.app.bundles import discover
from anomascope.app.review.app import ReviewApp
from anomascope.storage import Database

ROOT = Path(__file__).parents[2]


@pytest.fixture
def app(tmp_path) -> ReviewApp:
    """The review services on the shipped bundles, with a new database, on the CPU."""
    return ReviewApp(
        Database(f"sqlite:///{tmp_path / 'a.sqlite'}"),
        discover([ROOT / "assets" / "models"]),
        tmp_path / "cases",
        torch.device("cpu"),
    )
