"""Speed and memory of every shipped method (run on demand; not part of the tests).

    python bench/run.py [--device cpu|cuda] [--precision auto|fp32|bf16|fp16] [--out bench/results.json]

For each bundle read-out: seconds per image at the bundle's resolution and on a whole demo case,
images per second in a batch and peak memory; for each bundle, training steps and images per second,
model FLOPs per training image and the fraction of the device's named peak FLOP/s that reaches
(model FLOPs per image x images/s / peak). The time a threshold change takes on the page is measured
in the browser by bench/threshold_browser.py. Writes JSON with the machine description. `--precision` is what the
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

import torch
from peaks import gpu_peak  # bench/peaks.py, beside this script

from anomascope.engine.config import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
WARM_UP_STEPS = 3  # torch.compile traces on the first step; CUDA graphs are recorded on a later one
SAMPLES = {3: ROOT / "assets" / "samples" / "ISIC_0024311.jpg", 1: ROOT / "assets" / "samples" / "chest-xray.png"}


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # The CPU kernels torch picked (AVX2 or AVX512 here): the same 2 cores run ~1.5x apart between them.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
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


def device_peak(device: torch.device) -> tuple[str, float | None]:
    """The named peak FLOP/s that training throughput is set against. On the CPU no datasheet figure is
    known here, so the peak is measured: float32 matrix products of 2048 x 2048, all threads."""
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name())
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = timed(lambda: a @ b, 5, device)
    return f"measured float32 matmul peak, {torch.get_num_threads()} threads", 2 * 2048**3 / seconds


def training_flops_per_image(spec, data: torch.Tensor, device: torch.device) -> float:
    """Model FLOPs of one training step (forward and backward, as torch's FlopCounterMode counts them:
    matrix products and convolutions) per image of the batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = spec.model.to(device).train()
    generator = torch.Generator(device=device).manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        spec.loss(model, data.to(device), generator).backward()
    return counter.get_total_flops() / len(data)


def bench_training(
    bundle, device: torch.device, steps: int, peak: tuple[str, float | None], overrides: dict | None = None
) -> dict:
    """Training throughput of the bundle's method and config (with `overrides` of its train section), on
    random data of its shape: steps and images per second, model FLOPs per image and the fraction of the
    device's named peak reached, after WARM_UP_STEPS untimed steps."""
    from anomascope.engine.config import build_config, from_dict
    from anomascope.engine.methods import default_config, registry
    from anomascope.engine.methods.training_plan import TrainingInputs
    from anomascope.engine.training import train

    config = from_dict(type(default_config(bundle.method)), bundle.manifest["config"])
    config = build_config(config, None, {"train": overrides or {}})
    size, channels = config.preprocess.image_size, config.preprocess.channels
    batch = config.train.batch_size
    data = torch.rand(max(256, batch), channels, size, size) * 2 - 1
    # A DIA bundle's plan takes the dissolver the bundle carries; other plans ignore the option.
    inputs = TrainingInputs(bundle.path, device, {"denoiser": bundle})
    plan = registry().get(bundle.method).training_plan()
    spec = plan(config, inputs).networks[0]  # the first network (a cddpm bundle trains one per fold)
    with tempfile.TemporaryDirectory() as workdir:
        # The timed run resumes the warm-up's checkpoint with the same network, so what compilation,
        # autotuning and CUDA-graph recording cost is paid before the clock starts.
        # Training seconds as the loop counts them (restored with the checkpoint), so loading it, the data's
        # copy to the device and the compile check are not timed; the final checkpoint's save is.
        warm = train(spec.model, spec.loss, data, _steps(config, WARM_UP_STEPS), Path(workdir), device, False)
        timed = train(spec.model, spec.loss, data, _steps(config, WARM_UP_STEPS + steps), Path(workdir), device, False)
        steps_per_second = steps / (timed.seconds - warm.seconds)
    flops = training_flops_per_image(plan(config, inputs).networks[0], data[:batch], device)
    images_per_second = steps_per_second * batch
    peak_name, peak_flops = peak
    return {
        "steps_per_second": steps_per_second,
        "batch_size": batch,
        "resolution": size,
        "images_per_second": images_per_second,
        "model_flops_per_image": flops,
        "peak_name": peak_name,
        "peak_flops": peak_flops,
        "fraction_of_peak": flops * images_per_second / peak_flops if peak_flops else None,
    }


def _steps(config, steps: int):
    from anomascope.engine.config import build_config

    return build_config(config, None, {"train": {"steps": steps, "epochs": None, "checkpoint_every": 10**9}}).train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--training-only", action="store_true", help="measure training throughput only")
    args = parser.parse_args()
    from anomascope.app.bundles import discover
    from anomascope.engine.io import load_case
    from anomascope.engine.training import pick_device

    device = pick_device(args.device)
    catalogue = discover([ROOT / "assets" / "models"], args.precision)
    results = {"machine": machine(device), "methods": {}, "training": {}}
    peak = device_peak(device)
    for label, choice in catalogue.choices.items():
        if not args.training_only:
            predictor = catalogue.predictor(label, device)
            sample = SAMPLES[predictor.preprocess.channels]
            name = f"{choice.bundle.path.name}:{choice.method}"
            results["methods"][name] = {
                "precision": predictor.precision,
                **bench_readout(predictor, load_case(sample), device, args.repeats, args.batch),
            }
            print(json.dumps({name: results["methods"][name]}))
        trains = "train" in choice.bundle.manifest["config"]  # a training-free reference has nothing to time
        if trains and choice.bundle.path.name not in results["training"]:
            results["training"][choice.bundle.path.name] = bench_training(choice.bundle, device, args.train_steps, peak)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results["training"]))


if __name__ == "__main__":
    main()
