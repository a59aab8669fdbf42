"""The device kit's commands on an image without the app's packages: `train`, `eval` and `infer` of P-PII run
in a process where storage, the database, password, web-UI and plotting packages cannot be imported (the lent
GPU machine's image has none of them, and bench/device/wheels.sh brings none), nor diffusers, pydicom and nibabel
(`wheels.sh --ppii`: a prepared split is PNG), and the package is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import make_blob_dataset

# Top-level modules the lent machine's image lacks and the kit's commands must not need. The pylibjpeg
# family is optional to pydicom, which must go on without it where the full wheels bring pydicom.
MISSING = (
    "sqlalchemy",
    "alembic",
    "argon2",
    "gradio",
    "plotly",
    "psycopg2",
    "highdicom",
    "dicomweb_client",
    "pylibjpeg",
    "libjpeg",
    "openjpeg",
    "jpeg_ls",
    # Only the denoiser methods' networks and schedules need diffusers, and only DICOM and NIfTI files pydicom and
    # nibabel: a P-PII campaign on a prepared (PNG) split leaves the three wheels behind, so that an LGG split's
    # test slices and a cut run's checkpoint travel beside the others.
    "diffusers",
    "pydicom",
    "nibabel",
)
BLOCKED_PACKAGES = ("anomascope.storage",)

# The machine runs the tree uninstalled (bench/device/setup.sh links its folders under the package's name),
# so the package has no metadata there either.
RUNNER = """
import importlib.metadata, runpy, sys

installed_version = importlib.metadata.version

def version(name):
    if name == "anomascope":
        raise importlib.metadata.PackageNotFoundError(name)
    return installed_version(name)

importlib.metadata.version = version

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing!r} or name.startswith({packages!r}):
            raise ModuleNotFoundError(f"no module named {{name!r}} on this image", name=name)
        return None

sys.meta_path.insert(0, Missing())
sys.argv = ["anomascope", *sys.argv[1:]]
runpy.run_module("anomascope.app.cli", run_name="__main__")
"""

TINY_PPII = "[net]\nfeatures = [8, 8, 16, 32, 32, 8]\n[ppii]\nmc_passes = 2\n[calibration]\nmax_validation_images = 2\n"


def without_app_packages(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.format(missing=set(MISSING), packages=BLOCKED_PACKAGES))
    return subprocess.run([sys.executable, str(runner), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(data, bundle, scratch): a ppii bundle trained for 2 steps by a process without the app's packages."""
    tmp_path = tmp_path_factory.mktemp("kit")
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=2, n_test=2)
    config = tmp_path / "ppii.toml"
    config.write_text(TINY_PPII)
    bundle = tmp_path / "bundle"
    train = ("train", "--method", "ppii", "--data", data, "--out", bundle, "--config", config)
    done = without_app_packages(tmp_path, *train, "--steps", 2, "--image-size", 32, "--device", "cpu", "--quiet")
    assert done.returncode == 0, done.stderr
    return data, bundle, tmp_path


def test_train_writes_its_bundle(trained):
    _, bundle, _ = trained
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["method"] == "ppii" and manifest["config"]["train"]["steps"] == 2
    assert (bundle / "weights.safetensors").stat().st_size > 0


def test_eval_at_a_calibrated_threshold_writes_its_metrics(trained):
    data, bundle, tmp_path = trained
    out = tmp_path / "eval"
    done = without_app_packages(
        tmp_path, "eval", "--bundle", bundle, "--data", data, "--out", out, "--bootstrap", 3, "--device", "cpu",
        "--threshold", "max_f1", "--no-report",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["results"]["bundle:ppii"]
    assert result["n_images"] == 4 and 0 <= result["pixel_auroc"] <= 1
    assert result["threshold_method"].startswith("max_f1")
    assert not (out / "report.html").exists()


def test_eval_asked_for_its_report_says_plotly_is_missing(trained):
    data, bundle, tmp_path = trained
    out = tmp_path / "eval-report"
    done = without_app_packages(tmp_path, "eval", "--bundle", bundle, "--data", data, "--out", out, "--device", "cpu")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "anomascope eval: report.html needs plotly, which is not installed; pass --no-report to write "
        "metrics.json alone"
    ]
    assert not out.exists()


def test_infer_at_a_calibrated_threshold_writes_maps_and_masks(trained):
    data, bundle, tmp_path = trained
    out = tmp_path / "infer"
    image = sorted((data / "test" / "blob").iterdir())[0]
    done = without_app_packages(
        tmp_path, "infer", "--bundle", bundle, "--out", out, "--device", "cpu", "--threshold", "max_f1", image
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / f"{image.stem}.json").read_text())
    assert summary["method"] == "ppii" and summary["threshold"] == summary["thresholds"]["max_f1"]
    for name in (f"{image.stem}_heatmap.npy", f"{image.stem}_overlay.png", f"{image.stem}_mask.png"):
        assert (out / name).stat().st_size > 0
    assert list((out / "results" / "parquet").iterdir())


def test_a_dicom_file_on_the_kit_is_refused_naming_what_is_missing(trained, dicom_writer):
    _, bundle, tmp_path = trained
    image = dicom_writer("slice.dcm", np.full((32, 32), 100, dtype=np.uint16))
    out = tmp_path / "dicom"
    done = without_app_packages(tmp_path, "infer", "--bundle", bundle, "--out", out, "--device", "cpu", image)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"anomascope infer: {image.name}: reading DICOM needs pydicom, which is not installed here",
        "anomascope infer: 1 of 1 inputs failed (reported above)",
    ]


def test_a_preset_name_still_opens_the_database_and_its_failure_is_one_sentence(trained, capsys):
    from anomascope.app.cli import main

    data, bundle, tmp_path = trained
    image = sorted((data / "test" / "blob").iterdir())[0]
    arguments = ["--bundle", str(bundle), "--out", str(tmp_path / "preset"), "--threshold", "site A"]
    assert main(["infer", *arguments, "--db", "nosuch://x", "--device", "cpu", str(image)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("anomascope infer: nosuch://x: no installed database driver")


def test_version_of_the_uninstalled_tree_is_pyprojects(tmp_path):
    from anomascope.engine.config import load_toml

    done = without_app_packages(tmp_path, "--version")
    version = load_toml(Path(__file__).parents[2] / "pyproject.toml")["project"]["version"]
    assert done.returncode == 0 and done.stdout.strip() == f"anomascope {version} (not installed)"
