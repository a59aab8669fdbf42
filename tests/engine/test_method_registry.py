"""The method registry: one list of methods, methods added by other packages through the entry-point
group, broken plugins reported instead of fatal, method options declared as data, and the README's
method table read from the registry."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from anomascope.app.bundles import discover
from anomascope.app.cli import main
from anomascope.engine.bundle import load_bundle
from anomascope.engine.evaluation import load_test_split
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import ENTRY_POINT_GROUP, default_config, make_predictor, registry
from anomascope.engine.methods.base import MapPredictor
from anomascope.engine.methods.registry import BUILT_IN
from tests.synthetic import make_blob_dataset

ROOT = Path(__file__).resolve().parents[2]

# A method that lives only in this test: the image's channel-mean intensity in [-1, 1] as its map.
PLUGIN = """
from dataclasses import dataclass, field

import numpy as np
import torch

from anomascope.engine.config import CalibrationConfig, PreprocessConfig, from_dict
from anomascope.engine.methods import Method
from anomascope.engine.methods.base import AnomalyResult, MapPredictor
from anomascope.engine.methods.training_plan import TrainingPlan


@dataclass
class IntensityConfig:
    k_sigma: float = 3.0


@dataclass
class IntensityMethodConfig:
    method: str = "intensity"
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(channels=0, mode="native", min_side=4, max_side=4096)
    )
    intensity: IntensityConfig = field(default_factory=IntensityConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


class IntensityMap(MapPredictor):
    name = "intensity"
    stride = 1

    def __init__(self, bundle, device, precision="auto"):
        super().__init__(bundle, device, "fp32")
        self.preprocess = from_dict(IntensityMethodConfig, bundle.manifest["config"]).preprocess

    def predict(self, images):
        maps = images.float().mean(dim=1).numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap):
        return float(heatmap.max())


def plan(config, inputs):
    return TrainingPlan([], ["intensity"])


METHOD = Method(
    name="intensity",
    summary="mean intensity",
    paper="none: a test method",
    defaults=IntensityMethodConfig,
    predictor="intensity_plugin:IntensityMap",
    plan="intensity_plugin:plan",
)
"""


def install_plugin(site: Path, name: str, entry_points: str, module: str, source: str) -> None:
    """A distribution as pip would leave it: a module and a dist-info with METADATA and entry_points.txt."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A folder on sys.path for plugin distributions; the registry is read again after the test."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    monkeypatch.undo()
    registry.cache_clear()


