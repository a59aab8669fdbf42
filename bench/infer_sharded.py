"""Throughput of `anomascope infer` over an archive: one process, and N processes under torch's launcher
(accelerate splits the inputs among them), as a user runs it, start-up included. On the CPU each launched
process gets cores / N threads; with --device cuda, one process on the GPU.

    python bench/infer_sharded.py --bundle assets/models/ham10000-ppii --images 48 --processes 1 2 \\
        --out bench/results-infer-sharded-cpu.json

Each run scores --images distinct photos (the demo photos, mirrored and rotated) into a fresh output folder
and checks that the results table covers every input once. Writes one JSON file naming the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import machine  # noqa: E402

SAMPLES = sorted((ROOT / "assets" / "samples").glob("ISIC_*.jpg"))
TRANSFORMS = (None, *Image.Transpose)


def archive(folder: Path, count: int) -> Path:
    """`count` distinct photos made from the demo photos."""
    folder.mkdir(parents=True)
    for k in range(count):
        image = Image.open(SAMPLES[k % len(SAMPLES)]).convert("RGB")
        transform = TRANSFORMS[(k // len(SAMPLES)) % len(TRANSFORMS)]
        (image if transform is None else image.transpose(transform)).save(folder / f"photo{k:05d}.png")
    return folder


def run_infer(bundle: Path, inputs: Path, out: Path, processes: int, device: str) -> float:
    """Wall seconds of one `infer` over the archive."""
    command = ["-m", "anomascope.app.cli", "infer", "--bundle", str(bundle), "--out", str(out), str(inputs)]
    env = dict(os.environ)
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
        command = launcher + command
    else:
        command += ["--device", device]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"infer failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def rows(out: Path) -> list[dict]:
    found = []
    for table in (out / "results" / "csv").glob("*.csv"):
        with table.open(newline="") as f:
            found += list(csv.DictReader(f))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "assets" / "models" / "ham10000-ppii")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = archive(Path(tmp) / "archive", args.images)
        for processes in args.processes:
            out = Path(tmp) / f"out-{processes}"
            seconds = run_infer(args.bundle, inputs, out, processes, args.device)
            table = rows(out)
            assert sorted(r["file"] for r in table) == sorted(str(p.resolve()) for p in inputs.iterdir())
            per_image = sorted(float(r["seconds"]) for r in table)
            results.append(
                {
                    "processes": processes,
                    "device": args.device,
                    "images": args.images,
                    "wall_seconds": round(seconds, 2),
                    "images_per_second": round(args.images / seconds, 3),
                    "median_scoring_seconds_per_image": per_image[len(per_image) // 2],
                }
            )
            print(json.dumps(results[-1]))
    report = {
        "machine": machine(torch.device(args.device)),
        "bundle": args.bundle.name,
        "what": "anomascope infer over a folder of photos, start-up included; N > 1 under torch.distributed.run",
        "runs": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
