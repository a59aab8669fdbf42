"""The wheel as a user installs it: one `anomascope` namespace, the shipped bundles and demo cases with
their licences, and a working app from another folder, imported with no trace of the checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FOLDERS = {
    "app": "anomascope/app",
    "engine": "anomascope/engine",
    "storage": "anomascope/storage",
    "assets": "anomascope/assets",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(out)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [path] = out.glob("anomascope-*.whl")
    return path


def _tracked(folder: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True)
    return listed.stdout.split()


def test_wheel_holds_one_namespace_every_module_and_the_shipped_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"anomascope", wheel.name.split("-py3")[0] + ".dist-info"}
    expected = [
        path
        for folder in ("app", "engine", "storage")
        for path in _tracked(folder)
        if path.endswith((".py", ".js", ".html", ".mako")) or "/niivue/" in path
    ]
    expected += _tracked("assets")
    missing = [path for path in expected if f"{FOLDERS[path.split('/')[0]]}/{path.split('/', 1)[1]}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for licence in ("assets/README.md", "assets/models/README.md", "assets/samples/LICENCE.md"):
        assert f"anomascope/{licence}" in names


def test_installed_wheel_serves_every_method_and_demo_case_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no site-packages .pth files, so the checkout's editable install is invisible; the
    # dependencies come from this environment's site-packages, the project only from the wheel.
    env = {
        "PYTHONPATH": f"{site}:{sysconfig.get_paths()['purelib']}",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "ANOMASCOPE_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    script = """
import anomascope.app.bundles as bundles, anomascope.app.page.layout as ui, sys
from anomascope.app.cli import main
assert str(bundles.ASSETS).startswith(sys.argv[1]), bundles.ASSETS
catalogue = bundles.discover(bundles.model_dirs())
print(sorted({choice.method for choice in catalogue.choices.values()}), catalogue.unavailable)
print(sorted(path.name for path in ui.SAMPLES.iterdir()))
assert ui.build_app() is not None  # migrates a new database from the wheel's migrations
main(["--version"])
"""
    result = subprocess.run(
        [sys.executable, "-S", "-c", script, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    methods, samples, version = result.stdout.strip().splitlines()[-3:]
    assert methods == "['cddpm', 'dia', 'flair-zscore', 'median-distance', 'ppii', 'sano', 'spr'] {}"
    assert samples == str(sorted(Path(p).name for p in _tracked("assets/samples")))
    assert version.startswith("anomascope 0.")
    assert (tmp_path / "data" / "anomascope.sqlite").exists()
