"""`anomascope export`: saved annotations as tables, masks, DICOM Segmentations or Parametric Maps."""

from __future__ import annotations

import argparse
import json

from anomascope.app.cli.common import CommandError, add_db_argument, output_folder
from anomascope.engine.methods import Registry

HELP = "export saved annotations: CSV/JSON tables, PNG or NIfTI masks, DICOM Segmentations"
DESCRIPTION = (
    "csv/json: one row per annotation version with case, run, model, threshold and "
    "provenance. png: one mask per slice. nifti: one mask volume per annotation, aligned "
    "to the source geometry. dicom-seg: one DICOM Segmentation per annotation version of a DICOM case, "
    "referring to its source series, with the reader and the method; annotations of photos and NIfTI "
    "volumes are listed with the reason in dicom-seg-not-exported.csv. dicom-pm: the anomaly map of each run "
    "those annotations came from, as a DICOM Parametric Map (float32, real-world value mapping) on the same "
    "geometry, made again by the installed bundle that made the run (bundles from assets/models and "
    "ANOMASCOPE_MODELS)."
)


def cmd_export(args: argparse.Namespace) -> int:
    import datetime as dt

    from anomascope.app.export import export
    from anomascope.storage import Database

    since = None
    if args.since:
        try:
            since = dt.datetime.fromisoformat(args.since)
        except ValueError as exc:
            raise CommandError(f"--since {args.since!r} is not a date (use YYYY-MM-DD or an ISO time)") from exc
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
    out = output_folder(args.out)
    heatmap = None
    if args.format == "dicom-pm":
        from anomascope.app.bundles import discover, model_dirs
        from anomascope.app.dicom_export import rescored
        from anomascope.engine.training import pick_device

        heatmap = rescored(discover(model_dirs()), pick_device(args.device))
    paths = export(Database(args.db), out, args.format, since=since, author=args.author, heatmap=heatmap)
    print(json.dumps({"format": args.format, "out": str(args.out), "files": len(paths)}))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("export", help=HELP, description=DESCRIPTION)
    add_db_argument(p)
    p.add_argument("--format", required=True, choices=["csv", "json", "png", "nifti", "dicom-seg", "dicom-pm"])
    p.add_argument("--device", help="dicom-pm: cpu or cuda, where the maps are made again (default: cuda if any)")
    p.add_argument("--out", required=True)
    p.add_argument("--since", help="only annotations saved on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--author", help="only annotations by this reader")
    p.set_defaults(run=cmd_export)
