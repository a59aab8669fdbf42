"""Training steps per second of the denoiser for a config, on random data (run on demand).

    python bench/train_speed.py configs/ham10000-denoiser.toml [--steps 100] [--device cuda]
Prints one JSON line: steps_per_second, batch_size, image_size, device, torch version.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from engine.config import load_toml, merge, paper_defaults
from engine.methods.denoiser import epsilon_loss, new_denoiser
from engine.schedules import VPSchedule
from engine.training import pick_device, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--method", default="sano")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device")
    args = parser.parse_args()
    config = merge(paper_defaults(args.method), load_toml(Path(args.config)))
    size, channels = config.preprocess.image_size, config.preprocess.channels
    data = torch.rand(512, channels, size, size) * 2 - 1
    device = pick_device(args.device)
    loss = epsilon_loss(VPSchedule(config.schedule))
    timings = {}
    for label, steps in (("warmup", 10), ("timed", args.steps)):
        run = merge(config, {"train": {"steps": steps, "epochs": None, "checkpoint_every": 10**9}}).train
        with tempfile.TemporaryDirectory() as workdir:
            started = time.perf_counter()
            train(new_denoiser(config), loss, data, run, Path(workdir), device, show_progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[label] = time.perf_counter() - started
    print(json.dumps({"steps_per_second": args.steps / timings["timed"], "batch_size": config.train.batch_size,
                      "image_size": size, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
