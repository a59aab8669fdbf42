"""`anomascope train`: a method trained on normal images and written as a model bundle; with --processes,
data-parallel under torch's launcher. Also the methods' own options, which only train takes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from anomascope.app.cli.common import CommandError, add_device_argument
from anomascope.engine.methods import Method, Registry, registry

HELP = "train a method on normal images (DIR/train/good) and write a model bundle"
DESCRIPTION = (
    "Writes BUNDLE/manifest.json (full config, data description and hash, preprocessing, "
    "calibration, validation metrics) and BUNDLE/weights.safetensors. An interrupted run "
    "resumes from BUNDLE/checkpoint when started again."
)


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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("train", help=HELP, description=DESCRIPTION, epilog=unavailable_methods(methods))
    p.add_argument("--method", required=True, choices=methods.listed)
    p.add_argument("--data", required=True, help="prepared dataset folder (MVTec layout with val/ for calibration)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="TOML file overriding the paper defaults (same keys as the manifest's config); repeatable, each "
        "file overriding the ones before it",
    )
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
    add_device_argument(p)
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
