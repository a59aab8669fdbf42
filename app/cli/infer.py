"""`anomascope infer`: images, series and volumes scored with a trained bundle, in shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anomascope.app.cli.common import (
    EXIT_BAD_INPUT,
    CommandError,
    add_device_argument,
    add_precision_argument,
    add_readout_argument,
    add_threshold_arguments,
    output_folder,
)
from anomascope.engine.methods import Registry

HELP = "score images with a trained bundle"
DESCRIPTION = (
    "Per input writes <stem>.json (image_score, seconds, method, bundle id, shapes, "
    "the source's path), "
    "<stem>_heatmap.npy (slices, H, W) on the original pixel grid, <stem>_overlay.png and "
    "<stem>_restoration.png where the method makes one, <stem>_uncertainty.npy where it estimates one "
    "(ppii's MC-dropout spread). Two inputs with one stem get <stem>-<8 hex digits of the path>, so "
    "no input's outputs overwrite another's. OUT/results/csv/shard-I-of-N.csv and "
    "OUT/results/parquet/shard-I-of-N.parquet hold one row per "
    "input (file, status, score, seconds, outputs, error); a restarted run skips the inputs its table "
    "says are done. Unreadable files are a row with their error and a line on stderr; "
    "the others are still scored, and the exit code is then 2."
)


def cmd_infer(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState
    from tqdm import tqdm

    from anomascope.app.cli.batch_inference import ArchiveError, ResultsTable, Shard, assign_stems, gather_inputs
    from anomascope.app.cli.thresholds import resolve_threshold
    from anomascope.app.inference_outputs import real_path, write_outputs
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.inference import NonFiniteResultError, score_case
    from anomascope.engine.io import ImageReadError, load_case
    from anomascope.engine.io.case import printable
    from anomascope.engine.methods import make_predictor
    from anomascope.engine.preprocess import InputMismatchError
    from anomascope.engine.training import pick_device

    out = output_folder(args.out)
    try:
        inputs = gather_inputs(args.files, Path(args.list) if args.list else None)
        shard = Shard.parse(args.shard) if args.shard else Shard()
    except ArchiveError as exc:
        raise CommandError(str(exc)) from exc
    # Under `accelerate launch` each process takes its part of the shard; alone, the process is the shard.
    processes = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    shard = shard.within(processes.num_processes, processes.process_index)
    device = pick_device(args.device)  # under a launcher: this process's own GPU
    predictor = make_predictor(load_bundle(Path(args.bundle)), device, args.method, args.precision)
    threshold = (
        resolve_threshold(args.threshold, predictor.calibration, predictor.bundle.id, args.db)
        if args.threshold
        else None
    )
    stems = assign_stems(out, inputs)
    settings = {
        "bundle_id": predictor.bundle.id,
        "method": predictor.name,
        "precision": args.precision,
        "threshold": args.threshold,
    }
    table = ResultsTable(out, shard, settings)
    mine = [path for path in shard.take(inputs) if real_path(path) not in table.done]
    failures = 0
    for path in tqdm(mine, desc=f"infer {shard.name}", unit="input", disable=None):
        try:
            case = load_case(path)
            result = score_case(predictor, case)
            summary = write_outputs(out, path, stems[path], case, result, predictor, str(device), threshold)
        except (ImageReadError, InputMismatchError, NonFiniteResultError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one input's unforeseen failure must not stop the others
            error = f"{printable(path.name)}: failed ({type(exc).__name__}: {exc})"
        else:
            table.add(path, stems[path], summary)
            print(json.dumps({key: summary[key] for key in ("file", "stem", "image_score", "seconds")}))
            continue
        print(f"anomascope infer: {error}", file=sys.stderr)
        table.add(path, stems[path], error=error)
        failures += 1
    table.write_parquet()
    processes.wait_for_everyone()  # a launcher stops every process once one exits with an error
    if failures:
        print(f"anomascope infer: {failures} of {len(mine)} inputs failed (reported above)", file=sys.stderr)
    return EXIT_BAD_INPUT if failures else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("infer", help=HELP, description=DESCRIPTION)
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", required=True)
    add_readout_argument(p, methods)
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "files",
        nargs="*",
        help="any input `inspect` reads (volumes are scored slice by slice), or a folder of many: a folder whose "
        "first file is DICOM is one series, any other is walked for the images and series it holds",
    )
    p.add_argument("--list", metavar="FILE", help="a text file naming one input a line (# starts a comment)")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="score only shard I of N (from 0), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; shards may "
        "share --out. Under `accelerate launch` the processes split the shard again",
    )
    add_threshold_arguments(p, "also write each input's mask at this threshold: ")
    p.set_defaults(run=cmd_infer)
