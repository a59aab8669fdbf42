"""The `anomascope` command line: inspect | prepare | serve (more commands join as they are built)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2, no traceback."""


def cmd_inspect(args: argparse.Namespace) -> int:
    from engine.io import load_case

    case = load_case(args.file)
    print(json.dumps(case.summary()))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from engine.datasets import prepare

    split = prepare(args.dataset, Path(args.source), Path(args.out), seed=args.seed, limit=args.limit,
                    crop_size=args.crop_size, crops_per_image=args.crops_per_image, overwrite=args.overwrite)
    print(json.dumps({"dataset": args.dataset, "out": str(args.out), "counts": split["counts"]}))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from app.ui import build_app

    demo = build_app()
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True)
    return 0


def default_data_source() -> str:
    return os.environ.get("ANOMASCOPE_DATA_SOURCE", str(Path("..") / "shared" / "data"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomascope",
        description="Review unsupervised anomaly maps in medical images. Errors on bad input exit with code 2.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="print one JSON object describing an image, DICOM file/series or NIfTI volume",
                       description="Print format, modality, shape [slices, channels, H, W], spacing (mm) and window.")
    p.add_argument("file", help="PNG/JPEG, DICOM file, folder or zip of one DICOM series, or .nii/.nii.gz")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("prepare", help="build a dataset in the MVTec-AD layout from the shared public data",
                       description="Writes train/good, val/..., test/good, test/<kind>, ground_truth/<kind>/<name>_mask.png "
                                   "and split.json (seed, grouping, counts, files). Deterministic for a seed.")
    p.add_argument("dataset", choices=["ham10000", "hands", "brain-mri", "chest-xray"])
    p.add_argument("--source", default=default_data_source(),
                   help="folder holding the shared data sets (default: $ANOMASCOPE_DATA_SOURCE or ../shared/data)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only this many groups (lesions, subjects, patients)")
    p.add_argument("--crop-size", type=int, default=64, help="ham10000: side of the lesion-free training crops (px)")
    p.add_argument("--crops-per-image", type=int, default=4, help="ham10000: at most this many crops per image")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(run=cmd_prepare)

    p = sub.add_parser("serve", help="start the review app in the browser")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(run=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    from engine.datasets import PrepareError
    from engine.io import ImageReadError

    try:
        return args.run(args)
    except (ImageReadError, PrepareError, CommandError) as exc:
        print(f"anomascope {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
