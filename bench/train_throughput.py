"""Training throughput of the shipped denoiser, lever by lever (#16's 10x goal; run on demand).

    python bench/train_throughput.py [--device cpu|cuda] [--steps 100] [--out FILE]

The model and resolution stay those of assets/models/ham10000-denoiser (4.3M parameters, 64 px), the
setting of the 541 images/s H100 baseline in bench/results-h100.json. Each row adds one lever to the one
before: fused Adam, NHWC memory (channels_last), torch.compile, larger batches (with the learning rate
scaled linearly, which the throughput does not depend on), and CUDA graphs. Rows that only mean something
on a GPU are skipped on the CPU. A lever the training loop refuses (torch.compile whose gradients are not
the uncompiled network's) is recorded as refused and left out of the rows below it. Every row reports
images/s, model FLOPs per image and the fraction of the device's named peak, beside the speed-up over the
first row and over the H100 baseline. Each timed run includes one checkpoint load and save (a few
milliseconds for this model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import ROOT, bench_training, device_peak, machine  # bench/run.py, beside this script

H100_BASELINE_IMAGES_PER_SECOND = 541.0  # bench/results-h100.json: 8.45 steps/s at batch 64, bf16
BASE_BATCH = 64
BASE_LEARNING_RATE = 2e-4

# (name, train-section overrides, GPU only): each row keeps the levers of the rows above it.
LEVERS = [
    ("as shipped: bf16 autocast on CUDA, foreach Adam, batch 64", {"optimizer_kernels": "foreach"}, False),
    ("+ fused Adam", {"optimizer_kernels": "auto"}, True),
    ("+ channels_last", {"channels_last": True}, False),
    ("+ torch.compile", {"compile": "default"}, False),
    ("+ batch 256, lr x4", {"batch_size": 256, "learning_rate": BASE_LEARNING_RATE * 256 / BASE_BATCH}, False),
    ("+ batch 1024, lr x16", {"batch_size": 1024, "learning_rate": BASE_LEARNING_RATE * 1024 / BASE_BATCH}, True),
    ("+ CUDA graphs (compile reduce-overhead)", {"compile": "reduce-overhead"}, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per row")
    parser.add_argument("--bundle", default=str(ROOT / "assets" / "models" / "ham10000-denoiser"))
    parser.add_argument("--out", default=None, help="default: bench/results-train-throughput-<device>.json")
    args = parser.parse_args()
    from anomascope.engine.bundle import load_bundle
    from anomascope.engine.training import TrainingSetupError, pick_device

    device = pick_device(args.device)
    bundle = load_bundle(Path(args.bundle))
    peak = device_peak(device)
    overrides: dict = {}
    rows = []
    for name, lever, gpu_only in LEVERS:
        if gpu_only and device.type != "cuda":
            continue
        try:
            result = bench_training(bundle, device, args.steps, peak, {**overrides, **lever})
        except TrainingSetupError as refused:  # e.g. a compiler whose gradients are wrong here: go on without it
            rows.append({"levers": name, "train": {**overrides, **lever}, "refused": str(refused)})
            print(json.dumps(rows[-1]), flush=True)
            continue
        overrides = {**overrides, **lever}
        row = {"levers": name, "train": dict(overrides), **result}
        first = next((r for r in rows if "refused" not in r), row)
        row["speedup_over_first_row"] = result["images_per_second"] / first["images_per_second"]
        row["speedup_over_h100_baseline"] = result["images_per_second"] / H100_BASELINE_IMAGES_PER_SECOND
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out or ROOT / "bench" / f"results-train-throughput-{device.type}.json")
    out.write_text(json.dumps({"machine": machine(device), "bundle": bundle.path.name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
