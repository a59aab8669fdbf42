"""`anomascope eval`: bundles and training-free baselines evaluated on a prepared split: metrics.json and
report.html."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anomascope.app.cli.common import (
    CommandError,
    add_device_argument,
    add_precision_argument,
    add_threshold_arguments,
    output_folder,
)
from anomascope.engine.methods import Registry

HELP = "evaluate bundles (and training-free baselines) on a prepared test split"
DESCRIPTION = (
    "Writes DIR/metrics.json (per method: pixel_auroc, pixel_ap, max_dice, dice, iou, "
    "image_auroc, image_ap, froc_10fp, each with _std from a grouped bootstrap, plus "
    "threshold and its method, n_images, seconds_per_image, device, precision; with seed_spread, the mean ± "
    "sd of each figure over the bundles that differ only in their training seed) and DIR/report.html "
    "(unless --no-report)."
)


def cmd_eval(args: argparse.Namespace) -> int:
    from anomascope.app.cli.thresholds import resolve_threshold
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.data import at_split_scale, describe_dataset, validation_sample
    from anomascope.engine.evaluation import evaluate, load_test_split, seed_spread
    from anomascope.engine.fit import calibrate_predictor
    from anomascope.engine.methods import make_predictor, reference_bundle
    from anomascope.engine.methods.base import Predictor
    from anomascope.engine.training import pick_device

    if not args.bundle and not args.baseline:
        raise CommandError("name at least one --bundle or --baseline to evaluate")
    out = output_folder(args.out)
    render_report = report_renderer(args.no_report)
    device = pick_device(args.device)
    data = Path(args.data)
    images = load_test_split(data, args.split, args.max_images, args.seed)
    if args.anomalous_only:
        images = [image for image in images if image.kind != "good"]
    if not images:
        raise CommandError(
            f"{data}: no {args.split} images (expected a prepared split's {args.split}/good and {args.split}/<kind>,"
            " or images with X_mask.png beside each)"
        )
    if args.baseline and not (data / "val").is_dir():
        raise CommandError(
            f"{data}: a training-free reference is calibrated on a prepared split's val images, which this folder"
            " lacks; calibrate one on your split with `anomascope train --method NAME` and pass it as --bundle"
        )
    predictors: list[tuple[str, Predictor, str | None]] = []  # a baseline has no bundle id
    manifests = {}
    for path, label in zip(args.bundle, bundle_labels(args.bundle), strict=True):
        bundle = load_bundle(Path(path))
        for readout in bundle.manifest.get("readouts", [bundle.method]):
            predictor = at_split_scale(make_predictor(bundle, device, readout, args.precision), data)
            predictors.append((f"{label}:{readout}", predictor, bundle.id))
            manifests[f"{label}:{readout}"] = bundle.manifest
    for name in args.baseline:
        # Calibrated here like a trained bundle is when trained: its config's sample size, FPR target and k.
        reference = reference_bundle(name)
        baseline = make_predictor(reference, device, name, args.precision)
        settings = reference.manifest["config"]["calibration"]
        normals, anomalous = validation_sample(data, settings["max_validation_images"])
        calibration = calibrate_predictor(
            baseline, normals, anomalous, settings["target_fpr"], baseline.settings["k_sigma"]
        )
        reference.manifest["calibration"][name] = calibration.to_manifest()
        predictors.append((name, baseline, None))
    evaluations = []
    for name, predictor, bundle_id in predictors:
        threshold = (
            resolve_threshold(args.threshold, predictor.calibration, bundle_id, args.db) if args.threshold else None
        )
        evaluations.append(
            evaluate(
                predictor, images, name, str(device), bootstrap=args.bootstrap, seed=args.seed, threshold=threshold
            )
        )
        print(
            json.dumps({"method": name, **{k: v for k, v in evaluations[-1].metrics.items() if not k.endswith("_std")}})
        )
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "data": describe_dataset(data),
        "split": args.split,
        "seed": args.seed,
        "max_images": args.max_images,
        "images": f"anomalous {args.split} images only" if args.anomalous_only else f"all {args.split} images",
        "results": {e.name: e.metrics for e in evaluations},
    }
    spread = seed_spread([(e.name, manifests[e.name], e.metrics) for e in evaluations if e.name in manifests])
    if spread:
        report["seed_spread"] = spread
        for group in spread:
            print(json.dumps(group))
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    if render_report is not None:
        (out / "report.html").write_text(render_report(evaluations, images, f"Anomascope evaluation: {data.name}"))
    return 0


def bundle_labels(paths: list[str]) -> list[str]:
    """Each bundle's name in eval's results: its folder's name, or the path as given where two folders share
    a name (the seeds of one config, such as runs/seed0/bundle and runs/seed1/bundle)."""
    names = [Path(path).name for path in paths]
    return [name if names.count(name) == 1 else Path(path).as_posix() for name, path in zip(names, paths, strict=True)]


def report_renderer(no_report: bool):
    """eval's report.html writer, or None with --no-report. Imported before any image is scored, so that a
    machine without plotly (the lent GPU machine's image) says so at once rather than after the scoring."""
    if no_report:
        return None
    try:
        from anomascope.app.cli.report import render_report
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "plotly":
            raise
        raise CommandError(
            "report.html needs plotly, which is not installed; pass --no-report to write metrics.json alone"
        ) from exc
    return render_report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("eval", help=HELP, description=DESCRIPTION)
    p.add_argument("--bundle", action="append", default=[], help="a model bundle; repeat to compare several")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=methods.references,
        help="a training-free reference, calibrated on the val split",
    )
    p.add_argument("--data", required=True, help="prepared dataset folder")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="the prepared split's images to score (default test; val to choose among bundles without looking "
        "at test, as bench/device/campaign.sh does)",
    )
    p.add_argument("--max-images", type=int, help="evaluate a seeded random sample of this many test images")
    p.add_argument(
        "--anomalous-only",
        action="store_true",
        help="pool only the images with an anomaly (the LGG tumour-slices protocol); pixel metrics only",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the standard deviations")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument("--no-report", action="store_true", help="write metrics.json alone (report.html needs plotly)")
    add_threshold_arguments(p, "Dice and IoU at this threshold instead of the calibrated max-F1 (or target-FPR) one: ")
    p.set_defaults(run=cmd_eval)
