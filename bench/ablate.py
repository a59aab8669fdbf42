"""Ablations of a method's recipe (issue #35): every setting of a plan trained with each of its seeds and
scored on the whole val split, never on test, then reported as mean ± sd over the seeds.

    python bench/ablate.py bench/ablations/lgg-ppii.toml            # train what is missing, then report
    python bench/ablate.py bench/ablations/lgg-ppii.toml --only paper --only unit
    python bench/ablate.py --table-of bench/ablations/lgg-ppii.json  # the table again, training nothing
    python bench/ablate.py bench/ablations/lgg-ppii-long.toml --ship "standardise+bright-half" \
        --to assets/models/lgg-ppii       # the best seed on val (at the setting's last steps), for shipping
    python bench/ablate.py bench/ablations/ham10000-ppii-intensity.toml --ship "unit+dark-half" --steps 1000 \
        --to assets/models/ham10000-ppii  # at an earlier point of its curve
    python bench/ablate.py bench/ablations/ham10000-ppii-intensity.toml --rescore "unit+dark-half" \
        --read-out '{"ppii": {"mc_passes": 10}}' --label ten-passes   # the seeds read out another way
    python bench/ablate.py bench/ablations/ham10000-ppii-tint.toml --ship melanin-tint --label read-scale-0.5 \
        --to assets/models/ham10000-ppii --by pixel_auroc_all   # the best seed on val under that read-out

A plan (TOML):

    name = "lgg-ppii-64"                  # the runs go to runs/ablations/NAME/SETTING/seedK
    method = "ppii"
    config = "configs/lgg-ppii.toml"      # the shipped config the settings change
    data = "prepared/lgg"                 # its val split scores every run
    seeds = [0, 1, 2]
    steps = 1000
    overrides = { preprocess = { image_size = 64 } }     # for every setting
    ship_read_out = { ppii = { mc_passes = 10 } }         # optional: --ship's bundle reads out so (recalibrated)
    [[setting]]
    name = "paper"
    [[setting]]
    name = "unit"
    about = "the intensities as they are"
    overrides = { ppii = { intensity = "unit" } }
    data = "prepared/lgg-margin5"         # optional: train on another prepared split (val must be the same)
    steps = [250, 500, 1000, 2000]        # optional: a curve, one run per seed resumed from step to step

TOML has no null: the string "none" in overrides stands for it. Each run's figures are kept beside its bundle
(figures.json), and the config it started with (started-with.json), so a plan cut short goes on where it stopped,
checked against the plan as it is now; the summary JSON holds every run and the
settings' mean ± sd; each run names the machine that trained it, the summary the one that last ran the plan.
The summary is written again after every seed, so a plan longer than one sitting leaves its finished runs there;
where runs/ was not kept (a new checkout), those runs' figures are carried from the summary, checked against
the config each setting trained, and their bundles, if one is shipped, trained again and checked to reproduce.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anomascope.engine import metrics
from anomascope.engine.bundle import ModelBundle, load_bundle, update_manifest
from anomascope.engine.config import build_config, load_toml, to_dict
from anomascope.engine.data import at_split_scale
from anomascope.engine.evaluation import evaluate, load_test_split
from anomascope.engine.fit import at_training_scale, calibrate, fit_method
from anomascope.engine.methods import make_predictor, registry
from anomascope.engine.training import CHECKPOINT_NAME, pick_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402

# The val figures of a run: over every val image, then over the lesion images alone (the LGG tumour-slice
# protocol pools those).
ALL_IMAGES = ("pixel_auroc", "image_auroc")
LESION_IMAGES = ("pixel_ap", "max_dice", "dice")
FIGURES = tuple(f"{key}_all" for key in ALL_IMAGES) + tuple(f"{key}_lesion" for key in LESION_IMAGES)
# A seeded run trained again on the same machine scores the same; a looser match would let a different
# run pass for the one the table reports.
REPRODUCED_WITHIN = 1e-3


class PlanError(ValueError):
    """A plan that cannot be run, said in one sentence naming the file."""


@dataclass(frozen=True)
class Setting:
    name: str
    about: str
    overrides: dict
    data: str | None
    steps: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    name: str
    method: str
    config: str | None
    data: str
    seeds: tuple[int, ...]
    settings: tuple[Setting, ...]
    overrides: dict
    ship_read_out: dict


def read_plan(path: Path) -> Plan:
    try:
        table = load_toml(path)
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read it as TOML ({exc})") from exc
    for key in ("name", "method", "data", "setting"):
        if key not in table:
            raise PlanError(f"{path}: the plan has no {key}")
    default_steps = table.get("steps", 1000)
    settings = tuple(
        Setting(
            name=entry["name"],
            about=entry.get("about", ""),
            overrides=with_nulls(entry.get("overrides", {})),
            data=entry.get("data"),
            steps=tuple(np.atleast_1d(entry.get("steps", default_steps)).tolist()),
        )
        for entry in table["setting"]
    )
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: two settings share a name; give each its own")
    return Plan(
        name=table["name"],
        method=table["method"],
        config=table.get("config"),
        data=table["data"],
        seeds=tuple(table.get("seeds", [0, 1, 2])),
        settings=settings,
        overrides=with_nulls(table.get("overrides", {})),
        ship_read_out=with_nulls(table.get("ship_read_out", {})),
    )


def with_nulls(overrides: dict) -> dict:
    """The overrides with every "none" as None (TOML has no null)."""
    return {
        key: with_nulls(value) if isinstance(value, dict) else (None if value == "none" else value)
        for key, value in overrides.items()
    }


def run_config(plan: Plan, setting: Setting, seed: int, steps: int):
    overrides = {"method": plan.method, "train": {"seed": seed, "steps": steps, "epochs": None}}
    config = build_config(registry().get(plan.method).defaults(), plan.config, plan.overrides)
    config = build_config(config, None, setting.overrides)
    return build_config(config, None, overrides)


def val_figures(bundle_path: Path, data: Path, device: torch.device) -> dict:
    """The run's figures on the whole val split, as `eval --split val` (and `--anomalous-only`) computes them;
    each image is scored once, and the lesion figures pool the lesion images' maps of that one pass."""
    bundle = load_bundle(bundle_path)
    predictor = at_split_scale(make_predictor(bundle, device), data)
    images = load_test_split(data, "val")
    scored = evaluate(predictor, images, bundle.method, device.type, bootstrap=0)
    every = scored.metrics
    lesion_images = [i for i, image in enumerate(images) if image.kind != "good"]
    # An image-level set has no maps to pool (`eval` reports its pixel figures as None).
    lesions = [(scored.heatmaps[i], images[i].mask) for i in lesion_images] if scored.heatmaps else []
    return {
        **{f"{key}_all": every[key] for key in ALL_IMAGES},
        **lesion_figures(lesions, every["threshold"]),
        "threshold": every["threshold"],
        "n_val_images": len(images),
        "n_val_lesion_images": len(lesion_images),
    }


