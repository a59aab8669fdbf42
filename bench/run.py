"""Speed and memory of every shipped method (run on demand; not part of the tests).

    python bench/run.py [--device cpu|cuda] [--precision auto|fp32|bf16|fp16] [--out bench/results.json]

For each bundle read-out: seconds per image at the bundle's resolution and on a whole demo case,
images per second in a batch, peak memory, training steps per second; and the time a threshold
change takes on the review page. Writes JSON with the machine description. `--precision` is what the
networks run in (auto: bf16 on CUDA, fp32 on the CPU); run once per precision to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anomascope.engine.config import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {3: ROOT / "assets" / "samples" / "ISIC_0024311.jpg", 1: ROOT / "assets" / "samples" / "chest-xray.png"}


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall seconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_readout(predictor, case, device: torch.device, repeats: int, batch: int) -> dict:
    from anomascope.engine.inference import score_case

    size = predictor.preprocess.image_size
    square = torch.rand(1, predictor.preprocess.channels or 3, size, size) * 2 - 1
    batch_input = square.repeat(batch, 1, 1, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_image = timed(lambda: predictor.predict(square), repeats, device)
    whole = timed(lambda: score_case(predictor, case), repeats, device)
    batched = timed(lambda: predictor.predict(batch_input), max(1, repeats // 2), device)
    return {
        "seconds_per_image_at_bundle_resolution": per_image,
        "bundle_resolution": size,
        "seconds_per_whole_demo_case": whole,
        "demo_case_shape": list(case.shape),
        "images_per_second_batch": batch / batched,
        "batch_size": batch,
        "peak_memory_mb": peak_memory_mb(device),
    }


def bench_training(bundle, device: torch.device, steps: int) -> float:
    """Training steps per second of the bundle's method and config, on random data of its shape."""
    from anomascope.engine.config import from_dict, merge
    from anomascope.engine.methods import default_config, registry
    from anomascope.engine.methods.training_plan import TrainingInputs
    from anomascope.engine.training import train

    config = from_dict(type(default_config(bundle.method)), bundle.manifest["config"])
    size, channels = config.preprocess.image_size, config.preprocess.channels
    data = torch.rand(256, channels, size, size) * 2 - 1
    # A DIA bundle's plan takes the dissolver the bundle carries; other plans ignore the option.
    inputs = TrainingInputs(bundle.path, device, {"denoiser": bundle})
    plan = registry().get(bundle.method).training_plan()
    short = merge(config, {"train": {"steps": 2, "epochs": None, "checkpoint_every": 10**9}}).train
    run = merge(config, {"train": {"steps": steps, "epochs": None, "checkpoint_every": 10**9}}).train
    with tempfile.TemporaryDirectory() as workdir:
        warm = plan(config, inputs).networks[0]
        train(warm.model, warm.loss, data, short, Path(workdir) / "warm", device, show_progress=False)
        spec = plan(config, inputs).networks[0]  # the first network (a cddpm bundle trains one per fold)
        started = time.perf_counter()
        train(spec.model, spec.loss, data, run, Path(workdir) / "timed", device, show_progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps / (time.perf_counter() - started)


def bench_threshold_change(device: torch.device, label: str, catalogue, case_path: Path, repeats: int) -> float | None:
    """Seconds for what the page does when the threshold moves: overlay, outline and area (None for
    image-level methods, which have no map to threshold)."""
    from anomascope.app.review import ReviewApp
    from anomascope.storage import Database

    with tempfile.TemporaryDirectory() as folder:
        app = ReviewApp(Database(f"sqlite:///{folder}/bench.sqlite"), catalogue, Path(folder) / "cases", device)
        review = app.run(app.open_file(case_path), label)
        heatmap = review.result.heatmap
        if heatmap is None:
            app.db.dispose()
            return None
        levels = iter(np.linspace(heatmap.min(), heatmap.max(), 1000))

        def change():
            level = float(next(levels))
            app.overlay(review, 0, review.case.window, level, 0.5, "Inferno")
            app.area_text(review, app.mask(review, 0, level))

        seconds = timed(change, repeats, device)
        app.db.dispose()
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    from anomascope.app.bundles import discover
    from anomascope.engine.io import load_case
    from anomascope.engine.training import pick_device

    device = pick_device(args.device)
    catalogue = discover([ROOT / "assets" / "models"], args.precision)
    results = {"machine": machine(device), "methods": {}, "training": {}}
    for label, choice in catalogue.choices.items():
        predictor = catalogue.predictor(label, device)  # the review page below reuses it
        sample = SAMPLES[predictor.preprocess.channels]
        name = f"{choice.bundle.path.name}:{choice.method}"
        results["methods"][name] = {
            "precision": predictor.precision,
            **bench_readout(predictor, load_case(sample), device, args.repeats, args.batch),
        }
        results["methods"][name]["threshold_change_seconds"] = bench_threshold_change(
            device, label, catalogue, sample, args.repeats
        )
        print(json.dumps({name: results["methods"][name]}))
        if choice.bundle.path.name not in results["training"]:
            results["training"][choice.bundle.path.name] = {
                "steps_per_second": bench_training(choice.bundle, device, args.train_steps),
                "batch_size": choice.bundle.manifest["config"]["train"]["batch_size"],
            }
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results["training"]))


if __name__ == "__main__":
    main()
