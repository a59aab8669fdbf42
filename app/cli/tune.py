"""`anomascope tune`: a site threshold proposed from a site's own cases with masks, stored as a preset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anomascope.app.cli.common import (
    add_db_argument,
    add_device_argument,
    add_precision_argument,
    add_readout_argument,
    output_folder,
)
from anomascope.engine.methods import Registry

HELP = "propose a site threshold from your own cases with masks, and store it as a preset"
DESCRIPTION = (
    "Scores every image of DIR (a prepared split's test images, or a folder where each image X has "
    "X_mask.png beside it; an all-black mask marks a normal image), then writes OUT/tuning.json (criterion, "
    "proposed threshold, mean Dice, sensitivity and false-positive rate against the threshold with grouped "
    "bootstrap bands, the cases) and OUT/tuning.html, and stores the threshold as the next version of preset "
    "NAME for the bundle unless --dry-run."
)

# What --criterion takes: the rule that picks the threshold (engine.tuning.Criterion).
CRITERIA = (
    "dice (max mean Dice), sensitivity=S (highest threshold keeping mean sensitivity S) or fpr=F "
    "(lowest threshold keeping the false-positive rate on normal images at F)"
)


def cmd_tune(args: argparse.Namespace) -> int:
    import getpass

    from anomascope.app.tuning import provenance, tune, write_tuning
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.data import at_split_scale, masked_images
    from anomascope.engine.methods import make_predictor
    from anomascope.engine.training import pick_device
    from anomascope.engine.tuning import Criterion
    from anomascope.storage import Database, save_preset

    criterion = Criterion.parse(args.criterion)
    out = output_folder(args.out)
    db = None if args.dry_run else Database(args.db)  # an unusable database stops here, before scoring
    predictor = make_predictor(load_bundle(Path(args.bundle)), pick_device(args.device), args.method, args.precision)
    predictor = at_split_scale(predictor, Path(args.data))
    tuning = tune(predictor, masked_images(Path(args.data)), criterion, args.bootstrap, args.seed)
    preset = None
    if db is not None:
        saved = save_preset(
            db,
            bundle_id=predictor.bundle.id,
            name=args.name,
            value=tuning.threshold,
            provenance=provenance(tuning),
            actor=f"cli:{getpass.getuser()}",
            readout=predictor.name,
            criterion=str(criterion),
            figure=tuning.figure,
            n_cases=tuning.n_cases,
        )
        preset = {"name": saved.name, "version": saved.version, "id": saved.id}
    write_tuning(out, tuning, preset)
    print(
        json.dumps(
            {
                "threshold": tuning.threshold,
                "criterion": str(criterion),
                "figure": tuning.figure,
                "n_cases": tuning.n_cases,
                "preset": preset,
            }
        )
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("tune", help=HELP, description=DESCRIPTION)
    p.add_argument("--bundle", required=True)
    add_readout_argument(p, methods)
    p.add_argument("--data", required=True, help="a prepared split, or a folder of images with X_mask.png beside them")
    p.add_argument("--criterion", required=True, help=CRITERIA)
    p.add_argument("--name", required=True, help="the preset's name, e.g. 'site A screening'")
    p.add_argument("--out", required=True)
    add_db_argument(p)
    p.add_argument("--dry-run", action="store_true", help="write the outputs, store no preset")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the bands (of whole groups)")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    add_precision_argument(p)
    p.set_defaults(run=cmd_tune)