def lesion_figures(lesions: list[tuple[np.ndarray, np.ndarray | None]], cut: float | None) -> dict:
    """Pixel AP, max Dice and Dice at `cut` pooled over the lesion images' (map, mask) pairs; None where
    the images have no masks (an image-level set), as `eval` reports them."""
    if not lesions or all(mask is None for _, mask in lesions):
        return {f"{key}_lesion": None for key in LESION_IMAGES}
    scores = np.concatenate([heatmap.ravel() for heatmap, _ in lesions])
    truth = np.concatenate([(mask if mask is not None else np.zeros_like(h, bool)).ravel() for h, mask in lesions])
    return {
        "pixel_ap_lesion": metrics.average_precision(scores, truth),
        "max_dice_lesion": metrics.best_dice(scores, truth),
        "dice_lesion": metrics.dice_iou(scores >= cut, truth)[0] if cut is not None else None,
    }


def run_setting(plan: Plan, setting: Setting, seed: int, root: Path, device: torch.device) -> list[dict]:
    """One seed of a setting: trained to each of its step counts in turn (resuming), scored at each."""
    folder = root / setting.name / f"seed{seed}"
    figures_file = folder / "figures.json"
    done = json.loads(figures_file.read_text()) if figures_file.exists() else []
    have = {row["steps"] for row in done}
    for steps in setting.steps:
        if steps in have:
            continue
        keep_earlier_point(folder, steps)
        config = run_config(plan, setting, seed, steps)
        record_start(folder, to_dict(at_training_scale(config, Path(setting.data or plan.data))))
        began = time.perf_counter()
        bundle = fit_method(
            config,
            Path(setting.data or plan.data),
            folder / "bundle",
            device,
            show_progress=False,
            keep_checkpoint=True,
        )
        assert bundle is not None  # one process
        trained_seconds = time.perf_counter() - began
        # The machine per run: a plan resumed on another machine would otherwise report the last one for all.
        row = {
            "setting": setting.name,
            "seed": seed,
            "steps": steps,
            "train_seconds": round(trained_seconds, 1),
            "machine": machine(device),
        }
        row.update(val_figures(folder / "bundle", Path(plan.data), device))
        if steps != setting.steps[-1]:
            copy_bundle(folder / "bundle", snapshot_folder(folder, steps))
        done.append(row)
        figures_file.write_text(json.dumps(done, indent=1))
        print(json.dumps(row), flush=True)
    return [row for row in done if row["steps"] in setting.steps]


