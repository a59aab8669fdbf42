"""What the commands share: a user-facing failure (`CommandError`), its exit code, the failures reported as
one sentence rather than a traceback (`user_errors`), and the arguments several commands take."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomascope.engine.config import PRECISIONS
from anomascope.engine.methods import Registry

EXIT_BAD_INPUT = 2
THRESHOLD_CHOICES = (
    "a number, a calibrated threshold (max_f1, target_fpr, k_sigma) or a site preset stored by `anomascope tune` "
    "(its newest version, from --db)"
)


class CommandError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2, no traceback."""


def output_folder(name: str) -> Path:
    """--out as a folder: one that is an existing file is a one-sentence error."""
    out = Path(name)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is an existing file; give a folder")
    return out


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="what the networks run in; maps and scores stay float32 (default auto: bf16 on CUDA, "
        "fp32 on the CPU); recorded in the outputs",
    )


def add_db_argument(parser: argparse.ArgumentParser, purpose: str = "") -> None:
    parser.add_argument(
        "--db",
        default=None,
        help=f"database URL{purpose} (default: $DATABASE_URL or SQLite in $ANOMASCOPE_DATA_DIR, ./data)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def add_readout_argument(parser: argparse.ArgumentParser, methods: Registry) -> None:
    """--method choosing the read-out of a bundle that has several."""
    parser.add_argument(
        "--method", choices=methods.listed, help="read-out of a shared denoiser bundle (default: its own)"
    )


def add_threshold_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    """--threshold, which `use` says what for, and the --db holding the site presets it may name."""
    parser.add_argument("--threshold", help=use + THRESHOLD_CHOICES)
    add_db_argument(parser, " holding the site presets")


def user_errors() -> tuple[type[Exception], ...]:
    """The failures a command reports as one sentence (exit code 2) rather than a traceback. Storage's
    own is among them only once a command has imported storage: the device kit's commands never do, and
    its packages are not installed where they run."""
    from anomascope.app.cli.thresholds import ThresholdChoiceError
    from anomascope.engine.bundle import BundleError
    from anomascope.engine.data import DataError
    from anomascope.engine.datasets import PrepareError
    from anomascope.engine.inference import NonFiniteResultError
    from anomascope.engine.io import ImageReadError
    from anomascope.engine.io.limits import LimitsError
    from anomascope.engine.methods import UnknownMethodError
    from anomascope.engine.preprocess import InputMismatchError
    from anomascope.engine.training import TrainingSetupError
    from anomascope.engine.tuning import TuningError

    errors: tuple[type[Exception], ...] = (
        ImageReadError,
        InputMismatchError,
        PrepareError,
        CommandError,
        BundleError,
        DataError,
        LimitsError,
        TuningError,
        ThresholdChoiceError,
        NonFiniteResultError,
        UnknownMethodError,
        TrainingSetupError,
    )
    storage = sys.modules.get("anomascope.storage")
    return (*errors, storage.StorageError) if storage is not None else errors
