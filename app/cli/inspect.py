"""`anomascope inspect`: one JSON object describing an image, DICOM file/series or NIfTI volume."""

from __future__ import annotations

import argparse
import json

from anomascope.engine.methods import Registry

HELP = "print one JSON object describing an image, DICOM file/series or NIfTI volume"
DESCRIPTION = "Print format, modality, shape [slices, channels, H, W], spacing (mm) and window."


def cmd_inspect(args: argparse.Namespace) -> int:
    from anomascope.engine.io import load_case

    case = load_case(args.file)
    print(json.dumps(case.summary()))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("inspect", help=HELP, description=DESCRIPTION)
    p.add_argument("file", help="PNG/JPEG, DICOM file, folder or zip of one DICOM series, or .nii/.nii.gz")
    p.set_defaults(run=cmd_inspect)
