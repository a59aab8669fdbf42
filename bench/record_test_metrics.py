"""Write the test metrics kept in bench/eval into the shipped bundles' manifests (run on demand, after
re-evaluating a shipped bundle and copying its metrics.json into bench/eval).

    python bench/record_test_metrics.py bench/eval/*.json

Each manifest's `test_metrics[dataset][read-out]` gets the float32 result of that read-out, with the
split, seed and sample size it was measured on; a run that pooled only some test images (`eval
--anomalous-only`) goes under `test_metrics["dataset (which images)"]`. Bundles that are not in
assets/models are skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anomascope.engine.bundle import load_bundle, update_manifest

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
ALL_IMAGES = "all test images"  # what `eval` records as `images` when it pools every test image


def shipped_results(report: dict):
    """(bundle folder, read-out, result) for each float32 result of a shipped bundle in an eval report."""
    for name, result in report["results"].items():
        if ":" not in name or result.get("precision", "fp32") != "fp32":
            continue
        folder, readout = name.split(":", 1)
        if (MODELS / folder / "manifest.json").exists():
            yield MODELS / folder, readout, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reports", nargs="+", help="metrics.json files of anomascope eval runs")
    args = parser.parse_args()
    for path in args.reports:
        report = json.loads(Path(path).read_text())
        dataset = report["data"].get("dataset")
        if report.get("images", ALL_IMAGES) != ALL_IMAGES:  # another protocol (e.g. tumour slices only)
            dataset = f"{dataset} ({report['images']})"
        for folder, readout, result in shipped_results(report):
            bundle = load_bundle(folder)
            metrics = dict(bundle.manifest.get("test_metrics", {}))
            metrics[dataset] = {
                **metrics.get(dataset, {}),
                readout: {
                    **result,
                    "split": report["split"],
                    "seed": report["seed"],
                    "max_images": report["max_images"],
                },
            }
            update_manifest(bundle, test_metrics=metrics)
            print(f"{folder.name}: test_metrics[{dataset}][{readout}] from {path}")


if __name__ == "__main__":
    main()
