"""`anomascope prepare`: a dataset in the MVTec-AD layout from the shared public data."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from anomascope.engine.methods import Registry

HELP = "build a dataset in the MVTec-AD layout from the shared public data"
DESCRIPTION = (
    "Writes train/good, val/..., test/good, test/<kind>, ground_truth/<kind>/<name>_mask.png "
    "and split.json (seed, grouping, counts, files). Deterministic for a seed."
)


def cmd_prepare(args: argparse.Namespace) -> int:
    from anomascope.engine.datasets import prepare

    split = prepare(
        args.dataset,
        Path(args.source),
        Path(args.out),
        seed=args.seed,
        limit=args.limit,
        crop_size=args.crop_size,
        crops_per_image=args.crops_per_image,
        overwrite=args.overwrite,
        tumour_margin=args.tumour_margin,
        normalise=args.normalise,
        val_fraction=args.val_fraction,
    )
    print(json.dumps({"dataset": args.dataset, "out": str(args.out), "counts": split["counts"]}))
    return 0


def default_data_source() -> str:
    return os.environ.get("ANOMASCOPE_DATA_SOURCE", str(Path("..") / "shared" / "data"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("prepare", help=HELP, description=DESCRIPTION)
    p.add_argument("dataset", choices=["ham10000", "hands", "brain-mri", "chest-xray", "lgg"])
    p.add_argument(
        "--source",
        default=default_data_source(),
        help="folder holding the shared data sets (default: $ANOMASCOPE_DATA_SOURCE or ../shared/data); "
        "for lgg also the lgg-flair folder itself",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only this many groups (lesions, subjects, patients)")
    p.add_argument("--crop-size", type=int, default=64, help="ham10000: side of the lesion-free training crops (px)")
    p.add_argument("--crops-per-image", type=int, default=4, help="ham10000: at most this many crops per image")
    p.add_argument(
        "--tumour-margin",
        type=int,
        default=1,
        help="lgg: leave out of training every tumour-free slice within this many slices of a tumour slice "
        "(default 1: its neighbours); val and test are the same for every margin",
    )
    p.add_argument(
        "--normalise",
        choices=["none", "patient"],
        default="none",
        help="lgg: 'patient' z-scores each patient's slices with one mean and sd over the whole volume's brain "
        "(default 'none': the slices as published)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the groups (patients, lesions, subjects) in val, taken from train (default 0.1: "
        "70/10/20); test keeps the same groups for every share, so test figures stay comparable",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(run=cmd_prepare)
