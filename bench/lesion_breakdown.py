"""Where a map method's pooled figure comes from (issue #35): map bundles scored on a prepared split's lesion
cases (val by default: a recipe is chosen there, never on test), with pixel AP pooled over each third of the
cases by lesion area and over each group (patient), beside the whole; with --mean-of-bundles also the mean
of the bundles' maps (a seed ensemble, meaningful for seeds of one recipe, whose maps share a scale;
references are scored beside it, not in it). The pixel AP pools the lesion cases' pixels alone, as `eval
--anomalous-only` does (the LGG tumour-slice protocol). Each bundle is scored by its own read-out.

    python bench/lesion_breakdown.py --data prepared/lgg-val20 \\
        --bundle runs/ablations/lgg-ppii-64-val20/standardise+bright-half/seed1/bundle \\
        --reference assets/models/lgg-median-distance --out bench/diagnosis/lgg-val20-by-size.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from anomascope.engine import metrics
from anomascope.engine.bundle import load_bundle
from anomascope.engine.data import at_split_scale
from anomascope.engine.diagnosis import pooled_by, size_thirds
from anomascope.engine.evaluation import evaluate, load_test_split
from anomascope.engine.methods import make_predictor
from anomascope.engine.training import pick_device

THIRDS = ("smallest third", "middle third", "largest third")
ENSEMBLE = "mean of the bundles' maps"


def lesion_maps(path: str, data: Path, cases) -> list[np.ndarray]:
    """The bundle's own read-out's maps of the cases, at the split's scale, on the CPU in float32."""
    predictor = at_split_scale(make_predictor(load_bundle(Path(path)), pick_device("cpu")), data)
    maps = evaluate(predictor, cases, path, "cpu", bootstrap=0).heatmaps
    if len(maps) != len(cases):
        raise SystemExit(f"{path}: its read-out makes no pixel map, so it has no pixel AP to break down")
    return maps


def breakdown(maps: list[np.ndarray], truths: list[np.ndarray], groups: list[str]) -> dict:
    pooled_scores = np.concatenate([h.ravel() for h in maps])
    pooled_truth = np.concatenate([t.ravel() for t in truths])
    thirds = pooled_by(maps, truths, size_thirds(truths), "pixel_ap")
    return {
        "pixel_ap": metrics.average_precision(pooled_scores, pooled_truth),
        "max_dice": metrics.best_dice(pooled_scores, pooled_truth),
        "pixel_ap_by_size": {THIRDS[k]: {"cases": n, "pixel_ap": ap} for k, (n, ap) in thirds.items()},
        "pixel_ap_by_group": {
            g: {"cases": n, "pixel_ap": ap} for g, (n, ap) in pooled_by(maps, truths, groups, "pixel_ap").items()
        },
    }


def table(report: dict) -> str:
    names = list(report["methods"])
    rows = ["| cases | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    first = report["methods"][names[0]]
    rows.append(
        f"| all {report['n_cases']} | " + " | ".join(figure(report["methods"][n]["pixel_ap"]) for n in names) + " |"
    )
    for third in first["pixel_ap_by_size"]:
        cells = [figure(report["methods"][n]["pixel_ap_by_size"][third]["pixel_ap"]) for n in names]
        rows.append(f"| {third} ({first['pixel_ap_by_size'][third]['cases']}) | " + " | ".join(cells) + " |")
    cells = [group_range(report["methods"][n]["pixel_ap_by_group"]) for n in names]
    rows.append(
        f"| each of {len(first['pixel_ap_by_group'])} groups: lowest / median / highest | " + " | ".join(cells) + " |"
    )
    return "\n".join(rows)


def figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def group_range(by_group: dict) -> str:
    values = sorted(v["pixel_ap"] for v in by_group.values() if v["pixel_ap"] is not None)
    if not values:
        return "—"
    return f"{values[0]:.2f} / {float(np.median(values)):.2f} / {values[-1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a prepared split (anomascope prepare ...)")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--bundle", action="append", required=True, help="a map bundle; repeat for several")
    parser.add_argument("--reference", action="append", default=[], help="a reference bundle, not in the mean")
    parser.add_argument(
        "--mean-of-bundles", action="store_true", help="also score the mean of the bundles' maps (seeds of one recipe)"
    )
    parser.add_argument("--out", required=True, help="JSON file for the figures")
    args = parser.parse_args()
    data = Path(args.data)
    if len(set(args.bundle + args.reference)) < len(args.bundle + args.reference):
        parser.error("a bundle is named twice; each --bundle and --reference must be a different folder")
    cases = [case for case in load_test_split(data, args.split) if case.mask is not None]
    if not cases:
        parser.error(f"{data}: its {args.split} split has no lesion cases (images with a mask) to score")
    truths, groups = [case.mask for case in cases], [case.group for case in cases]
    maps = {path: lesion_maps(path, data, cases) for path in args.bundle}
    if args.mean_of_bundles:
        maps[ENSEMBLE] = [np.mean(stack, axis=0) for stack in zip(*maps.values(), strict=True)]
    maps.update({path: lesion_maps(path, data, cases) for path in args.reference})
    report = {
        "command": vars(args),
        "split": args.split,
        "n_cases": len(cases),
        "methods": {name: breakdown(m, truths, groups) for name, m in maps.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
