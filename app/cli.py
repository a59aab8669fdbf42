"""The `anomascope` command line: inspect | prepare | train | infer | eval | tune | serve | export | users."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from anomascope.engine.config import PRECISIONS
from anomascope.engine.methods import Method, Registry, registry

EXIT_BAD_INPUT = 2
THRESHOLD_CHOICES = (
    "a number, a calibrated threshold (max_f1, target_fpr, k_sigma) or a site preset stored by `anomascope tune` "
    "(its newest version, from --db)"
)


class CommandError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2, no traceback."""


def cmd_inspect(args: argparse.Namespace) -> int:
    from anomascope.engine.io import load_case

    case = load_case(args.file)
    print(json.dumps(case.summary()))
    return 0


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
    )
    print(json.dumps({"dataset": args.dataset, "out": str(args.out), "counts": split["counts"]}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from anomascope.engine.config import build_config
    from anomascope.engine.distributed import is_main_process, launched
    from anomascope.engine.fit import fit_method
    from anomascope.engine.training import pick_device

    method = registry().get(args.method)
    overrides, options = method_option_values(args, method, registry())
    if args.steps is not None:
        overrides.setdefault("train", {}).update(steps=args.steps, epochs=None)
    if args.seed is not None:
        overrides.setdefault("train", {})["seed"] = args.seed
    if args.seconds is not None:
        overrides.setdefault("train", {})["max_seconds"] = args.seconds
    if "train" in overrides and getattr(method.defaults(), "train", None) is None:
        raise CommandError(f"--steps, --seconds and --seed apply to methods that train; {args.method} trains nothing")
    if args.image_size is not None:
        overrides["preprocess"] = {"image_size": args.image_size}
    config = build_config(method.defaults(), args.config, dict(overrides, method=args.method))
    out = Path(args.out)
    if (out / "manifest.json").exists() and not args.overwrite:
        raise CommandError(f"{out} already holds a bundle; pass --overwrite to replace it")
    if args.processes > 1 and not launched():
        check_processes(args, config)
        return relaunched(args.processes, args.argv)
    if (out / "checkpoint" / "checkpoint.pt").exists() and is_main_process():
        print(f"resuming from the checkpoint in {out / 'checkpoint'}", file=sys.stderr)
    bundle = fit_method(
        config,
        Path(args.data),
        out,
        pick_device(args.device),
        show_progress=not args.quiet,
        keep_checkpoint=args.keep_checkpoint,
        half_weights=args.half_weights,
        options=options,
    )
    if bundle is None:  # another training process: the main one writes the bundle and reports it
        return 0
    print(
        json.dumps(
            {
                "bundle": str(out),
                "id": bundle.id,
                "method": bundle.method,
                "validation_metrics": bundle.manifest.get("validation_metrics"),
            }
        )
    )
    return 0


def check_processes(args: argparse.Namespace, config) -> None:
    """What would make every one of the --processes fail: said once, before any is started."""
    from anomascope.engine.data import list_images
    from anomascope.engine.training import check_settings

    training = getattr(config, "train", None)  # a training-free method's config has no train section
    if training is not None:
        check_settings(training)
    batch = training.batch_size if training is not None else None
    if batch is not None and batch % args.processes:
        raise CommandError(
            f"--processes {args.processes}: the global batch size {batch} must be a multiple of the process count"
        )
    if not list_images(Path(args.data) / "train" / "good"):
        raise CommandError(f"{args.data}: no training images in train/good (prepare the data first)")
    gpus = torch_gpu_count()
    if args.device != "cpu" and gpus and args.processes > gpus:
        raise CommandError(f"--processes {args.processes}: this machine has {gpus} GPU(s), one per process")


def torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def relaunched(processes: int, argv: list[str]) -> int:
    """This `train` command again as `processes` data-parallel processes on this machine, under torch's
    launcher (what `accelerate launch` uses); its exit code. On the CPU the cores are shared among them."""
    again = [arg for k, arg in enumerate(argv) if not _is_processes_option(argv, k)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run([*launcher, "-m", "anomascope.app.cli", *again], env=env, check=False).returncode


def _is_processes_option(argv: list[str], k: int) -> bool:
    """Whether argv[k] is --processes, its value, or --processes=N."""
    return argv[k] == "--processes" or argv[k].startswith("--processes=") or (k > 0 and argv[k - 1] == "--processes")


def method_option_values(args: argparse.Namespace, method: Method, methods: Registry) -> tuple[dict, dict]:
    """The method's own options as config overrides (nested dict) and plan inputs; an option of
    another method, or a required one left out, is a one-sentence error."""
    for other in methods.methods.values():
        for option in other.options:
            if other is not method and getattr(args, option.name, None) is not None and option not in method.options:
                owners = [m.name for m in methods.methods.values() if option in m.options]
                raise CommandError(f"{option.flag} applies to --method {' or '.join(owners)} only")
    overrides: dict = {}
    inputs: dict = {}
    for option in method.options:
        value = getattr(args, option.name)
        if value is None:
            if option.required:
                raise CommandError(f"{option.flag} {option.metavar or 'VALUE'} is required for --method {method.name}")
            continue
        if not option.config_key:
            inputs[option.name] = value
            continue
        section = overrides
        for key in option.config_key[:-1]:
            section = section.setdefault(key, {})
        section[option.config_key[-1]] = value
    return overrides, inputs


def cmd_infer(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState
    from tqdm import tqdm

    from anomascope.app.batch_inference import ArchiveError, ResultsTable, Shard, assign_stems, gather_inputs
    from anomascope.app.inference_outputs import real_path, write_outputs
    from anomascope.app.thresholds import resolve_threshold
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.inference import NonFiniteResultError, score_case
    from anomascope.engine.io import ImageReadError, load_case
    from anomascope.engine.io.case import printable
    from anomascope.engine.methods import make_predictor
    from anomascope.engine.preprocess import InputMismatchError
    from anomascope.engine.training import pick_device

    out = _output_folder(args.out)
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


def cmd_eval(args: argparse.Namespace) -> int:
    from anomascope.app.thresholds import resolve_threshold
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.data import at_split_scale, describe_dataset, validation_sample
    from anomascope.engine.evaluation import evaluate, load_test_split, seed_spread
    from anomascope.engine.fit import calibrate_predictor
    from anomascope.engine.methods import make_predictor, reference_bundle
    from anomascope.engine.training import pick_device

    if not args.bundle and not args.baseline:
        raise CommandError("name at least one --bundle or --baseline to evaluate")
    out = _output_folder(args.out)
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
    predictors, manifests = [], {}
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
        from anomascope.app.report import render_report
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "plotly":
            raise
        raise CommandError(
            "report.html needs plotly, which is not installed; pass --no-report to write metrics.json alone"
        ) from exc
    return render_report


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
    out = _output_folder(args.out)
    heatmap = None
    if args.format == "dicom-pm":
        from anomascope.app.bundles import discover, model_dirs
        from anomascope.app.dicom_export import rescored
        from anomascope.engine.training import pick_device

        heatmap = rescored(discover(model_dirs()), pick_device(args.device))
    paths = export(Database(args.db), out, args.format, since=since, author=args.author, heatmap=heatmap)
    print(json.dumps({"format": args.format, "out": str(args.out), "files": len(paths)}))
    return 0


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
    out = _output_folder(args.out)
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


def _output_folder(name: str) -> Path:
    out = Path(name)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is an existing file; give a folder")
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from anomascope.app.signin import SignInPolicy
    from anomascope.app.ui import default_review_app, serve
    from anomascope.engine.io import ReadLimits
    from anomascope.storage import accounts_at, default_url

    ReadLimits.from_env()  # a bad limit is one sentence here, not an error on every upload
    try:
        SignInPolicy.from_env()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    # Asked before anything is written: a refused start leaves no database and no data folder behind.
    if not is_loopback(args.host) and not args.insecure and not accounts_at(default_url(create_folder=False)):
        raise CommandError(
            f"--host {args.host} would let anyone on the network read and save every annotation "
            "without signing in: add reader accounts first (anomascope users add NAME), or pass "
            "--insecure"
        )
    serve(default_review_app(pacs=pacs_of(args.dicomweb)), args.host, args.port, args.concurrency)
    return 0


def pacs_of(url: str | None):
    """The PACS that --dicomweb or ANOMASCOPE_DICOMWEB_URL names, its credentials from the environment;
    one that does not answer now is reported and the page starts anyway (the PACS may come back)."""
    from anomascope.app.pacs import Pacs, PacsError

    pacs = None
    try:
        pacs = Pacs.from_environment(url)
        if pacs is not None:
            pacs.studies(limit=1)
    except PacsError as exc:
        if pacs is None:
            raise CommandError(str(exc)) from exc
        print(f"warning: {exc}; the page starts, and its PACS search says so until the PACS answers", file=sys.stderr)
    return pacs


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_users(args: argparse.Namespace) -> int:
    import getpass

    from anomascope.storage import Database, add_user, disable_user, list_users, unlock_user

    if args.action != "list" and not args.name:
        raise CommandError(f"users {args.action} needs the reader's name")
    db = Database(args.db)
    actor = f"cli:{getpass.getuser()}"
    if args.action == "add":
        user = add_user(db, args.name, _new_password(args.password_stdin), actor)
        print(json.dumps({"added": user.name}))
    elif args.action == "disable":
        print(json.dumps({"disabled": disable_user(db, args.name, actor).name}))
    elif args.action == "unlock":
        print(json.dumps({"unlocked": unlock_user(db, args.name, actor).name}))
    else:
        for user in list_users(db):
            print(
                json.dumps(
                    {
                        "name": user.name,
                        "active": user.active,
                        "locked": user.locked,
                        "failed_sign_ins": user.failed_sign_ins,
                        "created": user.created.isoformat(),
                    }
                )
            )
    return 0


def _new_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ; nothing was saved")
    return first


def default_data_source() -> str:
    return os.environ.get("ANOMASCOPE_DATA_SOURCE", str(Path("..") / "shared" / "data"))


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="what the networks run in; maps and scores stay float32 (default auto: bf16 on CUDA, "
        "fp32 on the CPU); recorded in the outputs",
    )


def add_db_argument(parser: argparse.ArgumentParser, purpose: str = "") -> None:
    parser.add_argument(
        "--db",
        default=None,
        help=f"database URL{purpose} (default: $DATABASE_URL or SQLite in $ANOMASCOPE_DATA_DIR, ./data)",
    )


def add_method_options(parser: argparse.ArgumentParser, methods: Registry) -> None:
    """Each method's own options, declared by the method; --help says which method each is for."""
    for method in methods.methods.values():
        for option in method.options:
            parser.add_argument(
                option.flag,
                dest=option.name,
                type=option.type,
                metavar=option.metavar,
                help=f"{method.name}{' (required)' if option.required else ''}: {option.help}",
            )


def unavailable_methods(methods: Registry) -> str:
    """The epilog naming installed method plugins that failed to load, and why."""
    if not methods.unavailable:
        return ""
    return "unavailable methods: " + "; ".join(f"{name} ({why})" for name, why in methods.unavailable.items())


def package_version() -> str:
    """The installed package's version; for a tree run uninstalled (bench/device/setup.sh links its folders
    under the package's name on the lent GPU machine), pyproject.toml's beside them."""
    try:
        return metadata.version("anomascope")
    except metadata.PackageNotFoundError:
        from anomascope.engine.config import load_toml

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        if not pyproject.is_file():
            return "unknown (not installed)"
        return f"{load_toml(pyproject)['project']['version']} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    methods = registry()
    parser = argparse.ArgumentParser(
        prog="anomascope",
        description="Review unsupervised anomaly maps in medical images. Errors on bad input exit with code 2.",
    )
    parser.add_argument("--version", action="version", version=f"anomascope {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "inspect",
        help="print one JSON object describing an image, DICOM file/series or NIfTI volume",
        description="Print format, modality, shape [slices, channels, H, W], spacing (mm) and window.",
    )
    p.add_argument("file", help="PNG/JPEG, DICOM file, folder or zip of one DICOM series, or .nii/.nii.gz")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser(
        "prepare",
        help="build a dataset in the MVTec-AD layout from the shared public data",
        description="Writes train/good, val/..., test/good, test/<kind>, ground_truth/<kind>/<name>_mask.png "
        "and split.json (seed, grouping, counts, files). Deterministic for a seed.",
    )
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
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(run=cmd_prepare)

    p = sub.add_parser(
        "train",
        help="train a method on normal images (DIR/train/good) and write a model bundle",
        description="Writes BUNDLE/manifest.json (full config, data description and hash, preprocessing, "
        "calibration, validation metrics) and BUNDLE/weights.safetensors. An interrupted run "
        "resumes from BUNDLE/checkpoint when started again.",
        epilog=unavailable_methods(methods),
    )
    p.add_argument("--method", required=True, choices=methods.listed)
    p.add_argument("--data", required=True, help="prepared dataset folder (MVTec layout with val/ for calibration)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--config", help="TOML file overriding the paper defaults (same keys as the manifest's config)")
    p.add_argument("--steps", type=int, help="training steps (overrides the config)")
    p.add_argument("--seed", type=int, help="the training's random seed (overrides the config's train.seed)")
    p.add_argument(
        "--seconds",
        type=float,
        help="stop each network's training after this many seconds (counted across resumes), then calibrate and "
        "write the bundle, which records the steps done (train.max_seconds)",
    )
    p.add_argument("--image-size", type=int, help="training resolution in px (overrides the config)")
    add_method_options(p, methods)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep BUNDLE/checkpoint after training")
    p.add_argument("--half-weights", action="store_true", help="store weights as float16 (half the size; for shipping)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="train data-parallel in N processes on this machine (one per GPU, or sharing the CPU cores), "
        "through torch's launcher; the global batch stays the config's batch_size (a multiple of N). For "
        "several machines run `accelerate launch` or `torchrun` yourself (docs/scale.md)",
    )
    p.set_defaults(run=cmd_train)

    p = sub.add_parser(
        "infer",
        help="score images with a trained bundle",
        description="Per input writes <stem>.json (image_score, seconds, method, bundle id, shapes, "
        "the source's path), "
        "<stem>_heatmap.npy (slices, H, W) on the original pixel grid, <stem>_overlay.png and "
        "<stem>_restoration.png where the method makes one, <stem>_uncertainty.npy where it estimates one "
        "(ppii's MC-dropout spread). Two inputs with one stem get <stem>-<8 hex digits of the path>, so "
        "no input's outputs overwrite another's. OUT/results/csv/shard-I-of-N.csv and "
        "OUT/results/parquet/shard-I-of-N.parquet hold one row per "
        "input (file, status, score, seconds, outputs, error); a restarted run skips the inputs its table "
        "says are done. Unreadable files are a row with their error and a line on stderr; "
        "the others are still scored, and the exit code is then 2.",
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--method", choices=methods.listed, help="read-out of a shared denoiser bundle (default: its own)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
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
    p.add_argument(
        "--threshold",
        help="also write each input's mask at this threshold: " + THRESHOLD_CHOICES,
    )
    add_db_argument(p, " holding the site presets")
    p.set_defaults(run=cmd_infer)

    p = sub.add_parser(
        "eval",
        help="evaluate bundles (and training-free baselines) on a prepared test split",
        description="Writes DIR/metrics.json (per method: pixel_auroc, pixel_ap, max_dice, dice, iou, "
        "image_auroc, image_ap, froc_10fp, each with _std from a grouped bootstrap, plus "
        "threshold and its method, n_images, seconds_per_image, device, precision; with seed_spread, the mean ± "
        "sd of each figure over the bundles that differ only in their training seed) and DIR/report.html "
        "(unless --no-report).",
    )
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
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision_argument(p)
    p.add_argument("--no-report", action="store_true", help="write metrics.json alone (report.html needs plotly)")
    p.add_argument(
        "--threshold",
        help="Dice and IoU at this threshold instead of the calibrated max-F1 (or target-FPR) one: "
        + THRESHOLD_CHOICES,
    )
    add_db_argument(p, " holding the site presets")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser(
        "tune",
        help="propose a site threshold from your own cases with masks, and store it as a preset",
        description="Scores every image of DIR (a prepared split's test images, or a folder where each image X has "
        "X_mask.png beside it; an all-black mask marks a normal image), then writes OUT/tuning.json (criterion, "
        "proposed threshold, mean Dice, sensitivity and false-positive rate against the threshold with grouped "
        "bootstrap bands, the cases) and OUT/tuning.html, and stores the threshold as the next version of preset "
        "NAME for the bundle unless --dry-run.",
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--method", choices=methods.listed, help="read-out of a shared denoiser bundle (default: its own)")
    p.add_argument("--data", required=True, help="a prepared split, or a folder of images with X_mask.png beside them")
    p.add_argument(
        "--criterion",
        required=True,
        help="dice (max mean Dice), sensitivity=S (highest threshold keeping mean sensitivity S) or fpr=F "
        "(lowest threshold keeping the false-positive rate on normal images at F)",
    )
    p.add_argument("--name", required=True, help="the preset's name, e.g. 'site A screening'")
    p.add_argument("--out", required=True)
    add_db_argument(p)
    p.add_argument("--dry-run", action="store_true", help="write the outputs, store no preset")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the bands (of whole groups)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    add_precision_argument(p)
    p.set_defaults(run=cmd_tune)

    p = sub.add_parser(
        "export",
        help="export saved annotations: CSV/JSON tables, PNG or NIfTI masks, DICOM Segmentations",
        description="csv/json: one row per annotation version with case, run, model, threshold and "
        "provenance. png: one mask per slice. nifti: one mask volume per annotation, aligned "
        "to the source geometry. dicom-seg: one DICOM Segmentation per annotation version of a DICOM case, "
        "referring to its source series, with the reader and the method; annotations of photos and NIfTI "
        "volumes are listed with the reason in dicom-seg-not-exported.csv. dicom-pm: the anomaly map of each run "
        "those annotations came from, as a DICOM Parametric Map (float32, real-world value mapping) on the same "
        "geometry, made again by the installed bundle that made the run (bundles from assets/models and "
        "ANOMASCOPE_MODELS).",
    )
    add_db_argument(p)
    p.add_argument("--format", required=True, choices=["csv", "json", "png", "nifti", "dicom-seg", "dicom-pm"])
    p.add_argument("--device", help="dicom-pm: cpu or cuda, where the maps are made again (default: cuda if any)")
    p.add_argument("--out", required=True)
    p.add_argument("--since", help="only annotations saved on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--author", help="only annotations by this reader")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser(
        "serve",
        help="start the review app in the browser",
        description="Readers sign in when accounts exist (anomascope users add); without them the page "
        "runs in single-user mode and listens on this machine only, unless --insecure. "
        "Uploads are limited to ANOMASCOPE_MAX_BYTES (default 2 GiB).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="events handled at once, so one slow upload or inference does not block other readers",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without reader accounts (anyone who reaches it can read everything)",
    )
    p.add_argument(
        "--dicomweb",
        metavar="URL",
        help="a PACS's DICOMweb root (QIDO/WADO/STOW-RS, e.g. http://orthanc:8042/dicom-web) to search, open "
        "series from and send Segmentations and Parametric Maps to (default: ANOMASCOPE_DICOMWEB_URL); "
        "credentials only from ANOMASCOPE_DICOMWEB_USER and ANOMASCOPE_DICOMWEB_PASSWORD, or "
        "ANOMASCOPE_DICOMWEB_TOKEN",
    )
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "users",
        help="reader accounts: add, list, disable, unlock",
        description="Passwords are stored as argon2id hashes. Accounts are disabled, never deleted: the "
        "audit trail names their readers. Once one exists, serve asks every reader to sign in. Disabling an "
        "account ends its sessions at once. After ANOMASCOPE_SIGNIN_LOCK_AFTER (default 10) failed sign-ins "
        "in a row an account is locked until unlocked here.",
    )
    p.add_argument("action", choices=["add", "list", "disable", "unlock"])
    p.add_argument("name", nargs="?", help="the reader's name (add, disable, unlock)")
    p.add_argument("--password-stdin", action="store_true", help="add: read the password from the first line of stdin")
    add_db_argument(p)
    p.set_defaults(run=cmd_users)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """The failures a command reports as one sentence (exit code 2) rather than a traceback. Storage's
    own is among them only once a command has imported storage: the device kit's commands never do, and
    its packages are not installed where they run."""
    from anomascope.app.thresholds import ThresholdChoiceError
    from anomascope.engine.bundle import BundleError
    from anomascope.engine.data import DataError
    from anomascope.engine.datasets import PrepareError
    from anomascope.engine.inference import NonFiniteResultError
    from anomascope.engine.io import ImageReadError
    from anomascope.engine.io.limits import LimitsError
    from anomascope.engine.methods import UnknownMethodError
    from anomascope.engine.preprocess import InputMismatchError
    from anomascope.engine.training import TrainingSetupError
    from anomascope.engine.tuning import TuningError

    errors: tuple[type[Exception], ...] = (
        ImageReadError,
        InputMismatchError,
        PrepareError,
        CommandError,
        BundleError,
        DataError,
        LimitsError,
        TuningError,
        ThresholdChoiceError,
        NonFiniteResultError,
        UnknownMethodError,
        TrainingSetupError,
    )
    storage = sys.modules.get("anomascope.storage")
    return (*errors, storage.StorageError) if storage is not None else errors


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --processes` launches again
    from anomascope.engine.io import quiet_reader_libraries

    quiet_reader_libraries()
    try:
        return args.run(args)
    except user_errors() as exc:
        print(f"anomascope {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
