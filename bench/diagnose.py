"""The diagnosis of issue #35: map bundles scored as they are on a prepared split's test lesion cases; each
case's own figure, the best, median and worst cases of each learned read-out as pictures (image, truth
outline, map, restoration where the method makes one, the first reference's map, the image's regions), and
where every map's top 1 % of pixels lie (engine/diagnosis.py), per method as mean ± sd over the cases.

    python bench/diagnose.py --data PREPARED/lgg --bundle assets/models/lgg-ppii --bundle assets/models/lgg-cddpm \\
        --reference assets/models/lgg-median-distance --reference assets/models/lgg-flair-zscore \\
        --case-metric pixel_ap --dark-level 0.04 --out docs/experiments --summary bench/diagnosis/lgg.json

Prints the table of docs/experiments.md (again from the JSON alone: --table-of bench/diagnosis/lgg.json);
docs/experiments.md gives the command behind each figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from anomascope.app.inference_outputs import display_range
from anomascope.engine.bundle import load_bundle
from anomascope.engine.data import at_split_scale, describe_dataset
from anomascope.engine.diagnosis import (
    CASE_METRICS,
    REGIONS,
    area_shares,
    case_figures,
    image_regions,
    mean_sd,
    top_pixel_shares,
)
from anomascope.engine.display import apply_window, overlay_heatmap, unit_to_rgb
from anomascope.engine.evaluation import TestImage, best_median_worst, evaluate, load_test_split
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods import make_predictor
from anomascope.engine.preprocess import window_to_unit
from anomascope.engine.training import pick_device

TRUTH_COLOUR = (0, 255, 255)
REGION_COLOURS = {"lesion": (0, 255, 255), "background": (40, 60, 200), "edge": (255, 140, 0), "tissue": (90, 90, 90)}
LABEL_HEIGHT = 14
PANEL_SIDE = 256


def lesion_cases(data: Path, max_images: int | None, seed: int) -> list[TestImage]:
    """The test lesion cases of the benchmark's sample (`max_images`, `seed`, drawn as `eval` draws it)."""
    return [image for image in load_test_split(data, "test", max_images, seed) if image.mask is not None]


def predictors(paths: list[str], data: Path) -> list[tuple[str, object]]:
    """(name as `eval` names it, predictor) for every read-out of each bundle, at the split's scale, on the
    CPU in float32 (how the benchmarks were scored)."""
    device, out = pick_device("cpu"), []
    for path in paths:
        bundle = load_bundle(Path(path))
        for readout in bundle.manifest.get("readouts", [bundle.method]):
            out.append((f"{Path(path).name}:{readout}", at_split_scale(make_predictor(bundle, device, readout), data)))
    return out


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's border, 2 px wide so that it shows at 1:1."""
    return mask & ~ndimage.binary_erosion(mask, iterations=2)


def with_truth(rgb: np.ndarray, truth: np.ndarray) -> np.ndarray:
    shown = rgb.copy()
    shown[outline(truth)] = TRUTH_COLOUR
    return shown