def record_start(folder: Path, config: dict) -> None:
    """The config a run starts training with, kept beside it: a run cut before it writes its first bundle has
    a checkpoint but no manifest, and resuming it must be checked all the same."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STARTED_WITH).write_text(json.dumps(config, indent=1))


def keep_earlier_point(folder: Path, steps: int) -> None:
    """Before a run trains on to `steps`, its bundle as it stands, when that is an earlier point of the curve
    (a plan whose curve gained a point past its old last one), kept as that point's snapshot."""
    manifest = folder / "bundle" / "manifest.json"
    if not manifest.exists():
        return
    trained = json.loads(manifest.read_text())["training"]["steps"]
    if trained < steps and not (snapshot_folder(folder, trained) / "weights.safetensors").exists():
        copy_bundle(folder / "bundle", snapshot_folder(folder, trained))


def resolved_config(plan: Plan, setting: Setting, seed: int) -> dict:
    """What a seed of the setting trains, as its bundle's manifest records it, at the curve's last point."""
    config = run_config(plan, setting, seed, setting.steps[-1])
    return to_dict(at_training_scale(config, Path(setting.data or plan.data)))


# Beside each run: the config it started training with (see record_start).
STARTED_WITH = "started-with.json"
# Beside a run whose figures were carried from the plan's summary without a bundle: the config it trained.
CARRIED = "carried.json"
# Keys a kept run may differ in: the steps along a curve, and settings that change only how fast it trains.
UNCOMPARED = {"train.steps", "train.num_workers", "train.channels_last", "train.compile", "train.optimizer_kernels"}


def check_trained_as_planned(plan: Plan, setting: Setting, seed: int, folder: Path) -> bool:
    """A run kept from an earlier invocation must have been trained with the config the plan resolves to now.
    A plan builds on a shipped config, which moves: without this check a resumed curve, or a table of kept
    figures, would mix two recipes under one setting's name. A field an older manifest lacks is new since and
    stands at its default there, which the plan must resolve to as well. False when the run has no manifest
    left to check (figures kept without their bundle; carried ones are checked against the config recorded
    with them, as a summary records it, without the seed)."""
    recorded = trained_config(folder)
    if recorded is not None:
        check_same_config(plan, setting, recorded, str(folder), seed)
        return True
    if (folder / CARRIED).exists():  # figures without a bundle, but with the config they were trained with
        carried = json.loads((folder / CARRIED).read_text())
        check_same_config(plan, setting, carried["config"], str(folder), advice=carried_advice(carried["summary"]))
    return False


def carried_advice(summary: Path | str) -> str:
    return f"the figures were carried from {summary}: move it and these runs aside, or name another --out"


def check_same_config(
    plan: Plan,
    setting: Setting,
    recorded: dict,
    where: str,
    seed: int | None = None,
    advice: str = "spell the setting's values out in the plan, or move the old runs aside",
) -> None:
    """Refuse a recorded config that differs from what the setting resolves to now (at `seed`; without one,
    the seed is not compared: a summary records its settings' configs at the plan's first seed)."""
    trained = flat(to_dict(recorded_config(plan.method, recorded)))
    planned = flat(resolved_config(plan, setting, plan.seeds[0] if seed is None else seed))
    skipped = UNCOMPARED if seed is not None else UNCOMPARED | {"train.seed"}
    moved = sorted(key for key in (trained.keys() | planned.keys()) - skipped if trained.get(key) != planned.get(key))
    if moved:
        changes = "; ".join(f"{key} {trained.get(key)!r} then, {planned.get(key)!r} now" for key in moved)
        raise PlanError(f"{where}: trained with another config than the plan resolves to now ({changes}); {advice}")


