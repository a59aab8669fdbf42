"""bench/ablate.py: every setting x seed trained and scored on the whole val split, the same figures as
`eval --split val`, reported as mean ± sd, and a plan cut short going on where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomascope.app.cli import main
from tests.bench_scripts import load_bench_script
from tests.synthetic import make_blob_dataset

PLAN = """
name = "tiny"
method = "ppii"
data = "{data}"
seeds = [0, 1]
steps = 2
overrides = {{ net = {{ features = [4, 4, 8, 8, 8, 4] }}, preprocess = {{ image_size = 32 }}, \
train = {{ batch_size = 4 }}, ppii = {{ mc_passes = 2 }}, calibration = {{ max_validation_images = 4 }} }}

[[setting]]
name = "paper"
steps = [1, 3]

[[setting]]
name = "standardise-no-mask"
overrides = {{ ppii = {{ intensity = "standardise" }}, preprocess = {{ foreground_above = "none" }} }}
"""


@pytest.fixture(scope="module")
def ablate():
    return load_bench_script("ablate.py")


@pytest.fixture(scope="module")
def ablated(ablate, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    data = make_blob_dataset(root / "data", n_train=8, n_val=4, n_test=4)
    plan = root / "tiny.toml"
    plan.write_text(PLAN.format(data=data))
    assert ablate.main([str(plan), "--runs", str(root / "runs")]) == 0
    return root, data, plan, json.loads(plan.with_suffix(".json").read_text())


def test_each_setting_is_its_seeds_mean_and_sd(ablated):
    _, _, _, report = ablated
    assert sorted(report["settings"]) == ["paper@1", "paper@3", "standardise-no-mask"]
    assert len(report["runs"]) == 2 * 2 + 2
    for label, row in report["settings"].items():
        name, _, steps = label.partition("@")
        runs = [r for r in report["runs"] if r["setting"] == name and r["steps"] == int(steps or 2)]
        assert row["seeds"] == [0, 1] == [r["seed"] for r in runs]
        for figure in ("pixel_auroc_all", "pixel_ap_lesion", "max_dice_lesion"):
            values = [r[figure] for r in runs]
            assert row[figure] == pytest.approx([np.mean(values), np.std(values, ddof=1)])
    assert report["split"] == "val" and report["machine"]["device"] == "cpu"
    assert all(run["machine"]["device"] == "cpu" and run["machine"]["cpu_capability"] for run in report["runs"])


def test_a_runs_figures_are_evals_on_the_val_split(ablated, tmp_path):
    root, data, _, report = ablated
    bundle = root / "runs" / "tiny" / "standardise-no-mask" / "seed1" / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["config"]["ppii"]["intensity"] == "standardise"
    assert manifest["config"]["preprocess"]["foreground_above"] is None  # "none" in the plan
    assert manifest["config"]["train"]["seed"] == 1 and manifest["training"]["steps"] == 2
    [run] = [r for r in report["runs"] if r["setting"] == "standardise-no-mask" and r["seed"] == 1]
    arguments = ["eval", "--bundle", str(bundle), "--data", str(data), "--split", "val", "--bootstrap", "0"]
    assert main([*arguments, "--no-report", "--out", str(tmp_path / "all")]) == 0
    assert main([*arguments, "--no-report", "--anomalous-only", "--out", str(tmp_path / "lesion")]) == 0
    every = json.loads((tmp_path / "all" / "metrics.json").read_text())["results"]["bundle:ppii"]
    lesion = json.loads((tmp_path / "lesion" / "metrics.json").read_text())["results"]["bundle:ppii"]
    assert run["pixel_auroc_all"] == pytest.approx(every["pixel_auroc"])
    assert run["pixel_ap_lesion"] == pytest.approx(lesion["pixel_ap"])
    assert run["max_dice_lesion"] == pytest.approx(lesion["max_dice"])
    assert run["dice_lesion"] == pytest.approx(lesion["dice"])
    assert run["threshold"] == pytest.approx(lesion["threshold"])


def test_a_plan_run_again_trains_nothing_it_has(ablate, ablated, monkeypatch):
    root, _, plan, report = ablated

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(ablate, "fit_method", refuse)
    again = root / "again.json"
    assert ablate.main([str(plan), "--runs", str(root / "runs"), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["settings"] == report["settings"]


def test_a_kept_run_trained_with_another_config_is_refused(ablate, ablated, tmp_path, capsys, monkeypatch):
    root, _, plan, report = ablated
    assert report["settings_config"]["standardise-no-mask"]["ppii"]["intensity"] == "standardise"
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    moved = tmp_path / "tiny.toml"  # the same plan, built on a base whose read-out has since changed
    moved.write_text(plan.read_text().replace("mc_passes = 2", "mc_passes = 3"))
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained on a moved config"))
    assert ablate.main([str(moved), "--runs", str(runs)]) == 2
    error = capsys.readouterr().err
    assert "paper/seed0: trained with another config" in error and "ppii.mc_passes 2 then, 3 now" in error
    assert not moved.with_suffix(".json").exists()


def test_a_run_cut_before_its_first_bundle_is_checked_all_the_same(ablate, ablated, tmp_path, capsys, monkeypatch):
    root, _, plan, _ = ablated
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs" / "tiny" / "standardise-no-mask", runs / "tiny" / "standardise-no-mask")
    seed0 = runs / "tiny" / "standardise-no-mask" / "seed0"
    manifest = json.loads((seed0 / "bundle" / "manifest.json").read_text())
    assert json.loads((seed0 / ablate.STARTED_WITH).read_text()) == manifest["config"]
    # Cut while training: the checkpoint is there, the bundle and the figures not yet.
    for name in ("manifest.json", "weights.safetensors"):
        (seed0 / "bundle" / name).unlink()
    (seed0 / "figures.json").unlink()
    moved = tmp_path / "tiny.toml"
    moved.write_text(plan.read_text().replace("mc_passes = 2", "mc_passes = 3"))
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("resumed on a moved config"))
    assert ablate.main([str(moved), "--runs", str(runs)]) == 2
    assert "standardise-no-mask/seed0: trained with another config" in capsys.readouterr().err


def test_a_run_refused_before_its_first_checkpoint_starts_afresh_once_the_plan_is_fixed(
    ablate, ablated, tmp_path, monkeypatch
):
    root, _, plan, _ = ablated
    runs = tmp_path / "runs"
    seed0 = runs / "tiny" / "standardise-no-mask" / "seed0"
    shutil.copytree(root / "runs" / "tiny" / "standardise-no-mask" / "seed0", seed0)
    # Started, then refused or stopped before any checkpoint: the recorded start is all there is.
    shutil.rmtree(seed0 / "bundle")
    (seed0 / "figures.json").unlink()
    fixed = tmp_path / "tiny.toml"
    fixed.write_text(plan.read_text().replace("mc_passes = 2", "mc_passes = 3"))

    def would_train(*args, **kwargs):
        raise RuntimeError("would train")

    monkeypatch.setattr(ablate, "fit_method", would_train)
    with pytest.raises(RuntimeError, match="would train"):
        ablate.main([str(fixed), "--runs", str(runs), "--only", "standardise-no-mask"])


def test_a_field_newer_than_a_kept_run_counts_at_its_default(ablate, ablated, tmp_path, capsys, monkeypatch):
    root, _, plan, _ = ablated
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    seed0 = runs / "tiny" / "paper" / "seed0"
    manifest = json.loads((seed0 / "bundle" / "manifest.json").read_text())
    del manifest["config"]["ppii"]["smoothing_sigma_at_256"]  # as a bundle trained before the field existed
    (seed0 / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    # A curve's run at its earlier point: only its steps differ from what the plan resolves to.
    seed1 = runs / "tiny" / "paper" / "seed1"
    shutil.copy2(seed1 / "bundle@1" / "manifest.json", seed1 / "bundle" / "manifest.json")
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained again"))
    assert ablate.main([str(plan), "--runs", str(runs), "--out", str(tmp_path / "same.json")]) == 0
    smoothed = tmp_path / "tiny.toml"  # the plan now sets the new field away from its default
    smoothed.write_text(plan.read_text().replace("mc_passes = 2", "mc_passes = 2, smoothing_sigma_at_256 = 4.0"))
    assert ablate.main([str(smoothed), "--runs", str(runs), "--ship", "paper", "--to", str(tmp_path / "x")]) == 2
    assert "ppii.smoothing_sigma_at_256 0.0 then, 4.0 now" in capsys.readouterr().err


def test_a_curve_carried_on_keeps_its_old_last_point(ablate, ablated, tmp_path):
    root, _, plan, report = ablated
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    seed0 = runs / "tiny" / "paper" / "seed0"
    weights_at_3 = (seed0 / "bundle" / "weights.safetensors").read_bytes()
    longer = tmp_path / "tiny.toml"
    longer.write_text(plan.read_text().replace("steps = [1, 3]", "steps = [1, 3, 4]"))
    assert ablate.main([str(longer), "--runs", str(runs), "--only", "paper"]) == 0
    assert (seed0 / "bundle@3" / "weights.safetensors").read_bytes() == weights_at_3
    assert json.loads((seed0 / "bundle" / "manifest.json").read_text())["training"]["steps"] == 4
    carried = json.loads(longer.with_suffix(".json").read_text())["settings"]
    assert carried["paper@3"] == report["settings"]["paper@3"] and "paper@4" in carried


def _new_checkout(plan: Path, to: Path, report: dict | None = None) -> Path:
    """The plan and its committed summary (or `report` in its place) in a folder with no runs/."""
    shutil.copy2(plan, to / plan.name)
    summary = report if report is not None else json.loads(plan.with_suffix(".json").read_text())
    (to / plan.with_suffix(".json").name).write_text(json.dumps(summary))
    return to / plan.name


def test_runs_gone_with_the_checkout_are_carried_from_the_summary(ablate, ablated, tmp_path, capsys, monkeypatch):
    root, _, plan, report = ablated
    copy = _new_checkout(plan, tmp_path)
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained a run the summary holds"))
    assert ablate.main([str(copy), "--runs", str(tmp_path / "runs")]) == 0
    carried = json.loads((tmp_path / "tiny.json").read_text())
    assert carried["settings"] == report["settings"] and carried["runs"] == report["runs"]
    assert sorted(carried["runs_without_manifest"]) == [
        f"{name}/seed{seed}" for name in ("paper", "standardise-no-mask") for seed in (0, 1)
    ]
    assert "carried from" in capsys.readouterr().err
    carried_with = json.loads((tmp_path / "runs" / "tiny" / "paper" / "seed1" / ablate.CARRIED).read_text())
    assert carried_with["config"] == report["settings_config"]["paper"]


def test_a_summary_of_another_config_is_not_carried(ablate, ablated, tmp_path, capsys, monkeypatch):
    root, _, plan, _ = ablated
    moved = _new_checkout(plan, tmp_path)
    moved.write_text(plan.read_text().replace("mc_passes = 2", "mc_passes = 3"))
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained on a moved config"))
    assert ablate.main([str(moved), "--runs", str(tmp_path / "runs")]) == 2
    assert "ppii.mc_passes 2 then, 3 now" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tiny" / "paper" / "seed0" / "figures.json").exists()


def test_carried_runs_are_checked_again_when_the_plan_moves_later(ablate, ablated, tmp_path, capsys, monkeypatch):
    _, _, plan, _ = ablated
    copy = _new_checkout(plan, tmp_path)
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained a carried run"))
    assert ablate.main([str(copy), "--runs", str(tmp_path / "runs")]) == 0
    # Carried once; the shipped config then moves: the carried figures must not pass for the new recipe.
    copy.write_text(copy.read_text().replace("mc_passes = 2", "mc_passes = 3"))
    assert ablate.main([str(copy), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "moved.json")]) == 2
    error = capsys.readouterr().err
    assert "paper/seed0: trained with another config" in error and "carried from" in error


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"data": "prepared/elsewhere"}, "the summary of plan 'tiny' on prepared/elsewhere"),
        ({"plan": "another"}, "the summary of plan 'another'"),
        ({"settings_overrides": {"paper": {"data": "prepared/elsewhere"}}}, "paper trained on prepared/elsewhere"),
    ],
)
def test_a_summary_of_another_split_or_plan_is_refused(ablate, ablated, tmp_path, capsys, change, said):
    _, _, plan, report = ablated
    copy = _new_checkout(plan, tmp_path, {**report, **change})
    assert ablate.main([str(copy), "--runs", str(tmp_path / "runs")]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_summary_older_than_its_configs_is_refused_and_kept(ablate, ablated, tmp_path, capsys, monkeypatch):
    _, _, plan, report = ablated
    older = {key: value for key, value in report.items() if key != "settings_config"}
    copy = _new_checkout(plan, tmp_path, older)
    monkeypatch.setattr(ablate, "fit_method", lambda *args, **kwargs: pytest.fail("trained over the summary"))
    assert ablate.main([str(copy), "--runs", str(tmp_path / "runs")]) == 2
    assert "not the config they trained (it predates settings_config)" in capsys.readouterr().err
    assert json.loads(copy.with_suffix(".json").read_text()) == older


def test_kept_figures_short_of_the_summary_are_refused(ablate, ablated, tmp_path, capsys):
    _, _, plan, _ = ablated
    copy = _new_checkout(plan, tmp_path)
    runs = tmp_path / "runs"
    shutil.copytree(ablated[0] / "runs", runs)
    figures = runs / "tiny" / "paper" / "seed0" / "figures.json"
    figures.write_text(json.dumps([row for row in json.loads(figures.read_text()) if row["steps"] == 1]))
    assert ablate.main([str(copy), "--runs", str(runs)]) == 2
    assert "lacks the steps [3]" in capsys.readouterr().err


def test_a_carried_run_is_not_read_out_again(ablate, ablated, tmp_path, capsys):
    _, _, plan, _ = ablated
    copy = _new_checkout(plan, tmp_path)
    arguments = [str(copy), "--runs", str(tmp_path / "runs"), "--rescore", "paper", "--label", "five"]
    assert ablate.main([*arguments, "--read-out", '{"ppii": {"mc_passes": 5}}']) == 2
    assert "carried from the summary without the bundle" in capsys.readouterr().err


def test_a_plan_cut_short_has_written_its_finished_seeds(ablate, ablated, tmp_path, monkeypatch):
    _, data, _, _ = ablated
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN.format(data=data))
    fit_method, calls = ablate.fit_method, []

    def cut_at_the_second_seed(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:  # seed 0 trained to 1, then 3 steps; seed 1 is cut
            raise KeyboardInterrupt
        return fit_method(*args, **kwargs)

    monkeypatch.setattr(ablate, "fit_method", cut_at_the_second_seed)
    with pytest.raises(KeyboardInterrupt):
        ablate.main([str(plan), "--runs", str(tmp_path / "runs")])
    written = json.loads(plan.with_suffix(".json").read_text())
    assert [(row["setting"], row["seed"], row["steps"]) for row in written["runs"]] == [
        ("paper", 0, 1),
        ("paper", 0, 3),
    ]
    assert written["settings"]["paper@3"]["seeds"] == [0]


def test_a_carried_run_shipped_is_trained_again_and_must_reproduce(ablate, ablated, tmp_path):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert ablate.main([str(plan), "--runs", str(root / "runs-three"), "--only", "paper"]) == 0
    shipped = tmp_path / "shipped"
    arguments = [str(plan), "--runs", str(tmp_path / "new-checkout"), "--ship", "paper", "--to", str(shipped)]
    assert ablate.main([*arguments, "--by", "pixel_auroc_all"]) == 0
    selection = json.loads((shipped / "manifest.json").read_text())["selection"]
    assert "carried from the plan's summary" in selection["retrained"]["why"]
    assert selection["retrained"]["retrained"] == pytest.approx(
        selection["retrained"]["recorded"], abs=ablate.REPRODUCED_WITHIN
    )
    assert json.loads((shipped / "manifest.json").read_text())["training"]["steps"] == 3


def test_a_plan_naming_an_unknown_setting_is_refused(ablate, ablated, capsys):
    _, _, plan, _ = ablated
    assert ablate.main([str(plan), "--only", "nonesuch"]) == 2
    assert "has no setting nonesuch" in capsys.readouterr().err


def test_shipping_needs_three_seeds(ablate, ablated, tmp_path, capsys):
    root, _, plan, _ = ablated
    arguments = [str(plan), "--runs", str(root / "runs"), "--ship", "standardise-no-mask", "--to", str(tmp_path / "x")]
    assert ablate.main(arguments) == 2
    assert "2 of 2 seeds scored; ship from 3 or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_shipped_bundle_is_the_best_seed_on_val(ablate, ablated, tmp_path):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    runs = str(root / "runs-three")
    assert ablate.main([str(plan), "--runs", runs, "--only", "paper"]) == 0
    shipped = tmp_path / "shipped"
    assert (
        ablate.main([str(plan), "--runs", runs, "--ship", "paper", "--to", str(shipped), "--by", "pixel_auroc_all"])
        == 0
    )
    rows = json.loads(plan.with_suffix(".json").read_text())["runs"]
    last = [row for row in rows if row["steps"] == 3]
    best = max(last, key=lambda row: row["pixel_auroc_all"])
    source = root / "runs-three" / "tiny" / "paper" / f"seed{best['seed']}" / "bundle"
    assert (shipped / "weights.safetensors").read_bytes() == (source / "weights.safetensors").read_bytes()
    selection = json.loads((shipped / "manifest.json").read_text())["selection"]
    assert selection["picked_seed"] == best["seed"] and selection["seeds"] == [0, 1, 2]
    assert selection["steps"] == 3 and selection["rule"] == "best of 3 seeds by val pixel_auroc_all"
    values = [row["pixel_ap_lesion"] for row in last]
    assert selection["val"]["pixel_ap_lesion"]["seeds"] == pytest.approx([np.mean(values), np.std(values, ddof=1)])
    assert selection["val"]["pixel_auroc_all"]["picked"] == best["pixel_auroc_all"]
    assert not (shipped / "checkpoint").exists()


def test_a_ship_read_out_changes_the_shipped_read_out_and_recalibrates_it(ablate, ablated, tmp_path):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    text = PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
    plan.write_text(
        text.replace(
            '[[setting]]\nname = "paper"',
            'ship_read_out = { ppii = { mc_passes = 5 } }\n\n[[setting]]\nname = "paper"',
            1,
        )
    )
    runs = str(root / "runs-three")
    assert ablate.main([str(plan), "--runs", runs, "--only", "paper"]) == 0  # the seeds of the test above
    plain, read_out = tmp_path / "plain", tmp_path / "read-out"
    plan.with_name("plain.toml").write_text(text)
    assert ablate.main([str(plan.with_name("plain.toml")), "--runs", runs, "--ship", "paper", "--to", str(plain)]) == 0
    assert ablate.main([str(plan), "--runs", runs, "--ship", "paper", "--to", str(read_out)]) == 0
    before, after = (json.loads((p / "manifest.json").read_text()) for p in (plain, read_out))
    assert (plain / "weights.safetensors").read_bytes() == (read_out / "weights.safetensors").read_bytes()
    assert before["config"]["ppii"]["mc_passes"] == 2 and after["config"]["ppii"]["mc_passes"] == 5
    assert after["selection"]["read_out"]["overrides"] == {"ppii": {"mc_passes": 5}}
    assert after["selection"]["picked_seed"] == before["selection"]["picked_seed"]
    # Five dropout passes average differently from two: the thresholds were measured again, not copied.
    assert after["calibration"]["ppii"] != before["calibration"]["ppii"]


def test_an_earlier_point_of_a_curve_ships_its_own_weights(ablate, ablated, tmp_path):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    runs = root / "runs-three"
    assert ablate.main([str(plan), "--runs", str(runs), "--only", "paper"]) == 0
    shipped = tmp_path / "shipped"
    arguments = [str(plan), "--runs", str(runs), "--ship", "paper", "--to", str(shipped), "--steps", "1"]
    assert ablate.main([*arguments, "--by", "pixel_auroc_all"]) == 0
    selection = json.loads((shipped / "manifest.json").read_text())["selection"]
    seed = runs / "tiny" / "paper" / f"seed{selection['picked_seed']}"
    assert selection["steps"] == 1 and json.loads((shipped / "manifest.json").read_text())["training"]["steps"] == 1
    assert (shipped / "weights.safetensors").read_bytes() == (seed / "bundle@1" / "weights.safetensors").read_bytes()
    assert (shipped / "weights.safetensors").read_bytes() != (seed / "bundle" / "weights.safetensors").read_bytes()


def test_a_snapshot_missing_from_an_older_run_is_trained_again_and_must_reproduce(ablate, ablated, tmp_path):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert ablate.main([str(plan), "--runs", str(root / "runs-three"), "--only", "paper"]) == 0
    runs = tmp_path / "runs"  # a copy: this test damages a record
    shutil.copytree(root / "runs-three", runs)
    for seed in (0, 1, 2):
        shutil.rmtree(runs / "tiny" / "paper" / f"seed{seed}" / "bundle@1", ignore_errors=True)
    shipped = tmp_path / "shipped"
    arguments = [str(plan), "--runs", str(runs), "--ship", "paper", "--to", str(shipped), "--steps", "1"]
    assert ablate.main([*arguments, "--by", "pixel_auroc_all"]) == 0
    retrained = json.loads((shipped / "manifest.json").read_text())["selection"]["retrained"]
    assert retrained["retrained"] == pytest.approx(retrained["recorded"], abs=ablate.REPRODUCED_WITHIN)

    # A recorded figure the retrained run does not give is refused: that run is not the one in the table.
    picked = json.loads((shipped / "manifest.json").read_text())["selection"]["picked_seed"]
    folder = runs / "tiny" / "paper" / f"seed{picked}"
    shutil.rmtree(folder / "bundle@1")
    rows = json.loads((folder / "figures.json").read_text())
    for row in rows:
        if row["steps"] == 1:
            row["pixel_auroc_all"] += 0.5
    (folder / "figures.json").write_text(json.dumps(rows))
    assert ablate.main([*arguments, "--by", "pixel_auroc_all"]) == 2
    assert not (folder / "bundle@1").exists()


def test_a_rescore_reads_the_same_networks_out_another_way(ablate, ablated, tmp_path, monkeypatch):
    root, data, _, original = ablated
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN.format(data=data))
    runs = str(root / "runs")
    arguments = [str(plan), "--runs", runs, "--rescore", "paper", "--read-out", '{"ppii": {"mc_passes": 5}}']
    assert ablate.main([*arguments, "--label", "five"]) == 0
    report = json.loads(plan.with_name("tiny.five.json").read_text())
    assert sorted(report["settings"]) == ["paper/five@3", "paper@3"]
    recorded = [r for r in original["runs"] if r["setting"] == "paper"]
    assert [r for r in report["runs"] if r["setting"] == "paper"] == [r for r in recorded if r["steps"] == 3]
    # The copy is the same network read out with five passes, and its figures are `eval --split val`'s.
    seed = root / "runs" / "tiny" / "paper" / "seed1"
    copy = seed / "read-out-five@3" / "bundle"
    assert (copy / "weights.safetensors").read_bytes() == (seed / "bundle" / "weights.safetensors").read_bytes()
    assert json.loads((copy / "manifest.json").read_text())["config"]["ppii"]["mc_passes"] == 5
    [five] = [r for r in report["runs"] if r["setting"] == "paper/five" and r["seed"] == 1]
    eval_arguments = ["eval", "--bundle", str(copy), "--data", str(data), "--split", "val", "--bootstrap", "0"]
    assert main([*eval_arguments, "--no-report", "--out", str(tmp_path / "all")]) == 0
    every = json.loads((tmp_path / "all" / "metrics.json").read_text())["results"]["bundle:ppii"]
    assert five["pixel_auroc_all"] == pytest.approx(every["pixel_auroc"])
    assert five["threshold"] == pytest.approx(every["threshold"])
    # Run again, it scores nothing it has.
    monkeypatch.setattr(ablate, "val_figures", lambda *args: pytest.fail("scored again"))
    assert ablate.main([*arguments, "--label", "five"]) == 0
    assert json.loads(plan.with_name("tiny.five.json").read_text())["settings"] == report["settings"]


def test_a_read_out_ships_its_best_seed_on_val_under_that_read_out(ablate, ablated, tmp_path, capsys):
    root, data, _, _ = ablated
    plan = tmp_path / "three.toml"
    plan.write_text(PLAN.format(data=data).replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    runs = str(root / "runs-three")
    assert ablate.main([str(plan), "--runs", runs, "--only", "paper"]) == 0  # the seeds of the tests above
    ship = [str(plan), "--runs", runs, "--ship", "paper", "--label", "half", "--to", str(tmp_path / "x")]
    assert ablate.main([*ship, "--by", "pixel_auroc_all"]) == 2  # not read out yet
    assert "paper/half@3: 0 of 3 seeds read out; run --rescore first" in capsys.readouterr().err
    read_out = ["--rescore", "paper", "--read-out", '{"ppii": {"read_scale": 0.5}}', "--label", "half"]
    assert ablate.main([str(plan), "--runs", runs, *read_out]) == 0
    assert ablate.main([*ship, "--by", "pixel_auroc_all"]) == 0
    report = json.loads(plan.with_name("three.half.json").read_text())["runs"]
    rows = [row for row in report if row["setting"] == "paper/half"]
    best = max(rows, key=lambda row: row["pixel_auroc_all"])
    source = Path(runs) / "tiny" / "paper" / f"seed{best['seed']}" / "read-out-half@3" / "bundle"
    shipped = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert shipped == {**json.loads((source / "manifest.json").read_text()), "selection": shipped["selection"]}
    assert (tmp_path / "x" / "weights.safetensors").read_bytes() == (source / "weights.safetensors").read_bytes()
    selection = shipped["selection"]
    assert (
        selection["picked_seed"] == best["seed"]
        and selection["val"]["pixel_auroc_all"]["picked"] == best["pixel_auroc_all"]
    )
    assert selection["read_out"]["changed"] == {"ppii.read_scale": 0.5}
    as_trained = [row["pixel_auroc_all"] for row in report if row["setting"] == "paper"]
    assert selection["read_out"]["val_as_trained"]["pixel_auroc_all"] == pytest.approx(
        [np.mean(as_trained), np.std(as_trained, ddof=1)]
    )


def test_a_rescore_of_a_curve_point_without_its_bundle_is_refused(ablate, ablated, tmp_path, capsys):
    root, data, _, _ = ablated
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN.format(data=data))
    runs = tmp_path / "runs"
    shutil.copytree(root / "runs", runs)
    shutil.rmtree(runs / "tiny" / "paper" / "seed0" / "bundle@1")
    arguments = [str(plan), "--runs", str(runs), "--rescore", "paper", "--steps", "1", "--label", "five"]
    assert ablate.main([*arguments, "--read-out", '{"ppii": {"mc_passes": 5}}']) == 2
    assert "paper seed 0@1: no scored bundle to read out again" in capsys.readouterr().err