def map_panel(base: np.ndarray, predictor, heatmap: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The map over the image in the review page's colour range, with the truth outline."""
    return with_truth(overlay_heatmap(base, heatmap, *display_range(predictor, heatmap)), truth)


def regions_panel(base: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    colours = np.zeros_like(base)
    for name, region in regions.items():
        colours[region] = REGION_COLOURS[name]
    return (0.5 * base + 0.5 * colours + 0.5).astype(np.uint8)


def picture(panels: list[tuple[str, np.ndarray]]) -> Image.Image:
    """The panels side by side, each under its label; images smaller than PANEL_SIDE (LGG's 128 px slices)
    are enlarged by a whole factor, pixels kept sharp, so that a small lesion's outline can be seen."""
    height, width = panels[0][1].shape[:2]
    zoom = max(1, PANEL_SIDE // max(height, width))
    height, width = height * zoom, width * zoom
    sheet = Image.new("RGB", (width * len(panels), height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, rgb) in enumerate(panels):
        draw.text((k * width + 3, 1), label, fill="black")
        sheet.paste(Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST), (k * width, LABEL_HEIGHT))
    return sheet


def case_picture(item: TestImage, scored: dict, name: str, reference: str, regions: dict, index: int) -> Image.Image:
    case = load_case(item.path)
    base = apply_window(case.pixels[0], *case.window)
    predictor, maps = scored[name]["predictor"], scored[name]["maps"]
    panels = [
        ("image", base),
        ("truth", with_truth(base, item.mask)),
        (f"{_readout(name)} map", map_panel(base, predictor, maps[index], item.mask)),
    ]
    # Scored again for its restoration, which evaluate does not keep; the map drawn is evaluate's.
    restoration = score_case(predictor, case).restoration
    if restoration is not None:
        panels.append(("restoration", unit_to_rgb(restoration[0])))
    panels.append(
        (
            f"{_readout(reference)} map",
            map_panel(base, scored[reference]["predictor"], scored[reference]["maps"][index], item.mask),
        )
    )
    panels.append(("regions", regions_panel(base, regions)))
    return picture(panels)


def score(predictor, name: str, cases: list[TestImage], regions: list[dict], metric: str) -> dict:
    """The read-out's maps of the cases (kept for the pictures), its pooled figures as `eval` gives them (a
    check against docs/benchmarks.md), and each case's own figure, Dice and top 1 % shares."""
    evaluation = evaluate(predictor, cases, name, "cpu", bootstrap=0)
    figures = case_figures(evaluation.heatmaps, [item.mask for item in cases], metric)
    shares = [top_pixel_shares(h, r) for h, r in zip(evaluation.heatmaps, regions, strict=True)]
    return {
        "predictor": predictor,
        "maps": evaluation.heatmaps,
        "pooled_pixel_ap": evaluation.metrics["pixel_ap"],
        "pooled_pixel_auroc": evaluation.metrics["pixel_auroc"],
        "top_1pct_shares": mean_sd(shares),
        "cases": [
            {"file": item.path.name, metric: f, "dice": d, "top_1pct_shares": s}
            for item, f, d, s in zip(cases, figures, evaluation.per_image_dice, shares, strict=True)
        ],
    }


def draw_picks(scored: dict, name: str, reference: str, cases, regions, metric: str, out: Path) -> dict:
    """The read-out's best, median and worst cases by their own figure, each drawn to a PNG in `out`."""
    picks = {}
    for which, index in best_median_worst([case[metric] for case in scored[name]["cases"]]).items():
        file = f"{name.replace(':', '-')}-{which}.png"
        case_picture(cases[index], scored, name, reference, regions[index], index).save(out / file, optimize=True)
        picks[which] = {**scored[name]["cases"][index], "picture": file}
    return picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a prepared split (anomascope prepare ... --seed 0)")
    parser.add_argument("--bundle", action="append", default=[], help="a learned bundle; repeat for several")
    parser.add_argument("--reference", action="append", help="a reference bundle; the first is pictured")
    parser.add_argument("--case-metric", choices=sorted(CASE_METRICS))
    parser.add_argument("--max-images", type=int, help="the benchmark's seeded sample of the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dark-level", type=float, default=0.2, help="background: no channel brighter than this")
    parser.add_argument("--edge-px", type=int, default=4, help="edge: within this many pixels of background or frame")
    parser.add_argument("--out", help="folder for the pictures")
    parser.add_argument("--summary", help="JSON file for the figures")
    parser.add_argument(
        "--table-of", metavar="SUMMARY", help="print the table of a summary written before; score nothing"
    )
    args = parser.parse_args()
    if args.table_of:
        print(markdown_rows(json.loads(Path(args.table_of).read_text())))
        return
    missing = [
        f"--{o.replace('_', '-')}"
        for o in ("data", "reference", "case_metric", "out", "summary")
        if not getattr(args, o)
    ]
    if missing:
        parser.error(f"to score, give {', '.join(missing)}")

    data, out = Path(args.data), Path(args.out)
    dataset = describe_dataset(data).get("dataset", data.name)
    cases = lesion_cases(data, args.max_images, args.seed)
    learned = predictors(args.bundle, data)
    references = predictors(args.reference, data)
    regions = [
        image_regions(window_to_unit(*_pixels(item)), item.mask, args.dark_level, args.edge_px) for item in cases
    ]
    scored = {
        name: score(predictor, name, cases, regions, args.case_metric) for name, predictor in learned + references
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, _ in learned:
        scored[name]["picks"] = draw_picks(scored, name, references[0][0], cases, regions, args.case_metric, out)
    report = {
        "dataset": dataset,
        "command": vars(args),
        "n_cases": len(cases),
        "area_shares": mean_sd([area_shares(r) for r in regions]),
        "methods": {
            name: {k: v for k, v in result.items() if k not in ("predictor", "maps")} for name, result in scored.items()
        },
    }
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(args.summary).write_text(json.dumps(report, indent=1))
    print(markdown_rows(report))


def _readout(name: str) -> str:
    """The read-out of an `eval` name (bundle:read-out): short enough to label a panel."""
    return name.split(":")[-1]


def _pixels(item: TestImage) -> tuple[np.ndarray, tuple[float, float]]:
    case = load_case(item.path)
    return case.pixels[0], case.window


def markdown_rows(report: dict) -> str:
    """One row per method: its cases' median own figure, on how many cases the pictured reference's own figure
    is higher, how many have none of their top 1 % in the lesion, and the mean ± sd share of the top 1 % in
    each region; last, each region's share of the image."""
    metric = report["command"]["case_metric"]
    reference = next(n for n in report["methods"] if n.startswith(Path(report["command"]["reference"][0]).name + ":"))
    theirs = [case[metric] for case in report["methods"][reference]["cases"]]

    def cells(shares: dict) -> str:
        return " | ".join(f"{shares[r][0]:.2f} ± {shares[r][1]:.2f}" for r in REGIONS)

    rows = [
        f"| method | median per-case {metric} | cases where `{_readout(reference)}` is higher "
        f"| top 1 % wholly outside the lesion | {' | '.join(REGIONS)} |",
        "|---" * (len(REGIONS) + 4) + "|",
    ]
    for name, result in report["methods"].items():
        cases = result["cases"]
        median = float(np.median([case[metric] for case in cases]))
        beaten = sum(t > case[metric] for t, case in zip(theirs, cases, strict=True))
        missed = sum(case["top_1pct_shares"]["lesion"] == 0 for case in cases)
        rows.append(
            f"| `{name}` | {median:.3f} | {beaten} of {len(cases)} | {missed} of {len(cases)} "
            f"| {cells(result['top_1pct_shares'])} |"
        )
    rows.append(f"| share of the image | | | | {cells(report['area_shares'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