def trained_config(folder: Path) -> dict | None:
    """The config a kept run was trained with: its bundle's manifest, or, for a run cut before its first bundle
    was written (a checkpoint alone), the config recorded when it started."""
    manifest = folder / "bundle" / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())["config"]
    # Without a checkpoint nothing was trained (refused, or stopped before its first checkpoint): it starts afresh.
    started = folder / STARTED_WITH
    checkpoints = list((folder / "bundle" / "checkpoint").rglob(CHECKPOINT_NAME))
    return json.loads(started.read_text()) if started.exists() and checkpoints else None


def unchecked_runs(plan: Plan, root: Path) -> list[str]:
    """Every kept run of the plan checked against what the plan resolves to now, before anything is trained,
    shipped or scored again; the runs that have figures but no manifest left to check, as SETTING/seedK."""
    unchecked = []
    for setting in plan.settings:
        for seed in plan.seeds:
            folder = root / setting.name / f"seed{seed}"
            if not check_trained_as_planned(plan, setting, seed, folder) and (folder / "figures.json").exists():
                unchecked.append(f"{setting.name}/seed{seed}")
    return unchecked


def flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as {"section.key": value}, lists and tuples alike."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def setting_at(plan: Plan, name: str, steps: int | None) -> tuple[Setting, int]:
    """The plan's setting `name` and a point of its curve (default: its last step count)."""
    setting = next((s for s in plan.settings if s.name == name), None)
    if setting is None:
        raise PlanError(f"the plan {plan.name} has no setting {name!r}")
    return setting, setting.steps[-1] if steps is None else steps


def bundle_at(folder: Path, setting: Setting, steps: int) -> Path:
    """A seed's bundle at `steps`: the run's own at its last step count, else the snapshot kept on the way."""
    return folder / "bundle" if steps == setting.steps[-1] else snapshot_folder(folder, steps)


def snapshot_folder(folder: Path, steps: int) -> Path:
    """Where a curve keeps its bundle as it was at `steps` (the run itself trains on past it)."""
    return folder / f"bundle@{steps}"


