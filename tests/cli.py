"""The command line as a user runs it: a separate process, its output captured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def anomascope(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anomascope.app.cli", *map(str, args)], capture_output=True, text=True)


def train_tiny(method: str, data: Path, bundle: Path, config_toml: str, *extra) -> dict:
    """`anomascope train` for 2 steps at 32 px with a tiny config; the new bundle's manifest."""
    config = bundle.with_name(f"{bundle.name}.toml")
    config.write_text(config_toml)
    trained = anomascope(
        "train",
        "--method",
        method,
        "--data",
        data,
        "--out",
        bundle,
        "--config",
        config,
        "--steps",
        2,
        "--image-size",
        32,
        "--quiet",
        *extra,
    )
    assert trained.returncode == 0, trained.stderr
    return json.loads((bundle / "manifest.json").read_text())


def infer_one(bundle: Path, image: Path, out: Path, *extra) -> dict:
    """`anomascope infer` on one image; the JSON summary it writes."""
    inferred = anomascope("infer", "--bundle", bundle, "--out", out, *extra, image)
    assert inferred.returncode == 0, inferred.stderr
    return json.loads((out / f"{image.stem}.json").read_text())