def test_a_plugin_method_trains_infers_evaluates_and_shows_in_the_catalogue(plugin_site, tmp_path, capsys):
    install_plugin(plugin_site, "intensity-plugin", "intensity = intensity_plugin:METHOD", "intensity_plugin", PLUGIN)
    registry.cache_clear()
    assert registry().get("intensity").source == "intensity-plugin"
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=4, n_test=4)
    bundle = tmp_path / "models" / "intensity"
    assert main(["train", "--method", "intensity", "--data", str(data), "--out", str(bundle), "--quiet"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["readouts"] == ["intensity"] and manifest["config"]["intensity"]["k_sigma"] == 3.0
    assert set(manifest["calibration"]["intensity"]["thresholds"]) >= {"k_sigma", "target_fpr", "max_f1"}

    image = next((data / "test" / "blob").iterdir())
    assert main(["infer", "--bundle", str(bundle), "--out", str(tmp_path / "infer"), str(image)]) == 0
    heatmap = np.load(tmp_path / "infer" / f"{image.stem}_heatmap.npy")
    pixels = np.asarray(Image.open(image).convert("RGB"), dtype=np.float64) / 255.0 * 2 - 1
    np.testing.assert_allclose(heatmap[0], pixels.mean(axis=2), atol=1e-6)

    out = tmp_path / "eval"
    assert main(["eval", "--bundle", str(bundle), "--data", str(data), "--out", str(out), "--bootstrap", "5"]) == 0
    result = json.loads((out / "metrics.json").read_text())["results"]["intensity:intensity"]
    # The maps themselves were checked above; this checks eval's pooling over the test split.
    predictor = make_predictor(load_bundle(bundle), torch.device("cpu"))
    maps = [score_case(predictor, load_case(i.path)).heatmap[0] for i in load_test_split(data, "test")]
    masks = [
        i.mask if i.mask is not None else np.zeros(m.shape, bool)
        for i, m in zip(load_test_split(data, "test"), maps, strict=True)
    ]
    scores, truth = np.concatenate([m.ravel() for m in maps]), np.concatenate([m.ravel() for m in masks])
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)

    catalogue = discover([bundle.parent])
    (label,) = [label for label, choice in catalogue.choices.items() if choice.method == "intensity"]
    assert catalogue.predictor(label, torch.device("cpu")).name == "intensity"


def test_a_broken_plugin_is_reported_and_everything_else_still_works(plugin_site, tmp_path, capsys):
    source = "import no_such_lib\n"
    install_plugin(plugin_site, "broken-plugin", "broken = broken_plugin:METHOD", "broken_plugin", source)
    install_plugin(plugin_site, "odd-plugin", "odd = odd_plugin:METHOD", "odd_plugin", "METHOD = 42\n")
    registry.cache_clear()
    methods = registry()
    assert "no_such_lib" in methods.unavailable["broken"] and "broken-plugin" in methods.unavailable["broken"]
    assert "not an anomascope Method" in methods.unavailable["odd"]
    assert [methods.methods[name].source for name in methods.names] == ["anomascope"] * len(BUILT_IN)

    catalogue = discover([ROOT / "assets" / "models"])
    assert "no_such_lib" in catalogue.unavailable["method plugin broken"]
    assert any(choice.method == "sano" for choice in catalogue.choices.values())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "unavailable methods:" in help_text and "broken (broken-plugin: broken_plugin:METHOD failed" in help_text
    assert main(["train", "--method", "broken", "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "method 'broken' is unavailable: broken-plugin" in capsys.readouterr().err


def test_a_plugin_cannot_take_a_built_in_name(plugin_site):
    source = "from anomascope.engine.methods.sano import METHOD\n"
    install_plugin(plugin_site, "impostor", "sano = impostor_plugin:METHOD", "impostor_plugin", source)
    registry.cache_clear()
    assert "already taken by anomascope" in registry().unavailable["sano"]
    assert registry().get("sano").source == "anomascope"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "sano", "--folds", "2"], "--folds applies to --method cddpm only"),
        (["--method", "cddpm", "--denoiser", "x"], "--denoiser applies to --method dia only"),
        (["--method", "dia"], "--denoiser BUNDLE is required for --method dia"),
    ],
)
def test_method_options_apply_to_their_method_only(arguments, message, tmp_path, capsys):
    assert main(["train", *arguments, "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert message in capsys.readouterr().err


def test_a_method_option_overrides_its_config_entry(tmp_path, monkeypatch):
    trained = {}

    def fake_fit(config, *args, **kwargs):
        trained["config"], trained["options"] = config, kwargs["options"]
        raise SystemExit(0)

    monkeypatch.setattr("anomascope.engine.fit.fit_method", fake_fit)
    with pytest.raises(SystemExit):
        main(["train", "--method", "cddpm", "--folds", "3", "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    assert trained["config"].cddpm.folds == 3 and default_config("cddpm").cddpm.folds == 10
    assert trained["options"] == {}


def test_every_built_in_method_loads_its_read_out_and_plan():
    for name in registry().names:
        method = registry().get(name)
        assert method.predictor_class().name == name
        assert callable(method.training_plan())
        assert method.defaults().method == name
        assert method.maps == issubclass(method.predictor_class(), MapPredictor)  # DIA alone scores whole images


def test_the_readme_method_table_is_the_registry():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- methods: begin -->")[1].split("<!-- methods: end -->")[0]
    rows = [line.split("|")[1:-1] for line in table.strip().splitlines()[2:]]
    listed = {cells[0].strip().strip("`"): cells[1].strip() for cells in rows}
    built_in = {name: method for name, method in registry().methods.items() if method.source == "anomascope"}
    assert listed == {name: method.summary for name, method in built_in.items()}


def test_no_module_outside_a_method_folder_names_a_method():
    """The registry is the only list: outside it and engine/methods/<name>/ no code names a built-in method."""
    names = set(registry().names)
    method_folders = {ROOT / "engine" / "methods" / package for package in (*BUILT_IN, "denoiser")}
    the_list = ROOT / "engine" / "methods" / "registry.py"
    offenders = []
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]:
        if path == the_list or any(folder in path.parents for folder in method_folders):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


def test_the_registry_imports_no_torch():
    """The CLI's --help and argument parsing read the registry; they must not wait for torch."""
    code = "import sys; from anomascope.app.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_the_example_method_of_the_docs_installs_trains_and_scores(plugin_site, tmp_path):
    """docs/adding-a-method.md's package, as written there."""
    guide = (ROOT / "docs" / "adding-a-method.md").read_text()
    source = guide.split("```python\n")[1].split("```")[0]
    pyproject = guide.split("```toml\n")[1].split("```")[0]
    # TOML quotes the value; entry_points.txt, which pip writes from it, does not.
    entry_point = pyproject.split('[project.entry-points."anomascope.methods"]\n')[1].splitlines()[0].replace('"', "")
    install_plugin(plugin_site, "anomascope-local-contrast", entry_point, "local_contrast", source)
    registry.cache_clear()
    data = make_blob_dataset(tmp_path / "data", n_train=4, n_val=4, n_test=4)
    bundle = tmp_path / "models" / "local-contrast"
    assert main(["train", "--method", "local-contrast", "--data", str(data), "--out", str(bundle), "--quiet"]) == 0
    image = next((data / "test" / "blob").iterdir())
    assert main(["infer", "--bundle", str(bundle), "--out", str(tmp_path / "infer"), str(image)]) == 0
    heatmap = np.load(tmp_path / "infer" / f"{image.stem}_heatmap.npy")
    assert heatmap.shape == (1, *Image.open(image).size[::-1]) and np.isfinite(heatmap).all() and heatmap.max() > 0
    catalogue = discover([bundle.parent])
    assert [choice.method for choice in catalogue.choices.values()] == ["local-contrast"]