def copy_bundle(bundle: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for file in ("manifest.json", "weights.safetensors"):
        shutil.copy2(bundle / file, to / file)


def retrain_snapshot(plan: Plan, setting: Setting, row: dict, to: Path, by: str, device: torch.device) -> dict:
    """A seed's bundle that was not kept (a step count its run trained past before runs kept their snapshots,
    or a run carried from the summary without its bundle): trained again from scratch to `to` and scored on
    val again. The seeded run must give the figure recorded for it, or it would not be the run the table
    reports; on another kind of machine, or for a curve's point reached by resuming under a decaying rate,
    it may not, and is refused."""
    config = run_config(plan, setting, row["seed"], row["steps"])
    fit_method(config, Path(setting.data or plan.data), to, device, show_progress=False)
    again = val_figures(to, Path(plan.data), device)
    if abs(again[by] - row[by]) > REPRODUCED_WITHIN:
        shutil.rmtree(to)
        raise PlanError(
            f"{setting.name} seed {row['seed']}@{row['steps']}: trained again, val {by} {again[by]:.4f} "
            f"against the recorded {row[by]:.4f}; the run did not reproduce, so it is not shipped (recorded on "
            f"{machine_kind(row.get('machine', {}))}, trained again on {machine_kind(machine(device))})"
        )
    return {"recorded": row[by], "retrained": again[by]}


def machine_kind(info: dict) -> str:
    """What decides whether a seeded run reproduces: the GPU, or the CPU kernels torch picked."""
    return info.get("gpu") or f"the CPU with {info.get('cpu_capability')} kernels"


def summary(plan: Plan, rows: list[dict], device: torch.device, unchecked: list[str]) -> dict:
    settings = {}
    for setting in plan.settings:
        for steps in setting.steps:
            mine = [r for r in rows if r["setting"] == setting.name and r["steps"] == steps]
            if not mine:
                continue
            label = setting.name if len(setting.steps) == 1 else f"{setting.name}@{steps}"
            settings[label] = {"about": setting.about, **setting_row(steps, mine)}
    return {
        "plan": plan.name,
        "method": plan.method,
        "config": plan.config,
        "data": plan.data,
        "split": "val",
        "overrides": plan.overrides,
        "settings_overrides": {s.name: {"overrides": s.overrides, "data": s.data} for s in plan.settings},
        # What each setting trained, whatever the shipped config it builds on says later (seed: the first's).
        "settings_config": {s.name: resolved_config(plan, s, plan.seeds[0]) for s in plan.settings},
        # Figures kept without their bundle (carried from the summary, or the bundle removed): no manifest checked.
        "runs_without_manifest": unchecked,
        "machine": machine(device),
        "settings": settings,
        "runs": rows,
    }


def setting_row(steps: int, rows: list[dict]) -> dict:
    """The seeds' mean ± sd of every figure at one point of a setting's curve."""
    return {
        "steps": steps,
        "seeds": [row["seed"] for row in rows],
        **{key: mean_sd([row[key] for row in rows]) for key in FIGURES},
    }


def mean_sd(values: list[float | None]) -> list[float] | None:
    """[mean, sample sd] over the seeds (sd 0 for one seed); None when a figure is undefined."""
    if any(v is None for v in values):
        return None
    return [float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0]


def table(report: dict) -> str:
    heads = ["setting", "steps", "seeds", *FIGURES]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for label, row in report["settings"].items():
        cells = [f"`{label}`", f"{row['steps']:,}", str(len(row["seeds"]))]
        cells += ["—" if row[key] is None else f"{row[key][0]:.3f} ± {row[key][1]:.3f}" for key in FIGURES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", nargs="?", help="the plan's TOML")
    parser.add_argument("--only", action="append", default=[], help="run only this setting (repeatable)")
    parser.add_argument("--runs", default="runs/ablations", help="where the runs' bundles go")
    parser.add_argument("--out", help="the summary JSON (default: beside the plan, PLAN.json)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--table-of", help="print the table of a summary JSON and stop")
    parser.add_argument("--ship", metavar="SETTING", help="copy the setting's best seed on val to --to, and stop")
    parser.add_argument("--to", help="the folder --ship writes the bundle to (replaced)")
    parser.add_argument("--by", default="pixel_ap_lesion", choices=FIGURES, help="the val figure --ship picks on")
    parser.add_argument("--rescore", metavar="SETTING", help="score the setting's seeds again with --read-out")
    parser.add_argument("--read-out", type=json.loads, help="--rescore's inference settings, as JSON overrides")
    parser.add_argument(
        "--label",
        help="--rescore's name for the read-out (folders and the summary JSON); with --ship, ship that read-out",
    )
    parser.add_argument("--steps", type=int, help="--ship or --rescore at this point of the curve (default: its last)")
    args = parser.parse_args(argv)
    if args.table_of:
        print(table(json.loads(Path(args.table_of).read_text())))
        return 0
    if not args.plan:
        parser.error("name a plan, or --table-of a summary")
    try:
        plan = read_plan(Path(args.plan))
    except PlanError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    unknown = set(args.only) - {s.name for s in plan.settings}
    if unknown:
        print(f"ablate: {args.plan} has no setting {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    root = Path(args.runs) / plan.name
    out = Path(args.out) if args.out else Path(args.plan).with_suffix(".json")
    try:
        carried = carry_from_summary(plan, out, root)
        unchecked_runs(plan, root)
    except PlanError as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    if carried:
        print(f"ablate: carried from {out}, without their bundles: {', '.join(carried)}", file=sys.stderr)
    if args.ship:
        if not args.to:
            parser.error("--ship needs --to FOLDER")
        try:
            device = pick_device(args.device)
            if args.label:
                picked = ship_read_out(plan, args.ship, args.label, root, Path(args.to), args.by, args.steps)
            else:
                picked = ship_best_seed(plan, args.ship, root, Path(args.to), args.by, device, args.steps)
        except PlanError as exc:
            print(f"ablate: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(picked, indent=1))
        return 0
    if args.rescore:
        if not (args.read_out and args.label):
            parser.error("--rescore needs --read-out JSON and --label NAME")
        try:
            report = rescore(plan, args.rescore, args.steps, args.read_out, args.label, root, pick_device(args.device))
        except PlanError as exc:
            print(f"ablate: {exc}", file=sys.stderr)
            return 2
        out = Path(args.plan).with_name(f"{Path(args.plan).stem}.{args.label}.json")
        out.write_text(json.dumps(report, indent=1, default=str))
        print(table(report))
        return 0
    device = pick_device(args.device)
    for setting in plan.settings:
        for seed in plan.seeds:
            if args.only and setting.name not in args.only:
                continue
            run_setting(plan, setting, seed, root, device)
            # After every seed: a plan cut short, or longer than a session, keeps what it finished.
            write_summary(plan, root, device, out)
    print(table(write_summary(plan, root, device, out)))
    return 0


def write_summary(plan: Plan, root: Path, device: torch.device, out: Path) -> dict:
    """The summary of every run of the plan kept under `root`, written to `out`."""
    rows = [row for setting in plan.settings for seed in plan.seeds for row in previous_rows(root, setting, seed)]
    report = summary(plan, rows, device, unchecked_runs(plan, root))
    out.write_text(json.dumps(report, indent=1, default=str))
    return report


def carry_from_summary(plan: Plan, out: Path, root: Path) -> list[str]:
    """The figures of runs the summary `out` holds and `root` does not (runs/ is not kept between checkouts),
    written back as those runs' figures.json beside a record of the config they trained (CARRIED), so that
    they are not trained again; as SETTING/seedK. A summary of another plan or split, or a setting whose
    recorded config differs from what the plan resolves to now, is refused, as a kept run would be."""
    if not out.exists():
        return []
    report = json.loads(out.read_text())
    check_same_plan(plan, report, out)
    carried = []
    for setting in plan.settings:
        for seed in plan.seeds:
            rows = [r for r in report["runs"] if r["setting"] == setting.name and r["seed"] == seed]
            if rows and carry_run(plan, setting, seed, rows, report, out, root):
                carried.append(f"{setting.name}/seed{seed}")
    return carried


def check_same_plan(plan: Plan, report: dict, out: Path) -> None:
    """Refuse a summary written for another plan, or scored on another split than the plan names now."""
    if report.get("plan") != plan.name or report.get("data") != plan.data:
        raise PlanError(
            f"{out}: the summary of plan {report.get('plan')!r} on {report.get('data')}, not of {plan.name!r} on "
            f"{plan.data}; move it aside, or name another --out"
        )
    for setting in plan.settings:
        recorded = report.get("settings_overrides", {}).get(setting.name)
        if recorded is not None and recorded.get("data") != setting.data:
            raise PlanError(
                f"{out}: {setting.name} trained on {recorded.get('data')}, the plan names {setting.data} now; "
                "move the summary aside, or name another --out"
            )


def carry_run(plan: Plan, setting: Setting, seed: int, rows: list[dict], report: dict, out: Path, root: Path) -> bool:
    """One seed's rows of the summary written back where runs/ has none; False where it has its own."""
    folder = root / setting.name / f"seed{seed}"
    figures_file = folder / "figures.json"
    if figures_file.exists():
        kept = {row["steps"] for row in json.loads(figures_file.read_text())}
        missing = sorted({row["steps"] for row in rows} & set(setting.steps) - kept)
        if missing:
            raise PlanError(
                f"{figures_file}: lacks the steps {missing} that {out} holds for this run; the summary would lose "
                "them when written again: move one of them aside"
            )
        return False
    recorded = report.get("settings_config", {}).get(setting.name)
    if recorded is None:
        # Training them again would write the summary over its rows after the first seed.
        raise PlanError(
            f"{out}: holds runs of {setting.name} but not the config they trained (it predates settings_config), "
            "so they cannot be carried; name another --out to train the plan again beside it"
        )
    check_same_config(plan, setting, recorded, f"{out}, {setting.name}", advice=carried_advice(out))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CARRIED).write_text(json.dumps({"summary": str(out), "config": recorded}, indent=1))
    figures_file.write_text(json.dumps(rows, indent=1))
    return True


def ship_best_seed(
    plan: Plan, name: str, root: Path, to: Path, by: str, device: torch.device, steps: int | None = None
) -> dict:
    """The shipping rule of #35: of a setting's seeds, the one best on the whole val split by `by`, at
    `steps` (default: the setting's last step count), copied to `to`; its manifest records the pick and the
    seeds' mean ± sd. With the plan's `ship_read_out`, the copy reads out with those settings and is
    recalibrated on val."""
    setting, steps = setting_at(plan, name, steps)
    if steps not in setting.steps:
        raise PlanError(f"{name} was scored at {setting.steps} steps, not {steps}")
    rows = [row for seed in plan.seeds for row in previous_rows(root, setting, seed) if row["steps"] == steps]
    if len(rows) < 3 or len(rows) < len(plan.seeds):
        raise PlanError(f"{name}@{steps}: {len(rows)} of {len(plan.seeds)} seeds scored; ship from 3 or more")
    best = max(rows, key=lambda row: row[by])
    source = bundle_at(root / setting.name / f"seed{best['seed']}", setting, steps)
    retrained = None
    if not (source / "weights.safetensors").exists():
        why = (
            "the run's bundle was not kept; its figures were carried from the plan's summary"
            if (source.parent / CARRIED).exists()
            else "the run had trained past these steps before runs kept snapshots"
        )
        retrained = {"why": why, **retrain_snapshot(plan, setting, best, source, by, device)}
    trained = load_bundle(source)
    if trained.manifest["training"]["steps"] != steps:
        raise PlanError(f"{source}: trained to {trained.manifest['training']['steps']} steps, not {steps}")
    selection = picked(plan, setting, steps, rows, best, f"best of {len(rows)} seeds by val {by}")
    if retrained:
        selection["retrained"] = retrained
    if to.exists():
        shutil.rmtree(to)
    copy_bundle(source, to)
    shipped = load_bundle(to)
    if plan.ship_read_out:
        selection["read_out"] = {
            "overrides": plan.ship_read_out,
            "why": "the seeds were scored on val with the plan's cheaper read-out; the shipped bundle reads out "
            "with these settings and its thresholds were recalibrated on val with them",
        }
        shipped = with_read_out(shipped, plan.ship_read_out, Path(plan.data), device)
    update_manifest(shipped, selection=selection)
    return selection


def picked(plan: Plan, setting: Setting, steps: int, rows: list[dict], best: dict, rule: str) -> dict:
    """A shipped bundle's `selection`: the rule, the seed picked, and the seeds' val mean ± sd per figure."""
    return {
        "rule": rule,
        "plan": plan.name,
        "setting": setting.name,
        "steps": steps,
        "seeds": [row["seed"] for row in rows],
        "picked_seed": best["seed"],
        "n_val_images": best["n_val_images"],
        "n_val_lesion_images": best["n_val_lesion_images"],
        "val": {key: {"seeds": mean_sd([row[key] for row in rows]), "picked": best[key]} for key in FIGURES},
    }


def ship_read_out(plan: Plan, name: str, label: str, root: Path, to: Path, by: str, steps: int | None) -> dict:
    """The setting's best seed on val under the read-out `--rescore` scored as `label`, as that read-out's
    bundle (already read out and recalibrated on val), copied to `to`: the pick is made on the figures of the
    read-out that ships. Its manifest records the pick, the settings that read-out changed, and the seeds'
    mean ± sd under both read-outs."""
    setting, steps = setting_at(plan, name, steps)
    if plan.ship_read_out:
        raise PlanError(f"{plan.name} has a ship_read_out, which would read the {label} read-out out again")
    folders = {seed: root / setting.name / f"seed{seed}" / f"read-out-{label}@{steps}" for seed in plan.seeds}
    rows = [json.loads(f.read_text()) for f in (folder / "figures.json" for folder in folders.values()) if f.exists()]
    if len(rows) < 3 or len(rows) < len(plan.seeds):
        raise PlanError(
            f"{name}/{label}@{steps}: {len(rows)} of {len(plan.seeds)} seeds read out; run --rescore first, ship from 3"
        )
    as_trained = [row for seed in plan.seeds for row in previous_rows(root, setting, seed) if row["steps"] == steps]
    best = max(rows, key=lambda row: row[by])
    source = folders[best["seed"]] / "bundle"
    trained_as = bundle_at(root / setting.name / f"seed{best['seed']}", setting, steps)
    if not (trained_as / "manifest.json").exists():
        raise PlanError(f"{trained_as}: the run the {label} read-out was made from is gone; nothing to compare it with")
    trained, read_out = json.loads((trained_as / "manifest.json").read_text()), load_bundle(source).manifest
    if read_out["weights_sha256"] != trained["weights_sha256"]:
        raise PlanError(f"{source}: other weights than {trained_as} (trained again since?); run --rescore again")
    # Both at today's fields: one the older manifest lacks stands at its default, not as a change.
    before = flat(to_dict(recorded_config(plan.method, trained["config"])))
    after = flat(to_dict(recorded_config(plan.method, read_out["config"])))
    selection = picked(plan, setting, steps, rows, best, f"best of {len(rows)} seeds by val {by}, read out as {label}")
    selection["read_out"] = {
        "label": label,
        "changed": {
            key: after.get(key) for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)
        },
        "why": "the seeds' networks were read out again this way (bench/ablate.py --rescore), recalibrated on val "
        "and picked on val under it",
        "val_as_trained": {key: mean_sd([row[key] for row in as_trained]) for key in FIGURES},
    }
    if to.exists():
        shutil.rmtree(to)
    copy_bundle(source, to)
    update_manifest(load_bundle(to), selection=selection)
    return selection


def rescore(plan: Plan, name: str, steps: int | None, read_out: dict, label: str, root: Path, device) -> dict:
    """A setting's seeds at `steps` (default: its last), each bundle copied, read out with `read_out` (the
    config's inference settings, recalibrated on val) and scored on the whole val split again: the same
    trained networks under two read-outs, paired seed by seed. Trains nothing."""
    setting, steps = setting_at(plan, name, steps)
    rows = []
    for seed in plan.seeds:
        folder = root / setting.name / f"seed{seed}"
        [recorded] = [row for row in previous_rows(root, setting, seed) if row["steps"] == steps] or [None]
        source = bundle_at(folder, setting, steps)
        if recorded is not None and (folder / CARRIED).exists() and not (source / "weights.safetensors").exists():
            raise PlanError(
                f"{name} seed {seed}@{steps}: its figures were carried from the summary without the bundle; "
                "--ship trains the picked seed again, or move the summary aside to train them all"
            )
        if recorded is None or not (source / "weights.safetensors").exists():
            raise PlanError(f"{name} seed {seed}@{steps}: no scored bundle to read out again; run the plan first")
        rows.append(recorded)
        rows.append(rescored_row(plan, recorded, source, folder / f"read-out-{label}@{steps}", read_out, label, device))
    settings = {
        f"{setting_label}@{steps}": setting_row(steps, mine)
        for setting_label, mine in ((setting.name, rows[0::2]), (f"{setting.name}/{label}", rows[1::2]))
    }
    return {
        "plan": plan.name,
        "method": plan.method,
        "data": plan.data,
        "split": "val",
        "read_out": read_out,
        "machine": machine(device),
        "settings": settings,
        "runs": rows,
    }


def rescored_row(plan: Plan, recorded: dict, source: Path, folder: Path, read_out: dict, label: str, device) -> dict:
    figures_file = folder / "figures.json"
    if figures_file.exists():
        return json.loads(figures_file.read_text())
    copy_bundle(source, folder / "bundle")
    with_read_out(load_bundle(folder / "bundle"), read_out, Path(plan.data), device)
    row = {**{key: recorded[key] for key in ("seed", "steps")}, "setting": f"{recorded['setting']}/{label}"}
    row["machine"] = machine(device)
    row.update(val_figures(folder / "bundle", Path(plan.data), device))
    figures_file.write_text(json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)
    return row


def with_read_out(bundle: ModelBundle, read_out: dict, data: Path, device: torch.device) -> ModelBundle:
    """The bundle with its config's inference settings changed by `read_out`, then recalibrated on `data`'s
    val split (thresholds depend on the read-out)."""
    config = build_config(recorded_config(bundle.method, bundle.manifest["config"]), None, read_out)
    bundle = update_manifest(bundle, config=to_dict(config))
    return calibrate(bundle, data, device, config.calibration.max_validation_images)


def recorded_config(method: str, recorded: dict):
    """A manifest's config as the method's config, the fields it lacks (newer than the bundle) at their defaults."""
    return build_config(registry().get(method).defaults(), None, recorded)


def previous_rows(root: Path, setting: Setting, seed: int) -> list[dict]:
    figures_file = root / setting.name / f"seed{seed}" / "figures.json"
    rows = json.loads(figures_file.read_text()) if figures_file.exists() else []
    return [row for row in rows if row["steps"] in setting.steps]


if __name__ == "__main__":
    sys.exit(main())
