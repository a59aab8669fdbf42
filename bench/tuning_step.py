"""How long stepping to the next case of a threshold-tuning session takes on the page's services, with the
next cases scored in the background while the reader works (the page's behaviour) and without.

For each shipped read-out with a heatmap: a worklist of photos, the first case opened, then per step the
reader "works" for --think seconds and steps on; the time runs from the step to the scene the viewer
needs (open, run, scene files written). Target (issue 21): a single-forward method's map within 1 s on the
2-core CPU. Writes one JSON file naming the machine.

    python bench/tuning_step.py --out bench/results-tuning-step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import machine  # noqa: E402

from anomascope.app.bundles import discover  # noqa: E402
from anomascope.app.review.app import ReviewApp  # noqa: E402
from anomascope.app.review.tuning_session import TuningService  # noqa: E402
from anomascope.storage import Database  # noqa: E402

SAMPLES = sorted((ROOT / "assets" / "samples").glob("ISIC_*.jpg"))
TRANSFORMS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM)


def worklist(folder: Path) -> Path:
    """Distinct photos (the samples and their mirror images), so that no case repeats another."""
    folder.mkdir()
    for index, (sample, transform) in enumerate((s, t) for t in TRANSFORMS for s in SAMPLES):
        image = Image.open(sample)
        (image.transpose(transform) if transform else image).save(folder / f"case{index:02d}.png")
    return folder


def step_seconds(service: TuningService, label: str, cases: Path, think: float, background: bool) -> list[float]:
    if not background:
        service.prefetch.ahead = lambda view: None  # every step scores in the foreground
    view, session = service.open(service.start(str(cases), label, "bench"), 0, "bench")
    times = []
    while view.position + 1 < len(view.cases):
        time.sleep(think)  # the reader settles the threshold and corrects the mask
        started = time.perf_counter()
        view, session = service.step(view, +1, "bench")
        service.app.scene(session)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--think", type=float, default=3.0, help="seconds the reader spends on each case")
    args = parser.parse_args()
    device = torch.device("cpu")
    catalogue = discover([ROOT / "assets" / "models"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = worklist(Path(tmp) / "worklist")
        for label, choice in catalogue.choices.items():
            if choice.method == "dia":  # image level: no map to show
                continue
            figures = {}
            for background in (True, False):
                app = ReviewApp(
                    Database(f"sqlite:///{tmp}/{choice.method}-{background}.sqlite"),
                    catalogue,
                    Path(tmp) / "cases",
                    device,
                )
                times = step_seconds(TuningService(app, folder_roots=[cases]), label, cases, args.think, background)
                figures["background" if background else "foreground"] = {
                    "median_s": statistics.median(times),
                    "max_s": max(times),
                    "steps": len(times),
                }
            results[f"{choice.bundle.path.name}:{choice.method}"] = figures
            print(choice.method, json.dumps(figures))
    Path(args.out).write_text(
        json.dumps({"machine": machine(device), "think_seconds": args.think, "methods": results}, indent=2)
    )


if __name__ == "__main__":
    main()
